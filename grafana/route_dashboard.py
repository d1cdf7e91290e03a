"""The route detail: one route's probes over time, from the agent's raw series: delay heatmap and
percentiles, send vs receive delay, SMTP phases, failures by reason, up/down, certificates.
"""

from __future__ import annotations

from contract_limits import DELAY_AVERAGE_SECONDS, DISCONNECTION_MINUTES
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, statetimeline
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import GraphDrawStyle, VisibilityMode
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale
from panels import (
    DS,
    ROUTE,
    Board,
    at_most,
    bars,
    big,
    dashed_thresholds,
    graph,
    q,
    route_variable,
    stacked,
    steps,
)


def rate_average(metric: str, by: str = "route") -> str:
    """Average of a histogram per graph step."""
    return (
        f"sum by ({by}) (rate({metric}_sum{{{ROUTE}}}[$__rate_interval]))"
        f" / (sum by ({by}) (rate({metric}_count{{{ROUTE}}}[$__rate_interval])) > 0)"
    )


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
