"""Building blocks of the mailprobe dashboards: the datasource, queries, thresholds, panel kinds
and a board that lays panels out in order.

Every query goes to the provisioned datasource (grafana/provisioning/datasources/mailprobe.yaml)
by its fixed uid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from grafana_foundation_sdk.builders import (
    bargauge,
    prometheus,
    stat,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    StackingConfig,
    VizLegendOptions,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE_UID = "mailprobe-prometheus"
DS = dm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
TAGS = ["mailprobe"]

ROUTE = 'route=~"$route"'
ACCOUNT = 'route="all",check="any"'

PanelBuilder = Builder[dm.Panel]


def last() -> ReduceDataOptions:
    """Show each series' latest value (instant queries have only that one)."""
    return ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds; the first pair's value is None (the base colour)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in pairs])
    )


def at_most(limit: float, warn: float) -> db.ThresholdsConfig:
    """Green up to `warn`, orange up to `limit`, red past it."""
    return steps((None, "green"), (warn, "orange"), (limit, "red"))


def at_least(target: float) -> db.ThresholdsConfig:
    """Red below `target`, green from it."""
    return steps((None, "red"), (target, "green"))


def q(expr: str, legend: str = "", *, instant: bool = False,
      heat: bool = False) -> prometheus.Dataquery:  # fmt: skip
    """A PromQL target on the provisioned datasource."""
    target = prometheus.Dataquery().expr(_tidy(expr)).datasource(DS)
    target = target.instant() if instant else target.range()
    if legend:
        target = target.legend_format(legend)
    if heat:
        target = target.format(PromQueryFormat.HEATMAP)
    return target


def _tidy(expr: str) -> str:
    # One line per expression: Grafana's editor and the JSON diff both read better.
    return " ".join(expr.split())


class Board:
    """A dashboard being laid out: panel ids and query refIds assigned in order."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.builder = (
            db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            # The other mailprobe dashboards, carrying the route selection across.
            .link(
                db.DashboardLink("mailprobe")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(TAGS)
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(False)
            )
        )
        self._next_id = 1

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def row(self, title: str) -> None:
        """Start a new row."""
        self.builder = self.builder.with_row(db.Row(title).id(self._id()))

    def add(self, panel: PanelBuilder, targets: Sequence[prometheus.Dataquery],
            *, width: int, height: int) -> None:  # fmt: skip
        """Place a panel after the previous one, wrapping at the grid's 24 columns."""
        refs = "ABCDEFGH"
        built = [t.ref_id(refs[i]) for i, t in enumerate(targets)]
        panel = panel.id(self._id()).datasource(DS).targets(built).span(width).height(height)  # type: ignore[attr-defined]
        self.builder = self.builder.with_panel(panel)

    def render(self) -> str:
        """Deterministic JSON: sorted keys, two-space indent, trailing newline."""
        return json.dumps(self.builder.build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def route_variable(*, multi: bool) -> db.QueryVariable:
    """The routes the agent probes (the reserved route "all" has no probe counters)."""
    return (
        db.QueryVariable("route")
        .label("Route")
        .datasource(DS)
        .query("label_values(mailprobe_probes_sent_total, route)")
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )


def big(title: str, description: str, unit: str, thresholds: db.ThresholdsConfig,
        decimals: int | None = None) -> stat.Panel:  # fmt: skip
    """A single figure coloured by its thresholds."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .thresholds(thresholds)
        .color_mode(BigValueColorMode.BACKGROUND)
        .reduce_options(last())
        .graph_mode(BigValueGraphMode.NONE)
        .no_value("no data")
    )
    return panel.decimals(decimals) if decimals is not None else panel


def bars(title: str, description: str, unit: str, thresholds: db.ThresholdsConfig,
         lo: float | None = None, hi: float | None = None,
         decimals: int | None = None) -> bargauge.Panel:  # fmt: skip
    """One bar per series (per route), coloured by the thresholds."""
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .thresholds(thresholds)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .reduce_options(last())
        .orientation(VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .no_value("no data")
    )
    if lo is not None:
        panel = panel.min(lo)
    if hi is not None:
        panel = panel.max(hi)
    return panel.decimals(decimals) if decimals is not None else panel


def graph(title: str, description: str, unit: str) -> timeseries.Panel:
    """A time series with its legend as a table below."""
    legend = (
        VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max", "lastNotNull"])
    )
    return timeseries.Panel().title(title).description(description).unit(unit).legend(legend)


def dashed_thresholds() -> GraphThresholdsStyleConfig:
    """Draw thresholds as a dashed line on a graph."""
    return GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)


def stacked() -> StackingConfig:
    """Stack series on top of each other."""
    return StackingConfig().mode(StackingMode.NORMAL)
