"""The monthly report as one self-contained HTML page a customer can send to the provider.

Inline CSS; charts drawn with matplotlib (Agg-free: figures are built without pyplot, so there is
no global state and no display) and embedded as base64 SVG data URIs, which keeps each chart's
internal ids apart and the page free of any network reference.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from matplotlib import rc_context
from matplotlib.figure import Figure

from mailprobe.agent.checks import ALL_ROUTES
from mailprobe.agent.clauses import ClauseResult, Verdict
from mailprobe.agent.durations import format_duration
from mailprobe.agent.report import Report, ScopeReport
from mailprobe.agent.report_render import render_text
from mailprobe.agent.windows import zone

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_COLOURS = {"down": "#c0392b", "maintenance": "#e6a23c", "unobserved": "#b0b7c3", "ok": "#2e8b57"}
_VERDICT_CLASS = {Verdict.KEPT: "kept", Verdict.BREACHED: "breached"}
_DELAY_BINS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 86400)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1f2933;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d9dee5;padding-bottom:.2rem}
.meta{color:#52606d}.badge{display:inline-block;padding:.15rem .6rem;border-radius:.3rem;
font-weight:600;color:#fff;background:#7b8794}
.badge.kept{background:#2e8b57}.badge.breached{background:#c0392b}
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #d9dee5;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
img.chart{width:100%;height:auto;border:1px solid #eef0f3}
.owed{background:#fff7e6;border:1px solid #f0d9a7;padding:.6rem .8rem;border-radius:.3rem}
ul.rules li{margin:.25rem 0}
"""


def _svg(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    # A fixed salt keeps the SVG (and so the page) byte-identical for identical input.
    with rc_context({"svg.hashsalt": "mailprobe", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="chart" alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _x(report: Report, ts: float) -> float:
    """Position on a month axis: local wall-clock days since the month began."""
    tz = zone(report.timezone)
    local = datetime.fromtimestamp(ts, tz).replace(tzinfo=None)
    first = datetime.fromtimestamp(report.start, tz).replace(tzinfo=None)
    return (local - first).total_seconds() / 86400.0


def _month_axis(ax: Axes, report: Report) -> None:
    days = round(_x(report, report.end))
    ax.set_xlim(0, days)
    ax.set_xticks([d + 0.5 for d in range(0, days, 2)], [f"{d + 1:02d}" for d in range(0, days, 2)])
    ax.set_xlabel(f"day of {report.month} ({report.timezone})")


def timeline_chart(report: Report) -> str:
    """Outages per route and check across the month, with windows and unobserved time."""
    rows = sorted({(o.route, o.check) for o in report.outages})
    labels = [f"{r} {c}" for r, c in rows] or ["no outage"]
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(labels)))
    ax = fig.subplots()
    for lo, hi in report.unobserved:
        ax.axvspan(_x(report, lo), _x(report, hi), color=_COLOURS["unobserved"], alpha=0.5)
    for _, lo, hi in report.windows:
        ax.axvspan(_x(report, lo), _x(report, hi), color=_COLOURS["maintenance"], alpha=0.3)
    for index, key in enumerate(rows):
        for o in report.outages:
            if (o.route, o.check) == key:
                # At least three hours wide: a short outage must still show on a month axis.
                left = _x(report, o.start)
                width = max(_x(report, o.end) - left, 0.125)
                ax.barh(index, width, left=left, height=0.6, color=_COLOURS["down"])
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    _month_axis(ax, report)
    ax.set_title("Outages (red), maintenance windows (amber), agent not running (grey)")
    return _svg(fig, "outage timeline")


def daily_chart(scope: ScopeReport, report: Report) -> str:
    """Down, maintenance and unobserved minutes per local day."""
    days = [d.day for d in scope.daily]
    down = [d.down_seconds / 60 for d in scope.daily]
    maint = [d.maintenance_seconds / 60 for d in scope.daily]
    unobserved = [d.unobserved_seconds / 60 for d in scope.daily]
    stacked = [a + b for a, b in zip(down, maint, strict=True)]
    fig = Figure(figsize=(11, 3.2))
    ax = fig.subplots()
    x = range(len(days))
    ax.bar(x, down, color=_COLOURS["down"], label="down")
    ax.bar(x, maint, bottom=down, color=_COLOURS["maintenance"], label="maintenance")
    ax.bar(x, unobserved, bottom=stacked, color=_COLOURS["unobserved"], label="not observed")
    ax.set_xticks(list(x)[::2], [f"{d.day:02d}" for d in days][::2])
    ax.set_ylabel("minutes")
    ax.set_xlabel(f"day of {report.month} ({report.timezone})")
    ax.set_title(f"Daily downtime, {_scope_name(scope)}")
    ax.legend(loc="upper right", frameon=False)
    return _svg(fig, "daily downtime")


def delay_chart(delays: Sequence[float], maximum: float, average_limit: float) -> str:
    """Distribution of delivery delays on a log scale, with the contract limits marked."""
    fig = Figure(figsize=(11, 3.2))
    ax = fig.subplots()
    values = [max(v, _DELAY_BINS[0]) for v in delays]
    if values:
        ax.hist(values, bins=list(_DELAY_BINS), color="#3e6fb0")
    ax.set_xscale("log")
    ax.axvline(average_limit, color=_COLOURS["maintenance"], linestyle="--", label="average limit")
    ax.axvline(maximum, color=_COLOURS["down"], linestyle="--", label="maximum")
    ax.set_xlabel("delivery delay (seconds, log scale)")
    ax.set_ylabel("probes")
    ax.set_title(f"Delivery delay distribution ({len(values)} probes)")
    ax.legend(loc="upper right", frameon=False)
    return _svg(fig, "delay distribution")


def _scope_name(scope: ScopeReport) -> str:
    return "account (all routes)" if scope.route == ALL_ROUTES else f"route {scope.route}"


def _when(report: Report, ts: float) -> str:
    return datetime.fromtimestamp(ts, zone(report.timezone)).strftime("%Y-%m-%d %H:%M:%S")


def _clause_row(c: ClauseResult) -> str:
    cls = _VERDICT_CLASS.get(c.verdict, "")
    measured = "-" if c.measured is None else f"{c.measured:.4g} {c.unit}"
    limit = f"{c.limit:g} {c.unit}"
    verdict = c.verdict.value.replace("_", " ")
    return (
        f"<tr><td>{escape(c.title)}</td><td class=num>{escape(measured)}</td>"
        f"<td class=num>{escape(limit)}</td><td><span class='badge {cls}'>{verdict}</span></td>"
        f"<td>{escape(c.detail)}</td></tr>"
    )


def _scope_section(scope: ScopeReport, report: Report) -> str:
    f = scope.figures
    avail = "-" if f.availability_percent is None else f"{f.availability_percent:.4f} %"
    facts = [
        (
            "Coverage",
            f"{f.coverage_percent:.2f} % (unobserved {scope.unobserved_seconds / 60:.1f} min)",
        ),
        ("Down outside maintenance", f"{f.down_seconds / 60:.2f} min"),
        ("Down inside maintenance", f"{f.maintenance_seconds / 60:.2f} min"),
        ("Availability", avail),
        (
            "Probes",
            f"{scope.probes_sent} sent, {scope.probes_delivered} delivered, "
            f"{scope.probes_lost} lost, {scope.probes_failed} failed",
        ),
    ]
    if f.delivery.average is not None and f.delivery.maximum is not None:
        facts.append(
            (
                "Delivery delay",
                f"average {format_duration(f.delivery.average)}, maximum "
                f"{format_duration(f.delivery.maximum)}, {f.delivery.over_max} over the maximum",
            )
        )
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    clauses = "".join(_clause_row(c) for c in scope.clauses)
    return (
        f"<h2>{escape(_scope_name(scope).capitalize())}</h2><table>{rows}</table>"
        "<table><tr><th>Clause</th><th>Measured</th><th>Limit</th><th>Verdict</th>"
        f"<th>Detail</th></tr>{clauses}</table>"
    )


def render_html(report: Report) -> str:
    """The report as a self-contained HTML page."""
    head = render_text(report).splitlines()[0]
    overall = report.verdict
    first = report.scopes[0]
    owed = "".join(f"<li>{escape(o.reason)}</li>" for o in report.remedy.owed)
    outage_rows = "".join(
        f"<tr><td>{escape(o.route)}</td><td>{escape(o.check)}</td>"
        f"<td>{_when(report, o.start)}</td><td>{_when(report, o.end)}</td>"
        f"<td class=num>{o.down_seconds / 60:.2f}</td>"
        f"<td class=num>{o.maintenance_seconds / 60:.2f}</td></tr>"
        for o in report.outages
    )
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(head)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(head)}</h1>",
        f"<p class=meta>Generated {_when(report, report.generated_at)} ({report.timezone}). "
        f"Overall: <span class='badge {_VERDICT_CLASS.get(overall, '')}'>"
        f"{overall.value.replace('_', ' ')}</span></p>",
        f"<div class=owed><strong>Owed:</strong> {escape(report.remedy.summary)}"
        f"<ul>{owed}</ul></div>",
        *(_scope_section(scope, report) for scope in report.scopes),
        "<h2>Outage timeline</h2>",
        timeline_chart(report),
        "<h2>Daily downtime</h2>",
        daily_chart(first, report),
        "<h2>Delivery delay</h2>",
        delay_chart(first.delays, report.delay_maximum, report.delay_average),
        "<h2>Outages</h2><table><tr><th>Route</th><th>Check</th><th>Start</th><th>End</th>"
        f"<th>Down (min)</th><th>Maintenance (min)</th></tr>{outage_rows}</table>",
        "<h2>How this was counted</h2><ul class=rules>",
        *(f"<li>{escape(rule)}</li>" for rule in report.rules),
        "</ul><h2>Not measured</h2><ul>",
        *(f"<li>{escape(item)}</li>" for item in report.not_measured),
        "</ul></body></html>",
    ]
    return "\n".join(parts)
