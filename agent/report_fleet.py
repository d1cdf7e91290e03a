"""The fleet's part of a report (several vantage points): text, Markdown and HTML.

A fleet report (``mailprobe.agent.fleet_report``) carries a ``FleetSummary``: these sections say
how many vantage points had to agree, each vantage with its coverage and its local minutes, the
provider outages with the vantages that saw them, and the local faults, excluded from every
figure. JSON carries the summary as the ``fleet`` key.
"""

from __future__ import annotations

from html import escape

from mailprobe.agent import report_format as fmt
from mailprobe.agent.fleet import FleetOutage, FleetSummary
from mailprobe.agent.report import Report
from mailprobe.agent.text_table import Column, paragraph, table

TITLE = "Vantage points"
LOCAL_TITLE = "Local faults (excluded)"
_SOURCES = {"ledgers": "from the vantages' ledgers", "prometheus": "from Prometheus"}


def quorum_line(fleet: FleetSummary) -> str:
    """The quorum in words."""
    n = len(fleet.vantages)
    k = min(fleet.quorum, n)
    return (
        f"{n} vantage point{'s' if n != 1 else ''}, read {_SOURCES.get(fleet.source, fleet.source)}."
        f" A fault is the provider's while {k} of them see it at the same time (the quorum"
        f"{'' if k == fleet.quorum else f' of {fleet.quorum}, at most the vantages there are'});"
        " down time fewer of them share is local to those vantages, the customer's side, and "
        "excluded from every figure above."
    )


def _coverage(report: Report, observed: float) -> str:
    period = report.evaluated_until - report.start
    return fmt.percent(100.0 * observed / period) if period > 0 else "-"


def _vantage_rows(report: Report, fleet: FleetSummary) -> list[list[str]]:
    return [
        [v.name, v.site or "-", v.region or "-", v.source, _coverage(report, v.observed_seconds),
         fmt.minutes(v.local_seconds)]
        for v in fleet.vantages
    ]  # fmt: skip


def _outage_rows(report: Report, outages: tuple[FleetOutage, ...]) -> list[list[str]]:
    return [
        [", ".join(o.vantages), o.route, o.check, fmt.when(report, o.start, with_zone=False),
         fmt.when(report, o.end, with_zone=False), fmt.minutes(o.end - o.start)]
        for o in outages
    ]  # fmt: skip


def _heading(title: str) -> list[str]:
    return [title, "=" * len(title), ""]


def fleet_text(report: Report, width: int) -> list[str]:
    """The fleet sections of the text report (nothing for a one-agent report)."""
    fleet = report.fleet
    if fleet is None:
        return []
    out = [*_heading(TITLE), *paragraph(quorum_line(fleet), width, indent="  "), ""]
    out += table(
        [Column("Vantage", max_width=20), Column("Site", max_width=14),
         Column("Region", max_width=12), Column("Read from", max_width=30),
         Column("Observed %", right=True, max_width=10), Column("Local min", right=True, max_width=9)],
        _vantage_rows(report, fleet), indent="  ",
    )  # fmt: skip
    outage_columns = [
        Column("Seen by", max_width=22), Column("Route", max_width=16),
        Column("Check", max_width=8), Column("Start", max_width=19), Column("End", max_width=19),
        Column("Min", right=True, max_width=8),
    ]  # fmt: skip
    out += ["", "  Provider outages, with the vantage points that saw them:", ""]
    if fleet.provider:
        out += table(outage_columns, _outage_rows(report, fleet.provider), indent="  ")
    else:
        out.append("  None in this period.")
    out += ["", *_heading(LOCAL_TITLE)]
    if fleet.local:
        out += table(outage_columns, _outage_rows(report, fleet.local), indent="  ")
        out += ["", f"  Times in {report.timezone}."]
    else:
        out.append("  No local fault in this period.")
    return [*out, ""]


def fleet_markdown(report: Report) -> list[str]:
    """The fleet sections of the Markdown report."""
    fleet = report.fleet
    if fleet is None:
        return []
    out = ["", f"## {TITLE}", "", quorum_line(fleet), ""]
    out += ["| vantage | site | region | read from | observed % | local min |",
            "|---|---|---|---|--:|--:|"]  # fmt: skip
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
            for row in _vantage_rows(report, fleet)]  # fmt: skip
    for title, outages in (("Provider outages", fleet.provider), (LOCAL_TITLE, fleet.local)):
        out += ["", f"## {title}", ""]
        if not outages:
            out.append("None in this period.")
            continue
        out += ["| seen by | route | check | start | end | min |", "|---|---|---|---|---|--:|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                for row in _outage_rows(report, outages)]  # fmt: skip
    return out


def _html_table(heads: list[str], rows: list[list[str]], numeric: set[int], empty: str) -> str:
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{escape(h)}</th>"
                   for i, h in enumerate(heads))  # fmt: skip
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{escape(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    ) or f"<tr><td colspan={len(heads)}>{escape(empty)}</td></tr>"  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fleet_html(report: Report) -> str:
    """The fleet section of the HTML report ("" for a one-agent report)."""
    fleet = report.fleet
    if fleet is None:
        return ""
    outage_heads = ["Seen by", "Route", "Check", "Start", "End", "Min"]
    return (
        f"<section class=page id=fleet><h2>{TITLE}</h2><p>{escape(quorum_line(fleet))}</p>"
        + _html_table(["Vantage", "Site", "Region", "Read from", "Observed %", "Local min"],
                      _vantage_rows(report, fleet), {4, 5}, "No vantage.")
        + "<h3>Provider outages, with the vantage points that saw them</h3>"
        + _html_table(outage_heads, _outage_rows(report, fleet.provider), {5},
                      "None in this period.")
        + f"<h2>{LOCAL_TITLE}</h2>"
        + _html_table(outage_heads, _outage_rows(report, fleet.local), {5},
                      "No local fault in this period.")
        + f"<p class=key>Times in {escape(report.timezone)}.</p></section>"
    )  # fmt: skip
