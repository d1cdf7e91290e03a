"""Generate the Grafana dashboards (grafana/dashboards/*.json) from code.

Run `python grafana/generate.py` after changing this file and commit the JSON it writes;
tests/test_grafana.py fails while the committed JSON differs from what this produces.
Built with grafana-foundation-sdk for Grafana 11.6 (the `!11.6.0` build of the SDK).

The SLA overview reads the recording rules in config/prometheus/rules (UTC months, like the
rules); the route detail reads the agent's raw series. Every query goes to the provisioned
datasource (grafana/provisioning/datasources/mailprobe.yaml) by its fixed uid.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import (
    bargauge,
    gauge,
    heatmap,
    prometheus,
    stat,
    statetimeline,
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
    GraphDrawStyle,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    VisibilityMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE_UID = "mailprobe-prometheus"
DS = dm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
OUT = Path(__file__).resolve().parent / "dashboards"
TAGS = ["mailprobe"]

# The contract's limits (../shared contract: 44 min, 100 min, 1 min average, 1 h maximum, ...).
DISCONNECTION_MINUTES = 44
FAILURE_MINUTES = 100
MAINTENANCE_MINUTES = 100
CONNECTIVITY_PERCENT = 99.9
AVAILABILITY_PERCENT = 99.99
DELAY_AVERAGE_SECONDS = 60
DELAY_MAXIMUM_SECONDS = 3600
OVER_MAXIMUM_ALLOWED = 2
TROUBLE_FREE_DAYS = 360
COVERAGE_FLOOR = 0.9  # sla.coverage_floor_percent's default, as a ratio

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


def month_ratio(selector: str) -> str:
    """Percent of the month so far up: 1 - down / (observed - maintenance), from the rules."""
    return (
        f"100 * (1 - route_check:mailprobe_down_seconds:month_to_date{{{selector}}}"
        f" / (route_check:mailprobe_observed_seconds:month_to_date{{{selector}}}"
        f" - route_check:mailprobe_maintenance_seconds:month_to_date{{{selector}}} > 0))"
    )


def range_average(metric: str) -> str:
    """Average of a histogram over the dashboard's range (this month on the SLA overview)."""
    return (
        f"increase({metric}_sum{{{ROUTE}}}[$__range])"
        f" / (increase({metric}_count{{{ROUTE}}}[$__range]) > 0)"
    )


def rate_average(metric: str, by: str = "route") -> str:
    """Average of a histogram per graph step."""
    return (
        f"sum by ({by}) (rate({metric}_sum{{{ROUTE}}}[$__rate_interval]))"
        f" / (sum by ({by}) (rate({metric}_count{{{ROUTE}}}[$__rate_interval])) > 0)"
    )


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


# ------------------------------------------------------------------------------ SLA overview


def sla_overview() -> Board:
    """Each contract clause this month against its limit, for the account and per route."""
    b = Board(
        "mailprobe-sla",
        "mailprobe / SLA overview",
        "The written guarantee, clause by clause, this month so far (UTC months, as the "
        "recording rules count them; `mailprobe report` gives the contract-zone figures to "
        "claim with).",
    )
    b.builder = (
        b.builder.time("now/M", "now")
        .timezone("utc")
        .refresh("1m")
        .with_variable(route_variable(multi=True))
    )

    b.row("Account: any failure on any route (route=all, check=any)")
    b.add(
        big("Failure this month", f"Total failure minutes this month; the contract allows "
            f"{FAILURE_MINUTES}, any failure counted once.", "m",
            at_most(FAILURE_MINUTES, FAILURE_MINUTES / 2), decimals=1),
        [q("route:mailprobe_failure_minutes:month_to_date", instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Failure budget left", f"Minutes of the {FAILURE_MINUTES} left this month; "
            "negative once spent.", "m",
            steps((None, "red"), (0, "orange"), (FAILURE_MINUTES / 2, "green")), decimals=1),
        [q("route:mailprobe_failure_budget_remaining:minutes", instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Availability this month", f"Share of the observed time outside maintenance "
            f"with no failure; the contract promises {AVAILABILITY_PERCENT} %.", "percent",
            at_least(AVAILABILITY_PERCENT), decimals=3),
        [q(month_ratio(ACCOUNT), instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Maintenance this month", f"Agreed maintenance minutes this month; at most "
            f"{MAINTENANCE_MINUTES}.", "m",
            at_most(MAINTENANCE_MINUTES, MAINTENANCE_MINUTES / 2), decimals=1),
        [q("route:mailprobe_maintenance_minutes:month_to_date", instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Trouble-free days, rolling year", f"Observed days without failure among the "
            f"365 whole UTC days before today; at least {TROUBLE_FREE_DAYS} required.",
            "none", at_least(TROUBLE_FREE_DAYS), decimals=0),
        [q("route:mailprobe_trouble_free_days:count365d", instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Coverage this month", "Share of the month so far the agent was observing; "
            "unobserved time is neither up nor down and cannot prove the guarantee.",
            "percentunit", at_least(COVERAGE_FLOOR), decimals=2),
        [q(f"route_check:mailprobe_coverage:month_to_date{{{ACCOUNT}}}", instant=True)],
        width=3, height=5,
    )  # fmt: skip

    b.add(
        big("Worst route's disconnection", f"The largest disconnection this month among the "
            f"routes; each must stay under {DISCONNECTION_MINUTES} min.", "m",
            at_most(DISCONNECTION_MINUTES, DISCONNECTION_MINUTES / 2), decimals=1),
        [q("max by (job, instance) (route:mailprobe_disconnection_minutes:month_to_date)",
           instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Probes over 1 h this month", f"Probes of all routes that passed the 1 h maximum "
            f"undelivered; more than {OVER_MAXIMUM_ALLOWED} breaks the delay clause.", "none",
            steps((None, "green"), (OVER_MAXIMUM_ALLOWED, "orange"),
                  (OVER_MAXIMUM_ALLOWED + 1, "red")), decimals=0),
        [q("sum by (job, instance) (route:mailprobe_probes_over_max:month_to_date)",
           instant=True)],
        width=3, height=5,
    )  # fmt: skip

    b.row("Per route: connectivity (99.9 %, disconnection under 44 min a month)")
    b.add(
        gauge.Panel()
        .title("Connectivity this month")
        .description(f"Share of the observed time outside maintenance the route could send "
                     f"and receive; the contract promises {CONNECTIVITY_PERCENT} %.")
        .unit("percent").decimals(3).min(99).max(100).reduce_options(last())
        .thresholds(at_least(CONNECTIVITY_PERCENT)).no_value("no data"),
        [q(month_ratio(f'{ROUTE},check="connectivity"'), "{{route}}", instant=True)],
        width=6, height=7,
    )  # fmt: skip
    b.add(
        bars("Disconnection this month", f"Minutes the route could not send or receive; "
             f"the contract requires less than {DISCONNECTION_MINUTES}.", "m",
             at_most(DISCONNECTION_MINUTES, DISCONNECTION_MINUTES / 2), lo=0,
             hi=DISCONNECTION_MINUTES, decimals=1),
        [q(f"route:mailprobe_disconnection_minutes:month_to_date{{{ROUTE}}}", "{{route}}",
           instant=True)],
        width=6, height=7,
    )  # fmt: skip
    b.add(
        bars("Disconnection budget left", f"Minutes of the {DISCONNECTION_MINUTES} left; "
             "at 0 the limit is reached, which already breaks 'less than'.", "m",
             steps((None, "red"), (0.01, "orange"), (DISCONNECTION_MINUTES / 2, "green")),
             hi=DISCONNECTION_MINUTES, decimals=1),
        [q(f"route:mailprobe_disconnection_budget_remaining:minutes{{{ROUTE}}}", "{{route}}",
           instant=True)],
        width=6, height=7,
    )  # fmt: skip
    b.add(
        bars("Coverage this month", "Share of the month so far the route was observed.",
             "percentunit", at_least(COVERAGE_FLOOR), lo=0, hi=1, decimals=2),
        [q(f'route_check:mailprobe_coverage:month_to_date{{{ROUTE},check="connectivity"}}',
           "{{route}}", instant=True)],
        width=6, height=7,
    )  # fmt: skip
    b.add(
        graph("Connectivity error ratio by window", "Down share of the observed time over "
              "the burn-rate alerts' windows; the 0.1 % budget is the threshold line.",
              "percentunit")
        .thresholds(steps((None, "green"), (1 - CONNECTIVITY_PERCENT / 100, "red")))
        .thresholds_style(dashed_thresholds()),
        [q(f'route_check:mailprobe_sli_error_ratio:{w}{{{ROUTE},check="connectivity"}}',
           f"{{{{route}}}} {w.removeprefix('rate')}")
         for w in ("rate5m", "rate1h", "rate1d", "rate30d")],
        width=24, height=8,
    )  # fmt: skip

    b.row("Per route: delay (average at most 1 min, maximum 1 h exceeded at most twice)")
    b.add(
        bars("Average delay this month", f"Send delay (accepted until it left the sender's "
             f"service), receive delay (reached the recipient's service until visible), and "
             f"end to end; each average at most {DELAY_AVERAGE_SECONDS} s.", "s",
             at_most(DELAY_AVERAGE_SECONDS, DELAY_AVERAGE_SECONDS / 2), lo=0,
             hi=DELAY_AVERAGE_SECONDS),
        [q(range_average("mailprobe_send_delay_seconds"), "{{route}} send", instant=True),
         q(range_average("mailprobe_receive_delay_seconds"), "{{route}} receive", instant=True),
         q(range_average("mailprobe_delivery_delay_seconds"), "{{route}} end to end",
           instant=True)],
        width=8, height=7,
    )  # fmt: skip
    b.add(
        bars("Average delay, rolling 30 days", "The recording rules' 30-day averages, "
             "as the delay alert reads them.", "s",
             at_most(DELAY_AVERAGE_SECONDS, DELAY_AVERAGE_SECONDS / 2), lo=0,
             hi=DELAY_AVERAGE_SECONDS),
        [q(f"route:mailprobe_{m}_delay_seconds:avg30d{{{ROUTE}}}", f"{{{{route}}}} {name}",
           instant=True)
         for m, name in (("send", "send"), ("receive", "receive"),
                         ("delivery", "end to end"))],
        width=8, height=7,
    )  # fmt: skip
    b.add(
        bars("Longest delay this month", "Upper bound of the histogram bucket holding the "
             "slowest probe delivered this month; the maximum allowed is 1 h.", "s",
             at_most(DELAY_MAXIMUM_SECONDS, DELAY_MAXIMUM_SECONDS / 2), lo=0),
        [q(f"histogram_quantile(1, sum by (job, instance, route, le) "
           f"(increase(mailprobe_delivery_delay_seconds_bucket{{{ROUTE}}}[$__range])))",
           "{{route}}", instant=True)],
        width=8, height=7,
    )  # fmt: skip
    b.add(
        bars("Probes over 1 h this month", f"Probes that passed the 1 h maximum undelivered; "
             f"more than {OVER_MAXIMUM_ALLOWED} breaks the delay clause.", "none",
             steps((None, "green"), (OVER_MAXIMUM_ALLOWED, "orange"),
                   (OVER_MAXIMUM_ALLOWED + 1, "red")),
             lo=0, hi=OVER_MAXIMUM_ALLOWED + 1, decimals=0),
        [q(f"route:mailprobe_probes_over_max:month_to_date{{{ROUTE}}}", "{{route}} month",
           instant=True),
         q(f"route:mailprobe_probes_over_max:increase30d{{{ROUTE}}}", "{{route}} 30 days",
           instant=True)],
        width=12, height=6,
    )  # fmt: skip
    b.add(
        bars("Limits in force", "The contract's monthly limits in minutes, as the agent "
             "exports them from its config (or the contract's own figures).", "m",
             steps((None, "blue")), lo=0, decimals=0),
        [q("clause:mailprobe_sla_target_minutes:effective", "{{clause}}", instant=True)],
        width=12, height=6,
    )  # fmt: skip
    return b


def dashed_thresholds() -> GraphThresholdsStyleConfig:
    """Draw thresholds as a dashed line on a graph."""
    return GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)


# ------------------------------------------------------------------------------ route detail


def route_detail() -> Board:
    """One route's probes over time: delays, SMTP phases, failures, state, certificates."""
    b = Board(
        "mailprobe-route",
        "mailprobe / Route detail",
        "Probes of one route over time, from the agent's raw series.",
    )
    account = (
        db.QueryVariable("account")
        .label("Account")
        .datasource(DS)
        .query("label_values(mailprobe_tls_cert_expiry_timestamp_seconds, account)")
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )
    b.builder = (
        b.builder.time("now-24h", "now")
        .refresh("1m")
        .with_variable(route_variable(multi=False))
        .with_variable(account)
    )

    b.row("Delivery delay")
    b.add(
        heatmap.Panel()
        .title("Delay distribution")
        .description("Delivered probes per delay bucket (send time to seen in the mailbox).")
        .calculate(False)
        .color(heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME)
               .scheme("Oranges").scale(HeatmapColorScale.EXPONENTIAL).exponent(0.5))
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .interval("5m"),
        [q(f"sum by (le) (increase(mailprobe_delivery_delay_seconds_bucket{{{ROUTE}}}"
           f"[$__rate_interval]))", "{{le}}", heat=True)],
        width=12, height=8,
    )  # fmt: skip
    b.add(
        graph("Delay percentiles", "p50, p90 and p99 of the end-to-end delay, each step "
              "summarising at least 5 minutes of probes; the 1 min average limit is the line.",
              "s")
        .thresholds(steps((None, "green"), (DELAY_AVERAGE_SECONDS, "red")))
        .thresholds_style(dashed_thresholds())
        .interval("5m"),
        [q(f"histogram_quantile({p}, sum by (le) (rate(mailprobe_delivery_delay_seconds_bucket"
           f"{{{ROUTE}}}[$__rate_interval])))", f"p{round(p * 100)}")
         for p in (0.5, 0.9, 0.99)],
        width=12, height=8,
    )  # fmt: skip
    b.add(
        graph("Send vs receive delay", "Average send delay (accepted until it left the "
              "sender's service) and receive delay (reached the recipient's service until "
              "visible), when the Received headers allow the split; end to end for reference.",
              "s").interval("5m"),
        [q(rate_average("mailprobe_send_delay_seconds"), "send"),
         q(rate_average("mailprobe_receive_delay_seconds"), "receive"),
         q(rate_average("mailprobe_delivery_delay_seconds"), "end to end")],
        width=8, height=8,
    )  # fmt: skip
    b.add(
        big("Clock skew, last probe", "Largest backwards step between the Received hops of "
            "the last probe: servers' clocks this far apart blur the send/receive split.", "s",
            at_most(5, 1), decimals=1),
        [q(f"mailprobe_clock_skew_seconds{{{ROUTE}}}", "{{route}}", instant=True)],
        width=4, height=8,
    )  # fmt: skip
    b.add(
        graph("SMTP submission time by phase", "Average seconds per submission phase, "
              "stacked: together the time to submit one probe.", "s")
        .stacking(stacked())
        .fill_opacity(40)
        .interval("5m"),
        [q(rate_average("mailprobe_smtp_phase_duration_seconds", "phase"), "{{phase}}")],
        width=12, height=8,
    )  # fmt: skip

    b.row("Failures and state")
    b.add(
        graph("Failures by phase and reason", "Failed probes per step, by the phase that "
              "failed and the reason.", "none")
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(stacked()),
        [q(f"sum by (phase, reason) (increase(mailprobe_probes_failed_total{{{ROUTE}}}"
           f"[$__rate_interval])) > 0", "{{phase}} {{reason}}")],
        width=12, height=8,
    )  # fmt: skip
    b.add(
        bars("Failures in range", "Failed probes in the selected time range, by phase and "
             "reason.", "none", steps((None, "green"), (1, "red")), lo=0, decimals=0),
        [q(f"sum by (phase, reason) (increase(mailprobe_probes_failed_total{{{ROUTE}}}"
           f"[$__range])) > 0", "{{phase}} {{reason}}", instant=True)],
        width=6, height=8,
    )  # fmt: skip
    b.add(
        big("Downtime in range", "Confirmed down minutes in the selected range, per check "
            "(outside maintenance).", "m",
            at_most(DISCONNECTION_MINUTES, DISCONNECTION_MINUTES / 2), decimals=1),
        [q(f"increase(mailprobe_down_seconds_total{{{ROUTE}}}[$__range]) / 60", "{{check}}",
           instant=True)],
        width=6, height=8,
    )  # fmt: skip
    b.add(
        statetimeline.Panel()
        .title("Up / down")
        .description("Reachable: the last attempt of the protocol worked. Confirmed: the "
                     "contract accounting's verdict per check after a confirming retry.")
        .mappings([dm.ValueMap(options={
            "0": dm.ValueMappingResult(text="down", color="red", index=0),
            "1": dm.ValueMappingResult(text="up", color="green", index=1),
        })])
        .thresholds(steps((None, "red"), (1, "green")))
        .show_value(VisibilityMode.NEVER)
        .merge_values(True),
        [q(f"mailprobe_up{{{ROUTE}}}", "{{protocol}} reachable"),
         q(f"mailprobe_check_up{{{ROUTE}}}", "{{check}} confirmed")],
        width=24, height=7,
    )  # fmt: skip

    b.row("Probes and certificates")
    b.add(
        graph("Probe outcomes", "Probes per step: sent, delivered, late, overdue and lost.",
              "none").draw_style(GraphDrawStyle.BARS).fill_opacity(60),
        [q(f"sum (increase(mailprobe_probes_{kind}_total{{{ROUTE}}}[$__rate_interval]))", kind)
         for kind in ("sent", "received", "late", "overdue", "lost")],
        width=12, height=8,
    )  # fmt: skip
    b.add(
        big("Since last delivered probe", "Time since a probe of this route last arrived.",
            "s", at_most(900, 300), decimals=0),
        [q(f"time() - mailprobe_last_success_timestamp_seconds{{{ROUTE}}}", "{{route}}",
           instant=True)],
        width=4, height=8,
    )  # fmt: skip
    b.add(
        bars("Certificate expiry", "Time until the server certificate's notAfter, per "
             "account and protocol (only servers reached at least once).", "dtdurations",
             steps((None, "red"), (3 * 86400, "orange"), (14 * 86400, "green")), lo=0),
        [q('(mailprobe_tls_cert_expiry_timestamp_seconds{account=~"$account"} > 0) - time()',
           "{{account}} {{protocol}}", instant=True)],
        width=8, height=8,
    )  # fmt: skip
    return b


def stacked() -> StackingConfig:
    """Stack series on top of each other."""
    return StackingConfig().mode(StackingMode.NORMAL)


DASHBOARDS = {"mailprobe-sla.json": sla_overview, "mailprobe-route.json": route_detail}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: build().render() for name, build in DASHBOARDS.items()}


def main() -> int:
    """Rewrite grafana/dashboards/*.json."""
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
