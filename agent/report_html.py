"""The monthly report as one self-contained HTML page a customer can send to the provider.

Inline CSS and inline SVG charts (``mailprobe.agent.report_charts``): the page loads nothing. It
opens with a clause summary (a verdict per clause and scope, colour plus word, told apart in
grey-scale print by border: solid for kept, thick for breached, dashed for not enough data) and
what is owed; then each scope's figures and clauses, the charts, the outages and windows, the
precision of the figures, the accounting rules and what is not measured. Numbers are written as
in the text report (``mailprobe.agent.report_format``). Printed (or made a PDF by
``mailprobe.agent.report_pdf``), each section starts on a new A4 page and nothing is dark.
"""

from __future__ import annotations

from html import escape

from mailprobe.agent import report_format as fmt
from mailprobe.agent.clauses import ClauseResult, Verdict
from mailprobe.agent.report import Report, ScopeReport
from mailprobe.agent.report_charts import daily_figure, delay_figure, svg, timeline_figure
from mailprobe.agent.report_fleet import fleet_html
from mailprobe.agent.report_render import projected

VERDICT_CLASS = {Verdict.KEPT: "kept", Verdict.BREACHED: "breached",
                 Verdict.NOT_ENOUGH_DATA: "nodata"}  # fmt: skip
SECTIONS = ("Summary", "Owed", "Outage timeline", "Daily downtime", "Delivery delay", "Outages",
            "Agreed maintenance windows", "Precision of the figures", "How this was counted",
            "Not measured")  # fmt: skip
"""Section titles every page has (besides one per scope), in order."""

_CSS = """
:root{color-scheme:light}
body{font-family:"DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
margin:2rem auto;max-width:1100px;color:#1f2933;background:#fff;line-height:1.45;padding:0 1rem;
font-size:15px}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.2rem;margin:2rem 0 .5rem;
border-bottom:2px solid #1f2933;padding-bottom:.15rem}h3{font-size:1rem;margin:1.2rem 0 .3rem}
.meta{color:#3e4c59;margin:.1rem 0}
.notice{border:2px solid #7a5300;background:#fff8e6;padding:.5rem .8rem;margin:.8rem 0}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #c5ccd3;padding:.28rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f5;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.when{white-space:nowrap;font-variant-numeric:tabular-nums}
td.name,th.name{overflow-wrap:break-word}
table.facts th{width:14rem}
.needs{font-size:.85rem;margin-top:.15rem}
.v{display:inline-block;padding:.05rem .45rem;border-radius:.25rem;font-weight:600;
font-size:.85rem;white-space:nowrap;-webkit-print-color-adjust:exact;print-color-adjust:exact}
.v.kept{background:#e3f2e6;color:#1b5e20;border:1px solid #1b5e20}
.v.breached{background:#fbe1dd;color:#8b1a10;border:3px solid #8b1a10}
.v.nodata{background:#fff;color:#3e4c59;border:1px dashed #3e4c59}
.key{font-size:.85rem;color:#3e4c59}.key .v{margin:0 .2rem}
.owed{background:#fff8e6;border:1px solid #c9a04a;padding:.6rem .8rem;margin:.6rem 0;
-webkit-print-color-adjust:exact;print-color-adjust:exact}
.owed ul{margin:.3rem 0 .3rem 1.2rem;padding:0}
img.chart{width:100%;max-width:880px;height:auto;display:block}
ul.notes li{margin:.3rem 0}
@page{size:A4;margin:14mm 12mm}
@media print{
body{margin:0;max-width:none;padding:0;font-size:10pt}
section.page{break-before:page}
h2,h3{break-after:avoid}
tr,div.chart,.owed,.notice{break-inside:avoid}
img.chart{width:auto;max-width:100%}
thead{display:table-header-group}
}
"""


def _badge(verdict: Verdict | None) -> str:
    if verdict is None:
        return "-"
    return f"<span class='v {VERDICT_CLASS[verdict]}'>{escape(fmt.verdict(verdict))}</span>"


def _with_unit(text: str, clause: ClauseResult) -> str:
    # Non-breaking spaces: a figure never wraps away from its sign or its unit.
    if text == "-":
        return text
    return f"{escape(text)}&nbsp;{escape(fmt.unit(clause))}".replace(" ", "&nbsp;")


def _summary(report: Report) -> str:
    """Verdict per clause (rows) and scope (columns)."""
    order: dict[str, str] = {}
    for scope in report.scopes:
        for c in scope.clauses:
            order.setdefault(c.clause, c.title.split(" (")[0])
    heads = "".join(f"<th class=name>{escape(fmt.scope_name(s))}</th>" for s in report.scopes)
    rows = []
    for clause_id, title in order.items():
        cells = []
        for scope in report.scopes:
            found = next((c for c in scope.clauses if c.clause == clause_id), None)
            cells.append(f"<td>{_badge(found.verdict if found else None)}</td>")
        rows.append(f"<tr><td>{escape(title)}</td>{''.join(cells)}</tr>")
    key = (
        f"{_badge(Verdict.KEPT)} the clause held, the month is over and was observed enough; "
        f"{_badge(Verdict.BREACHED)} the observed figures break it whatever the unobserved time "
        f"holds; {_badge(Verdict.NOT_ENOUGH_DATA)} the data does not decide it (each scope "
        "below says what would)."
    )
    return (
        f"<section id=summary><h2>Summary</h2><p>Overall: {_badge(report.verdict)}</p>"
        f"<table class=summary><thead><tr><th>Clause</th>{heads}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table><p class=key>{key}</p></section>"
    )


def _owed(report: Report) -> str:
    remedy = report.remedy
    if not remedy.owed:
        body = f"<p>{escape(remedy.summary.capitalize())}.</p>"
    else:
        items = "".join(f"<li>{escape(o.reason)}</li>" for o in remedy.owed)
        total = remedy.summary.removeprefix("owed: ")
        body = f"<ul>{items}</ul><p><strong>In total:</strong> {escape(total)}.</p>"
    return f"<section id=owed><h2>Owed</h2><div class=owed>{body}</div></section>"


def _clause_row(c: ClauseResult, partial: bool) -> str:
    needs = f"<div class=needs>Needs {escape(c.needed)}.</div>" if c.needed else ""
    projection = f"<td>{escape(projected(c))}</td>" if partial else ""
    return (
        f"<tr><td>{escape(c.title)}{needs}</td>"
        f"<td class=num>{_with_unit(fmt.measured(c), c)}</td>"
        f"<td class=num>{_with_unit(fmt.limit(c).replace('<=', '≤').replace('>=', '≥'), c)}</td>"
        f"<td>{_badge(c.verdict)}</td>{projection}</tr>"
    )


def _scope_section(scope: ScopeReport, report: Report) -> str:
    facts = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in fmt.facts(scope)
    )
    projected_head = f"<th title='{fmt.PROJECTION_NOTE}'>Projected</th>" if report.partial else ""
    clauses = "".join(_clause_row(c, report.partial) for c in scope.clauses)
    note = (
        f"<p class=key>Projected: the verdict {fmt.PROJECTION_NOTE}.</p>" if report.partial else ""
    )
    return (
        f"<section class=page><h2>{escape(fmt.scope_name(scope))}</h2>"
        f"<table class=facts>{facts}</table>"
        "<table><thead><tr><th>Clause</th><th class=num>Measured</th><th class=num>Limit</th>"
        f"<th>Verdict</th>{projected_head}</tr></thead><tbody>{clauses}</tbody></table>"
        f"{note}</section>"
    )


def _outages(report: Report) -> str:
    rows = (
        "".join(
            f"<tr><td class=name>{escape(o.route)}</td><td>{escape(o.check)}</td>"
            f"<td class=when>{fmt.when(report, o.start, with_zone=False)}</td>"
            f"<td class=when>{fmt.when(report, o.end, with_zone=False)}</td>"
            f"<td class=num>{fmt.minutes(o.down_seconds)}</td>"
            f"<td class=num>{fmt.minutes(o.maintenance_seconds)}</td></tr>"
            for o in report.outages
        )
        or "<tr><td colspan=6>No outage in this period.</td></tr>"
    )
    windows = (
        "".join(
            f"<tr><td class=name>{escape(name)}</td><td class=when>{fmt.when(report, lo, with_zone=False)}</td>"
            f"<td class=when>{fmt.when(report, hi, with_zone=False)}</td></tr>"
            for name, lo, hi in report.windows
        )
        or "<tr><td colspan=3>None in this month.</td></tr>"
    )
    zone_note = f"<p class=key>Times in {escape(report.timezone)}.</p>"
    return (
        "<section class=page id=outages><h2>Outages</h2>"
        "<table><thead><tr><th>Route</th><th>Check</th><th>Start</th><th>End</th>"
        "<th class=num>Down (min)</th><th class=num>Maintenance (min)</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{zone_note}"
        "<h2>Agreed maintenance windows</h2><table><thead><tr><th>Window</th><th>Start</th>"
        f"<th>End</th></tr></thead><tbody>{windows}</tbody></table>{zone_note}</section>"
    )


def _notes(title: str, items: tuple[str, ...], *, page: bool = False) -> str:
    cls = " class=page" if page else ""
    lis = "".join(f"<li>{escape(item)}</li>" for item in items)
    return f"<section{cls}><h2>{escape(title)}</h2><ul class=notes>{lis}</ul></section>"


def render_html(report: Report) -> str:
    """The report as a self-contained HTML page."""
    first = report.scopes[0]
    head = fmt.title(report)
    notice = f"<p class=notice>{escape(fmt.partial_notice(report))}</p>" if report.partial else ""
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(head)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{escape(head)}</h1><p class=meta>{escape(fmt.period(report))}</p>",
        f"<p class=meta>Generated {escape(fmt.when(report, report.generated_at))}.</p>{notice}</header>",
        _summary(report),
        _owed(report),
        *(_scope_section(scope, report) for scope in report.scopes),
        "<section class=page><div class=chart><h2>Outage timeline</h2>",
        svg(timeline_figure(report), "outage timeline"),
        "</div><div class=chart><h2>Daily downtime</h2>"
        f"<p class=key>{escape(fmt.scope_name(first))}, minutes a day.</p>",
        svg(daily_figure(first, report), "daily downtime"),
        "</div><div class=chart><h2>Delivery delay</h2>"
        f"<p class=key>{escape(fmt.scope_name(first))}: measured delays only (probes found late "
        "are not measured).</p>",
        svg(
            delay_figure(first.delays, report.delay_average, report.delay_maximum),
            "delay distribution",
        ),
        "</div></section>",
        _outages(report),
        fleet_html(report),
        _notes("Precision of the figures", report.precision, page=True),
        _notes("How this was counted", report.rules),
        _notes("Not measured", report.not_measured),
        "</body></html>",
    ]
    return "\n".join(parts)
