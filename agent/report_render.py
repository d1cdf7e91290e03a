"""The monthly report as text, Markdown and JSON (HTML is ``mailprobe.agent.report_html``)."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from mailprobe.agent.checks import ALL_ROUTES
from mailprobe.agent.clauses import ClauseResult, Unit
from mailprobe.agent.durations import format_duration
from mailprobe.agent.report import Report, ScopeReport
from mailprobe.agent.windows import zone


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
    """The report as JSON (every figure, seconds as numbers)."""
    data = _jsonable(dataclasses.asdict(report))
    data["verdict"] = report.verdict.value
    for scope, raw in zip(report.scopes, data["scopes"], strict=True):
        raw["coverage_percent"] = scope.figures.coverage_percent
        raw["availability_percent"] = scope.figures.availability_percent
        raw["unobserved_seconds"] = scope.unobserved_seconds
    return json.dumps(data, indent=2, sort_keys=False)


def _when(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _measured(clause: ClauseResult) -> str:
    if clause.measured is None:
        return "-"
    if clause.unit is Unit.SECONDS:
        return format_duration(clause.measured)
    if clause.unit is Unit.PERCENT:
        return f"{clause.measured:.4f} %"
    if clause.unit is Unit.MINUTES:
        return f"{clause.measured:.2f} min"
    return f"{clause.measured:g} {clause.unit}"


def _limit(clause: ClauseResult) -> str:
    if clause.unit is Unit.SECONDS:
        return f"<= {format_duration(clause.limit)}"
    if clause.unit is Unit.PERCENT:
        return f">= {clause.limit:g} %"
    if clause.unit is Unit.DAYS:
        return f">= {clause.limit:g} days"
    return f"<= {clause.limit:g} {clause.unit}"


def _scope_lines(scope: ScopeReport) -> list[tuple[str, str]]:
    f = scope.figures
    avail = "-" if f.availability_percent is None else f"{f.availability_percent:.4f} %"
    rows = [
        (
            "coverage",
            f"{f.coverage_percent:.2f} % (unobserved {scope.unobserved_seconds / 60:.1f} min)",
        ),
        ("down (outside maintenance)", f"{f.down_seconds / 60:.2f} min"),
        ("maintenance", f"{f.maintenance_seconds / 60:.2f} min"),
        ("availability", avail),
    ]
    if scope.send_down_seconds is not None and scope.receive_down_seconds is not None:
        rows.append(
            (
                "send / receive down",
                f"{scope.send_down_seconds / 60:.2f} / {scope.receive_down_seconds / 60:.2f} min",
            )
        )
    d = f.delivery
    if d.average is not None and d.maximum is not None:
        rows.append(
            (
                "delivery delay",
                f"avg {format_duration(d.average)}, max "
                f"{format_duration(d.maximum)} over {d.count} probes",
            )
        )
    rows.append(
        (
            "probes",
            f"{scope.probes_sent} sent, {scope.probes_delivered} delivered, "
            f"{scope.probes_lost} lost, {scope.probes_failed} failed, "
            f"{d.over_max} over the maximum",
        )
    )
    free = f.year_observed_days - f.year_failure_days
    rows.append(("trouble-free days", f"{free} of {f.year_observed_days} observed days"))
    return rows


def _title(scope: ScopeReport) -> str:
    return "Account (all routes)" if scope.route == ALL_ROUTES else f"Route {scope.route}"


def _header(report: Report) -> str:
    span = f"{_when(report.start, report.timezone)} to {_when(report.end, report.timezone)}"
    partial = f" (partial: up to {_when(report.evaluated_until, report.timezone)})"
    return f"SLA report {report.month}, {span}" + (partial if report.partial else "")


def render_text(report: Report) -> str:
    """The report as plain text."""
    out = [_header(report), f"Overall: {report.verdict.value}", ""]
    for scope in report.scopes:
        out.append(_title(scope))
        out += [f"  {k:<28} {v}" for k, v in _scope_lines(scope)]
        out.append(f"  {'clause':<44} {'measured':>16} {'limit':>14}  verdict")
        for c in scope.clauses:
            out.append(f"  {c.title:<44} {_measured(c):>16} {_limit(c):>14}  {c.verdict.value}")
        out.append("")
    out.append("Owed: " + report.remedy.summary)
    out += [f"  - {o.reason}" for o in report.remedy.owed]
    if report.outages:
        out += ["", "Outages:"]
        out += [
            f"  {o.route:<12} {o.check:<8} {_when(o.start, report.timezone)} -> "
            f"{_when(o.end, report.timezone)}  down {o.down_seconds / 60:.2f} min, "
            f"maintenance {o.maintenance_seconds / 60:.2f} min"
            for o in report.outages
        ]
    out += ["", "Accounting rules:"] + [f"  - {rule}" for rule in report.rules]
    out += ["", "Not measured:"] + [f"  - {item}" for item in report.not_measured]
    return "\n".join(out) + "\n"


def render_markdown(report: Report) -> str:
    """The report as Markdown."""
    out = [f"# {_header(report)}", "", f"**Overall: {report.verdict.value}**", ""]
    for scope in report.scopes:
        out += [f"## {_title(scope)}", "", "| figure | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in _scope_lines(scope)]
        out += ["", "| clause | measured | limit | verdict | detail |", "|---|---|---|---|---|"]
        out += [
            f"| {c.title} | {_measured(c)} | {_limit(c)} | **{c.verdict.value}** | {c.detail} |"
            for c in scope.clauses
        ]
        out.append("")
    out += ["## Owed", "", report.remedy.summary, ""]
    out += [f"- {o.reason}" for o in report.remedy.owed]
    if report.outages:
        out += ["", "## Outages", "", "| route | check | start | end | down | maintenance |"]
        out.append("|---|---|---|---|---|---|")
        out += [
            f"| {o.route} | {o.check} | {_when(o.start, report.timezone)} | "
            f"{_when(o.end, report.timezone)} | {o.down_seconds / 60:.2f} min | "
            f"{o.maintenance_seconds / 60:.2f} min |"
            for o in report.outages
        ]
    out += ["", "## Accounting rules", ""] + [f"- {rule}" for rule in report.rules]
    out += ["", "## Not measured", ""] + [f"- {item}" for item in report.not_measured]
    return "\n".join(out) + "\n"


FORMATS = ("text", "json", "markdown")


def render(report: Report, fmt: str) -> str:
    """Render in one of FORMATS (HTML is ``mailprobe.agent.report_html.render_html``)."""
    if fmt == "text":
        return render_text(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
