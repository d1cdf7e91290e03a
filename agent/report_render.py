"""The monthly report as text, Markdown and JSON (HTML is ``mailprobe.agent.report_html``).

The text report is a document to forward: at most ``WIDTH`` characters a line, columns that stay
aligned whatever the clause and route names (long cells wrap inside their column), one unit per
row of figures (see ``mailprobe.agent.report_format``), verdicts in words, what an undecided
clause would need, and for a month in progress a notice at the top and the projected verdicts.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from mailprobe.agent import report_format as fmt
from mailprobe.agent.clauses import ClauseResult, Verdict
from mailprobe.agent.report import Report, ScopeReport
from mailprobe.agent.report_fleet import fleet_markdown, fleet_text
from mailprobe.agent.text_table import Column, paragraph, table

WIDTH = 100
JSON_VERSION = 1
"""Bumped when a key of the JSON report changes meaning or goes away (new keys do not bump it)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def render_json(report: Report) -> str:
    """The report as JSON: every figure, seconds and percentages as unrounded numbers."""
    data = {"version": JSON_VERSION, **_jsonable(dataclasses.asdict(report))}
    data["verdict"] = report.verdict.value
    for scope, raw in zip(report.scopes, data["scopes"], strict=True):
        raw["coverage_percent"] = scope.figures.coverage_percent
        raw["availability_percent"] = scope.figures.availability_percent
        raw["unobserved_seconds"] = scope.unobserved_seconds
    return json.dumps(data, indent=2, sort_keys=False)


def projected(clause: ClauseResult) -> str:
    """The verdict if the rest of the month stays as observed (a breach stays a breach)."""
    if clause.projection is not None:
        return fmt.verdict(clause.projection)
    return fmt.verdict(clause.verdict) if clause.verdict is Verdict.BREACHED else "-"


def _clause_table(scope: ScopeReport, partial: bool) -> list[str]:
    columns = [
        Column("Clause", max_width=38),
        Column("Measured", right=True, max_width=12),
        Column("Limit", right=True, max_width=12),
        Column("Unit", max_width=6),
        Column("Verdict", max_width=15),
    ]
    if partial:
        columns.append(Column("Projected", max_width=15))
    rows = []
    for c in scope.clauses:
        row = [c.title, fmt.measured(c), fmt.limit(c), fmt.unit(c), fmt.verdict(c.verdict)]
        rows.append([*row, projected(c)] if partial else row)
    lines = table(columns, rows, indent="  ")
    # What an undecided clause would need, under the table, keyed by clause.
    needs = [c for c in scope.clauses if c.needed]
    if needs:
        lines.append("")
        for c in needs:
            lines += paragraph(f"{c.title}: needs {c.needed}.", WIDTH, indent="  ", bullet="* ")
    return lines


def _scope_block(scope: ScopeReport, partial: bool) -> list[str]:
    out = heading(fmt.scope_name(scope))
    out += table([Column("Figure", max_width=26), Column("Value", max_width=WIDTH - 30)],
                 fmt.facts(scope), indent="  ")  # fmt: skip
    out.append("")
    out += _clause_table(scope, partial)
    return out


def _owed(report: Report) -> list[str]:
    out = heading("Owed")
    if not report.remedy.owed:
        # Nothing owed: say why, so the reader knows it is a finding and not an omission.
        return out + paragraph(report.remedy.summary.capitalize() + ".", WIDTH, indent="  ")
    for owed in report.remedy.owed:
        out += paragraph(owed.reason, WIDTH, indent="  ", bullet="- ")
    total = report.remedy.summary.removeprefix("owed: ")
    return [*out, "", *paragraph(f"In total: {total}.", WIDTH, indent="  ")]


def _outages(report: Report) -> list[str]:
    if not report.outages:
        return [*heading("Outages"), "  No outage in this period."]
    columns = [
        Column("Route", max_width=20), Column("Check", max_width=12),
        Column("Start", max_width=19), Column("End", max_width=19),
        Column("Down min", right=True, max_width=9), Column("Maint. min", right=True, max_width=10),
    ]  # fmt: skip
    rows = [
        [o.route, o.check, fmt.when(report, o.start, with_zone=False),
         fmt.when(report, o.end, with_zone=False), fmt.minutes(o.down_seconds),
         fmt.minutes(o.maintenance_seconds)]
        for o in report.outages
    ]  # fmt: skip
    return [*heading("Outages"), *table(columns, rows, indent="  "),
            "", f"  Times in {report.timezone}."]  # fmt: skip


def _windows(report: Report) -> list[str]:
    if not report.windows:
        return [*heading("Agreed maintenance windows"), "  None in this month."]
    rows = [
        [name, fmt.when(report, lo, with_zone=False), fmt.when(report, hi, with_zone=False)]
        for name, lo, hi in report.windows
    ]
    columns = [Column("Window", max_width=40), Column("Start", max_width=19),
               Column("End", max_width=19)]  # fmt: skip
    return [*heading("Agreed maintenance windows"), *table(columns, rows, indent="  "),
            "", f"  Times in {report.timezone}."]  # fmt: skip


def heading(title: str) -> list[str]:
    """A section title, underlined, and the blank line after it."""
    return [title, "=" * len(title), ""]


def _bullets(title: str, items: tuple[str, ...]) -> list[str]:
    out = heading(title)
    for item in items:
        out += paragraph(item, WIDTH, indent="  ", bullet="- ")
    return out


def render_text(report: Report) -> str:
    """The report as plain text, at most ``WIDTH`` characters a line."""
    out = [fmt.title(report), "=" * len(fmt.title(report)), fmt.period(report)]
    if report.partial:
        out += ["", *paragraph(fmt.partial_notice(report), WIDTH)]
    out += ["", f"Overall: {fmt.verdict(report.verdict)}", ""]
    out += [*_owed(report), ""]
    for scope in report.scopes:
        out += [*_scope_block(scope, report.partial), ""]
    out += [*_outages(report), "", *_windows(report), ""]
    out += fleet_text(report, WIDTH)
    out += [*_bullets("Precision of the figures", report.precision), ""]
    out += [*_bullets("Accounting rules", report.rules), ""]
    out += _bullets("Not measured", report.not_measured)
    return "\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report) -> str:
    """The report as Markdown."""
    out = [f"# {fmt.title(report)}", "", fmt.period(report), ""]
    if report.partial:
        out += [f"> {fmt.partial_notice(report)}", ""]
    out += [f"**Overall: {fmt.verdict(report.verdict)}**", "", "## Owed", ""]
    if report.remedy.owed:
        out += [f"- {o.reason}" for o in report.remedy.owed]
        out += ["", f"In total: {report.remedy.summary.removeprefix('owed: ')}."]
    else:
        out.append(report.remedy.summary.capitalize() + ".")
    head = "| clause | measured | limit | unit | verdict |"
    rule = "|---|--:|--:|---|---|"
    if report.partial:
        head, rule = head + " projected |", rule + "---|"
    for scope in report.scopes:
        out += ["", f"## {fmt.scope_name(scope)}", "", "| figure | value |", "|---|---|"]
        out += [f"| {k} | {_md_cell(v)} |" for k, v in fmt.facts(scope)]
        out += ["", head + " detail |", rule + "---|"]
        for c in scope.clauses:
            cells = [c.title, fmt.measured(c), fmt.limit(c), fmt.unit(c),
                     f"**{fmt.verdict(c.verdict)}**"]  # fmt: skip
            if report.partial:
                cells.append(projected(c))
            detail = c.detail + (f"; needs {c.needed}" if c.needed else "")
            out.append("| " + " | ".join(_md_cell(x) for x in [*cells, detail]) + " |")
    if report.outages:
        out += ["", "## Outages", "", f"Times in {report.timezone}.", ""]
        out += ["| route | check | start | end | down min | maintenance min |"]
        out.append("|---|---|---|---|--:|--:|")
        out += [
            f"| {_md_cell(o.route)} | {o.check} | {fmt.when(report, o.start, with_zone=False)} | "
            f"{fmt.when(report, o.end, with_zone=False)} | {fmt.minutes(o.down_seconds)} | "
            f"{fmt.minutes(o.maintenance_seconds)} |"
            for o in report.outages
        ]
    out += fleet_markdown(report)
    out += ["", "## Precision of the figures", ""] + [f"- {p}" for p in report.precision]
    out += ["", "## Accounting rules", ""] + [f"- {rule}" for rule in report.rules]
    out += ["", "## Not measured", ""] + [f"- {item}" for item in report.not_measured]
    return "\n".join(out) + "\n"


FORMATS = ("text", "json", "markdown")


def render(report: Report, fmt_name: str) -> str:
    """Render in one of FORMATS (HTML is ``mailprobe.agent.report_html.render_html``)."""
    if fmt_name == "text":
        return render_text(report)
    if fmt_name == "json":
        return render_json(report)
    if fmt_name == "markdown":
        return render_markdown(report)
    raise ValueError(f"unknown format {fmt_name!r}: use one of {', '.join(FORMATS)}")
