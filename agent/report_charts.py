"""The report's charts: outage timeline, daily downtime, delay distribution, as inline SVG.

Figures are built without pyplot (no global state, no display) and embedded as base64 SVG data
URIs, which keeps each chart's internal ids apart and the page free of any network reference.
Colours read in grey-scale print too: the series differ in lightness, and every bar and legend
swatch has a dark edge, so none disappears into the white background.

The delay axis is scaled to the data: logarithmic from 1 ms (faster deliveries count in the first
bin) to the decade above the slowest probe, with ten bins a decade, so 10-80 ms deliveries show
as what they are and not as one bar from 0.1 s.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any, ParamSpec

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from mailprobe.agent.report import Report, ScopeReport
from mailprobe.agent.report_format import duration
from mailprobe.agent.windows import zone

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes


@dataclass(frozen=True, slots=True)
class Style:
    """How one series is drawn."""

    label: str
    face: str
    edge: str

    def patch(self) -> Patch:
        """Its legend swatch."""
        return Patch(facecolor=self.face, edgecolor=self.edge, linewidth=0.8, label=self.label)


P = ParamSpec("P")
BACKGROUND = "#ffffff"
# Lightness apart (dark, middle, light) so grey-scale print tells them apart without hatching,
# which Chromium would print as bitmaps.
DOWN = Style("down (outside maintenance)", "#a11d14", "#4d0d08")
MAINTENANCE = Style("down in agreed maintenance", "#dc9a2a", "#6b4700")
WINDOW = Style("agreed maintenance window", "#f3d9a4", "#6b4700")
UNOBSERVED = Style("agent not running", "#e9ebef", "#3e4a59")
DELAYS = Style("probes", "#2f5f9e", "#1b365c")
WIDTH = 6.4  # inches: with its labels, a chart fits an A4 page inside its margins unscaled
DELAY_FLOOR = 0.001  # the delay axis starts at 1 ms
BINS_PER_DECADE = 10
_RC: dict[Any, Any] = {"svg.hashsalt": "mailprobe", "svg.fonttype": "none", "font.size": 8,
       "axes.facecolor": BACKGROUND, "figure.facecolor": BACKGROUND}  # fmt: skip


def svg(fig: Figure, alt: str) -> str:
    """The figure as an ``<img>`` with an inline SVG data URI."""
    buf = io.BytesIO()
    # A fixed salt keeps the SVG (and so the page) byte-identical for identical input.
    with rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="chart" alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _styled(build: Callable[P, Figure]) -> Callable[P, Figure]:
    """Build the figure under the report's style (legends and texts made later included)."""

    @functools.wraps(build)
    def styled(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with rc_context(_RC):
            return build(*args, **kwargs)

    return styled


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    ax.set_facecolor(BACKGROUND)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _legend(ax: Axes, styles: Sequence[Style], ncols: int = 2) -> None:
    # Above the plot, outside it: a legend never covers a bar.
    ax.legend(handles=[s.patch() for s in styles], loc="lower left", bbox_to_anchor=(0.0, 1.02),
              ncols=ncols, frameon=False, handlelength=2.2, handleheight=1.1,
              borderaxespad=0.0)  # fmt: skip


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


def _span(ax: Axes, report: Report, lo: float, hi: float, style: Style) -> None:
    ax.axvspan(_x(report, lo), _x(report, hi), facecolor=style.face, edgecolor=style.edge,
               linewidth=0.5, zorder=0)  # fmt: skip


@_styled
def timeline_figure(report: Report) -> Figure:
    """Outages per route and check across the month, with windows and unobserved time."""
    rows = sorted({(o.route, o.check) for o in report.outages})
    labels = ["\n".join(textwrap.wrap(f"{r} {c}", 24, break_long_words=True)) for r, c in rows]
    fig, ax = _figure(WIDTH, 1.2 + 0.4 * max(len(rows), 1))
    for lo, hi in report.unobserved:
        _span(ax, report, lo, hi, UNOBSERVED)
    for _, lo, hi in report.windows:
        _span(ax, report, lo, hi, WINDOW)
    for index, key in enumerate(rows):
        for o in report.outages:
            if (o.route, o.check) == key:
                # An outage wholly inside maintenance is drawn as maintenance, so red on the
                # chart is always time that counts against the provider.
                style = DOWN if o.down_seconds > 0 or not o.maintenance_seconds else MAINTENANCE
                # At least three hours wide: a short outage must still show on a month axis.
                left = _x(report, o.start)
                width = max(_x(report, o.end) - left, 0.125)
                ax.barh(index, width, left=left, height=0.6, color=style.face,
                        edgecolor=style.edge, linewidth=0.6, zorder=2)  # fmt: skip
    ax.set_yticks(range(len(rows)), labels)
    if not rows:
        ax.set_yticks([0], ["no outage"])
    ax.set_ylim(len(rows) - 0.5 if rows else 0.5, -0.5)
    _month_axis(ax, report)
    _legend(ax, [replace(DOWN, label="outage (at least 3 h wide on this scale)"),
                 replace(MAINTENANCE, label="outage inside maintenance"), WINDOW,
                 UNOBSERVED])  # fmt: skip
    return fig


@_styled
def daily_figure(scope: ScopeReport, report: Report) -> Figure:
    """Down, maintenance and unobserved minutes per local day, stacked."""
    down = [d.down_seconds / 60 for d in scope.daily]
    maint = [d.maintenance_seconds / 60 for d in scope.daily]
    unobserved = [d.unobserved_seconds / 60 for d in scope.daily]
    stacked = [a + b for a, b in zip(down, maint, strict=True)]
    fig, ax = _figure(WIDTH, 2.5)
    x = range(len(scope.daily))
    for values, bottom, style in ((down, [0.0] * len(down), DOWN), (maint, down, MAINTENANCE),
                                  (unobserved, stacked, UNOBSERVED)):  # fmt: skip
        # Only the days that have some: a zero-high bar would still draw its edge.
        shown = [i for i in x if values[i] > 0]
        ax.bar(shown, [values[i] for i in shown], bottom=[bottom[i] for i in shown],
               color=style.face, edgecolor=style.edge, linewidth=0.6, width=0.75)  # fmt: skip
    ax.set_xticks(list(x)[::2], [f"{d.day.day:02d}" for d in scope.daily][::2])
    ax.set_xlim(-0.6, len(scope.daily) - 0.4)
    ax.set_ylabel("minutes")
    ax.set_xlabel(f"day of {report.month} ({report.timezone})")
    _legend(ax, [DOWN, MAINTENANCE, UNOBSERVED])
    return fig


def _tick(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.0f} s"


def delay_bounds(delays: Sequence[float]) -> tuple[float, float]:
    """The delay axis: from 1 ms to the decade above the slowest probe (at least 10 ms)."""
    top = max(delays, default=DELAY_FLOOR)
    return DELAY_FLOOR, 10.0 ** max(-2, math.ceil(math.log10(max(top, DELAY_FLOOR)) + 1e-9))


@_styled
def delay_figure(delays: Sequence[float], average_limit: float, maximum: float) -> Figure:
    """Distribution of delivery delays, log axes, with the contract's limits where in range."""
    lo, hi = delay_bounds(delays)
    decades = round(math.log10(hi / lo))
    edges = [lo * 10 ** (i / BINS_PER_DECADE) for i in range(decades * BINS_PER_DECADE + 1)]
    fig, ax = _figure(WIDTH, 2.5)
    values = [min(max(v, lo), hi) for v in delays]
    if values:
        counts, _, _ = ax.hist(values, bins=edges, color=DELAYS.face, edgecolor=DELAYS.edge,
                               linewidth=0.5)  # fmt: skip
        nonzero = [c for c in counts if c > 0]
        if max(nonzero) / min(nonzero) > 50:  # a single slow probe must stay visible
            ax.set_yscale("log")
            ax.set_ylim(0.7, float(max(nonzero)) * 2)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v)))
    ax.set_ylabel("probes" + (", log scale" if ax.get_yscale() == "log" else ""))
    handles: list[Artist] = [Style(f"{len(values)} probes", DELAYS.face, DELAYS.edge).patch()]
    beyond = []
    for limit, name, colour, dash in ((average_limit, "average limit", "#7a5300", "--"),
                                      (maximum, "maximum", DOWN.edge, ":")):  # fmt: skip
        text = f"{name} {duration(limit)}"
        if lo <= limit <= hi:
            handles.append(ax.axvline(limit, color=colour, linestyle=dash, linewidth=1.6,
                                      label=text))  # fmt: skip
        else:
            beyond.append(text)
    label = "delivery delay (log scale; under 1 ms counted at 1 ms)"
    if beyond:
        label += f"\nbeyond the right end of this axis: {' and '.join(beyond)}"
    ax.set_xlabel(label)
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.02), ncols=len(handles),
              frameon=False, borderaxespad=0.0)  # fmt: skip
    return fig
