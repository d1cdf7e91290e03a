"""The SLA overview: each contract clause this month against its limit, for the account and per
route.

Month figures are the contract month so far as the agent counts it (sla.timezone, named on the
dashboard from the agent's month gauges), read through the recording rules of
config/prometheus/rules/mailprobe_month.yml; they match `mailprobe report` for the current month.
Delay averages and the longest delay are over the dashboard's time range, this UTC month by
default: the agent exports no month-to-date delays. Limits are the clause registry's
(contract_limits.py).
"""

from __future__ import annotations

from contract_limits import (
    ANTIVIRUS_DELAY_SECONDS,
    AVAILABILITY_PERCENT,
    CONNECTIVITY_PERCENT,
    COVERAGE_FLOOR,
    DELAY_AVERAGE_SECONDS,
    DELAY_AVERAGE_TEXT,
    DELAY_MAXIMUM_SECONDS,
    DELAY_MAXIMUM_TEXT,
    DISCONNECTION_MINUTES,
    FAILURE_MINUTES,
    MAINTENANCE_MINUTES,
    OVER_MAXIMUM_ALLOWED,
    OVER_MAXIMUM_TEXT,
    TROUBLE_FREE_DAYS,
    WEBMAIL_LIMIT_SECONDS,
    WEBMAIL_OVER_ALLOWED,
)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import gauge
from grafana_foundation_sdk.models import dashboard as dm
from panels import (
    ACCOUNT,
    DS,
    ROUTE,
    Board,
    at_least,
    at_most,
    bars,
    big,
    dashed_thresholds,
    graph,
    last,
    q,
    route_variable,
    steps,
)

# Where a title says which month it counts: the agent's sla.timezone, from its month gauges.
MONTH = "contract month ($timezone)"
RANGE_NOTE = (
    "over the dashboard's time range (this UTC month by default; the agent exports no "
    "month-to-date delays, `mailprobe report` gives the contract month's)"
)


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


def timezone_variable() -> db.QueryVariable:
    """The zone the agent counts its contract month in (hidden; the row titles name it)."""
    return (
        db.QueryVariable("timezone")
        .label("Contract time zone")
        .datasource(DS)
        .query("label_values(mailprobe_contract_month_start_timestamp_seconds, timezone)")
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .hide(dm.VariableHide.HIDE_VARIABLE)
    )


def over_maximum_steps() -> db.ThresholdsConfig:
    """Green up to the allowance, orange at it, red past it."""
    return steps((None, "green"), (OVER_MAXIMUM_ALLOWED, "orange"),
                 (OVER_MAXIMUM_ALLOWED + 1, "red"))  # fmt: skip


def sla_overview() -> Board:
    """Each contract clause this month against its limit, for the account and per route."""
    b = Board(
        "mailprobe-sla",
        "mailprobe / SLA overview",
        "The written guarantee, clause by clause, in the contract month so far: the calendar "
        "month in the contract's time zone (sla.timezone, named in the row titles), as the agent "
        "and `mailprobe report` count it.",
    )
    b.builder = (
        b.builder.time("now/M", "now")
        .timezone("utc")
        .refresh("1m")
        .with_variable(route_variable(multi=True))
        .with_variable(timezone_variable())
    )
    account(b)
    connectivity(b)
    delay(b)
    services(b)
    return b


def account(b: Board) -> None:
    """The account-wide figures: failure, availability, maintenance, trouble-free days."""
    b.row(f"Account, {MONTH}: any failure on any route (route=all, check=any)")
    b.add(
        big("Failure this month", f"Total failure minutes this contract month; the contract "
            f"allows {FAILURE_MINUTES}, any failure counted once.", "m",
            at_most(FAILURE_MINUTES, FAILURE_MINUTES / 2), decimals=1),
        [q("route:mailprobe_failure_minutes:month_to_date", instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Failure budget left", f"Minutes of the {FAILURE_MINUTES} left this contract "
            "month; negative once spent.", "m",
            steps((None, "red"), (0, "orange"), (FAILURE_MINUTES / 2, "green")), decimals=1),
        [q("route:mailprobe_failure_budget_remaining:minutes", instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Availability this month", f"Share of the observed time outside maintenance "
            f"with no failure this contract month; the contract promises "
            f"{AVAILABILITY_PERCENT} %.", "percent",
            at_least(AVAILABILITY_PERCENT), decimals=3),
        [q(month_ratio(ACCOUNT), instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Maintenance this month", f"Agreed maintenance minutes this contract month; at "
            f"most {MAINTENANCE_MINUTES}.", "m",
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
        big("Coverage this month", "Share of the contract month so far the agent was "
            "observing; unobserved time is neither up nor down and cannot prove the guarantee.",
            "percentunit", at_least(COVERAGE_FLOOR), decimals=2),
        [q(f"route_check:mailprobe_coverage:month_to_date{{{ACCOUNT}}}", instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big("Worst route's disconnection", f"The largest disconnection this contract month "
            f"among the routes; each must stay under {DISCONNECTION_MINUTES} min.", "m",
            at_most(DISCONNECTION_MINUTES, DISCONNECTION_MINUTES / 2), decimals=1),
        [q("max by (job, instance) (route:mailprobe_disconnection_minutes:month_to_date)",
           instant=True)],
        width=3, height=5,
    )  # fmt: skip
    b.add(
        big(f"Probes over {DELAY_MAXIMUM_TEXT} this month", f"Probes of all routes that passed "
            f"the {DELAY_MAXIMUM_TEXT} maximum undelivered this contract month; more than "
            f"{OVER_MAXIMUM_ALLOWED} breaks the delay clause.", "none", over_maximum_steps(),
            decimals=0),
        [q("sum by (job, instance) (route:mailprobe_probes_over_max:month_to_date)",
           instant=True)],
        width=3, height=5,
    )  # fmt: skip


def connectivity(b: Board) -> None:
    """Per route: connectivity, disconnection, budget, coverage, error ratios."""
    b.row(f"Per route, {MONTH}: connectivity ({CONNECTIVITY_PERCENT} %, disconnection under "
          f"{DISCONNECTION_MINUTES} min a month)")  # fmt: skip
    b.add(
        gauge.Panel()
        .title("Connectivity this month")
        .description(f"Share of the observed time outside maintenance the route could send "
                     f"and receive this contract month; the contract promises "
                     f"{CONNECTIVITY_PERCENT} %.")
        .unit("percent").decimals(3).min(99).max(100).reduce_options(last())
        .thresholds(at_least(CONNECTIVITY_PERCENT)).no_value("no data"),
        [q(month_ratio(f'{ROUTE},check="connectivity"'), "{{route}}", instant=True)],
        width=6, height=7,
    )  # fmt: skip
    b.add(
        bars("Disconnection this month", f"Minutes the route could not send or receive this "
             f"contract month; the contract requires less than {DISCONNECTION_MINUTES}.", "m",
             at_most(DISCONNECTION_MINUTES, DISCONNECTION_MINUTES / 2), lo=0,
             hi=DISCONNECTION_MINUTES, decimals=1),
        [q(f"route:mailprobe_disconnection_minutes:month_to_date{{{ROUTE}}}", "{{route}}",
           instant=True)],
        width=6, height=7,
    )  # fmt: skip
    b.add(
        bars("Disconnection budget left", f"Minutes of the {DISCONNECTION_MINUTES} left this "
             "contract month; at 0 the limit is reached, which already breaks 'less than'.", "m",
             steps((None, "red"), (0.01, "orange"), (DISCONNECTION_MINUTES / 2, "green")),
             hi=DISCONNECTION_MINUTES, decimals=1),
        [q(f"route:mailprobe_disconnection_budget_remaining:minutes{{{ROUTE}}}", "{{route}}",
           instant=True)],
        width=6, height=7,
    )  # fmt: skip
    b.add(
        bars("Coverage this month", "Share of the contract month so far the route was "
             "observed.", "percentunit", at_least(COVERAGE_FLOOR), lo=0, hi=1, decimals=2),
        [q(f'route_check:mailprobe_coverage:month_to_date{{{ROUTE},check="connectivity"}}',
           "{{route}}", instant=True)],
        width=6, height=7,
    )  # fmt: skip
    b.add(
        graph("Connectivity error ratio by window", "Down share of the observed time over "
              f"the burn-rate alerts' windows; the {100 - CONNECTIVITY_PERCENT:.1f} % budget is "
              "the threshold line.", "percentunit")
        .thresholds(steps((None, "green"), (1 - CONNECTIVITY_PERCENT / 100, "red")))
        .thresholds_style(dashed_thresholds()),
        [q(f'route_check:mailprobe_sli_error_ratio:{w}{{{ROUTE},check="connectivity"}}',
           f"{{{{route}}}} {w.removeprefix('rate')}")
         for w in ("rate5m", "rate1h", "rate1d", "rate30d")],
        width=24, height=8,
    )  # fmt: skip


def delay(b: Board) -> None:
    """Per route: delay averages, the longest delay, probes over the maximum, the limits."""
    b.row(f"Per route: delay (average at most {DELAY_AVERAGE_TEXT}, maximum "
          f"{DELAY_MAXIMUM_TEXT} exceeded at most {OVER_MAXIMUM_TEXT})")  # fmt: skip
    b.add(
        bars("Average delay this month", f"Send delay (accepted until it left the sender's "
             f"service), receive delay (reached the recipient's service until visible), and "
             f"end to end, {RANGE_NOTE}; each average at most {DELAY_AVERAGE_SECONDS} s.", "s",
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
             f"slowest probe delivered, {RANGE_NOTE}; the maximum allowed is "
             f"{DELAY_MAXIMUM_TEXT}.", "s",
             at_most(DELAY_MAXIMUM_SECONDS, DELAY_MAXIMUM_SECONDS / 2), lo=0),
        [q(f"histogram_quantile(1, sum by (job, instance, route, le) "
           f"(increase(mailprobe_delivery_delay_seconds_bucket{{{ROUTE}}}[$__range])))",
           "{{route}}", instant=True)],
        width=8, height=7,
    )  # fmt: skip
    b.add(
        bars(f"Probes over {DELAY_MAXIMUM_TEXT} this month", f"Probes that passed the "
             f"{DELAY_MAXIMUM_TEXT} maximum undelivered, this contract month and in the last "
             f"30 days; more than {OVER_MAXIMUM_ALLOWED} a month breaks the delay clause.",
             "none", over_maximum_steps(), lo=0, hi=OVER_MAXIMUM_ALLOWED + 1, decimals=0),
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


def services(b: Board) -> None:
    """Webmail opens within the limit, anti-virus tests, and mail by kind (internal, external)."""
    b.row(f"Webmail (opens within {WEBMAIL_LIMIT_SECONDS} s), anti-virus, internal and external "
          f"mail, {MONTH}")  # fmt: skip
    b.add(
        big(f"Webmail loads over {WEBMAIL_LIMIT_SECONDS} s this month", "Webmail loads that "
            f"did not open within {WEBMAIL_LIMIT_SECONDS} s (slower, or failed) this contract "
            f"month, every check together; more than {WEBMAIL_OVER_ALLOWED} breaks the webmail "
            "clause under the default policy.", "none",
            steps((None, "green"), (WEBMAIL_OVER_ALLOWED, "orange"),
                  (WEBMAIL_OVER_ALLOWED + 1, "red")), decimals=0),
        [q("instance:mailprobe_webmail_over_limit:month_to_date", instant=True)],
        width=4, height=6,
    )  # fmt: skip
    b.add(
        bars("Webmail load time, p95 of the last hour", "95th percentile of the loads that "
             f"opened, per webmail check; the contract's limit is {WEBMAIL_LIMIT_SECONDS} s.",
             "s", at_most(WEBMAIL_LIMIT_SECONDS, WEBMAIL_LIMIT_SECONDS / 2), lo=0,
             hi=WEBMAIL_LIMIT_SECONDS * 1.5),
        [q("webmail:mailprobe_webmail_load_seconds:p95_1h", "{{webmail}}", instant=True)],
        width=6, height=6,
    )  # fmt: skip
    b.add(
        bars("Webmail down this month", "Minutes each webmail check was confirmed down (loads "
             "failed or over the limit, confirmed as for mail) this contract month, counted "
             "apart from mail connectivity.", "m", steps((None, "green"), (0.01, "orange")),
             lo=0, decimals=1),
        [q("webmail:mailprobe_webmail_down_minutes:month_to_date", "{{webmail}}",
           instant=True)],
        width=5, height=6,
    )  # fmt: skip
    b.add(
        bars("Anti-virus tests by outcome", "Probes with the EICAR test file and what the "
             "provider did with them, over the dashboard's time range; intact is a breach "
             f"(clean mail after them may be at most {ANTIVIRUS_DELAY_SECONDS} s slower on "
             "average: see `mailprobe report`).", "none",
             steps((None, "blue")), lo=0, decimals=0),
        [q("sum by (outcome) (increase(mailprobe_antivirus_tests_total[$__range]))",
           "{{outcome}}", instant=True)],
        width=4, height=6,
    )  # fmt: skip
    b.add(
        bars("Worst disconnection by kind", "The largest disconnection this contract month "
             "among the internal routes and among the external ones (the contract promises "
             f"internal and external mail); each under {DISCONNECTION_MINUTES} min.", "m",
             at_most(DISCONNECTION_MINUTES, DISCONNECTION_MINUTES / 2), lo=0,
             hi=DISCONNECTION_MINUTES, decimals=1),
        [q("max by (job, instance, kind) (route:mailprobe_disconnection_minutes:month_to_date "
           "* on (job, instance, route) group_left (kind) mailprobe_route_info)", "{{kind}}",
           instant=True)],
        width=5, height=6,
    )  # fmt: skip
