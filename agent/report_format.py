"""How the report writes its figures, shared by the text, Markdown and HTML renderers.

One unit per kind of figure and a fixed number of decimals for each, so a column never mixes
``0.2655 min`` with ``0.02074 s`` or ``80 %`` with ``80.0020 %``: minutes with two decimals,
delays in seconds with three (millisecond resolution), percentages with four (the availability
target is 99.99 %), probes and days as whole numbers.

A clause's figure is rounded against the reader, never in the provider's favour: a figure that
must stay at most its limit is rounded up, one that must reach at least its limit is rounded
down. So 44.001 min shows as 44.01 beside a limit of 44.00, and 99.98996 % as 99.9899 beside
99.9900: a breached clause never shows a figure equal to its limit. The other figures follow the
same rule (time down and delays up, coverage and availability down), so a figure reads the same
wherever it appears.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from mailprobe.agent.checks import ALL_ROUTES
from mailprobe.agent.clauses import ClauseResult, Unit, Verdict
from mailprobe.agent.windows import zone

if TYPE_CHECKING:  # the report model builds its precision notes with this module's numbers
    from mailprobe.agent.report import Report, ScopeReport

DECIMALS = {Unit.MINUTES: 2, Unit.SECONDS: 3, Unit.PERCENT: 4, Unit.PROBES: 0, Unit.DAYS: 0,
            Unit.LOADS: 0}  # fmt: skip
AT_LEAST = frozenset({Unit.PERCENT, Unit.DAYS})
"""Units whose clauses ask for at least the limit (the others for at most)."""

PROJECTION_NOTE = "if the rest of the month stays as observed"


def number(value: float, unit: Unit, *, up: bool | None = None) -> str:
    """``value`` with the fixed decimals of ``unit``; ``up`` rounds up (True) or down (False)."""
    places = DECIMALS[unit]
    if up is None:
        return f"{value:.{places}f}"
    scale = 10**places
    # The tolerance keeps float noise (0.1 + 0.2) from moving a figure by a last digit.
    step = math.ceil(value * scale - 1e-6) if up else math.floor(value * scale + 1e-6)
    return f"{step / scale:.{places}f}"


def minutes(seconds: float) -> str:
    """Seconds written as minutes, two decimals, rounded up (time down or unobserved)."""
    return number(seconds / 60.0, Unit.MINUTES, up=True)


def delay(seconds: float) -> str:
    """A delay in seconds, three decimals, rounded up."""
    return number(seconds, Unit.SECONDS, up=True)


def percent(value: float) -> str:
    """A percentage (availability, coverage), four decimals, rounded down, without the sign."""
    return number(value, Unit.PERCENT, up=False)


def duration(seconds: float) -> str:
    """A set duration in the report's units: ``20 ms``, ``15 s``, ``100 s``, ``2 min``, ``1 h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def measured(clause: ClauseResult) -> str:
    """The clause's figure in its unit, rounded against the reader; ``-`` when not measured."""
    if clause.measured is None:
        return "-"
    return number(clause.measured, clause.unit, up=clause.unit not in AT_LEAST)


def limit(clause: ClauseResult) -> str:
    """The clause's limit with its direction, e.g. ``<= 44.00`` or ``>= 99.9900``."""
    sign = ">=" if clause.unit in AT_LEAST else "<="
    return f"{sign} {number(clause.limit, clause.unit)}"


def unit(clause: ClauseResult) -> str:
    """The unit a clause's figure and limit are written in."""
    return str(clause.unit)


def verdict(value: Verdict | None) -> str:
    """The verdict in words (``kept``, ``breached``, ``not enough data``); ``-`` for none."""
    return "-" if value is None else value.value


def scope_name(scope: ScopeReport) -> str:
    """``Account (all routes)``, ``Internal mail (routes a, b)`` or ``Route NAME``."""
    if scope.kind is not None:
        noun = "route" if len(scope.members) == 1 else "routes"
        return f"{scope.kind.capitalize()} mail ({noun} {', '.join(scope.members)})"
    return "Account (all routes)" if scope.route == ALL_ROUTES else f"Route {scope.route}"


def when(report: Report, ts: float, *, with_zone: bool = True) -> str:
    """An instant as local wall-clock time in the contract zone."""
    fmt = "%Y-%m-%d %H:%M:%S %Z" if with_zone else "%Y-%m-%d %H:%M:%S"
    return datetime.fromtimestamp(ts, zone(report.timezone)).strftime(fmt)


def title(report: Report) -> str:
    """The document's title line."""
    return f"SLA report {report.month}"


def period(report: Report) -> str:
    """The calendar month it covers, in the contract zone."""
    return f"{when(report, report.start)} to {when(report, report.end)} ({report.timezone})"


def partial_notice(report: Report) -> str:
    """For a month in progress: that it is, up to when, and how to read the verdicts; else ''."""
    if not report.partial:
        return ""
    done = (report.evaluated_until - report.start) / 86400.0
    days = (report.end - report.start) / 86400.0
    return (
        f"Month in progress: evaluated up to {when(report, report.evaluated_until)}, "
        f"{done:.1f} of {days:.0f} days. Only breaches are final; the Projected column gives the "
        f"verdict {PROJECTION_NOTE}."
    )


def facts(scope: ScopeReport) -> list[tuple[str, str]]:
    """The scope's figures as (label, value) pairs, in the report's units."""
    f = scope.figures
    avail = "-" if f.availability_percent is None else f"{percent(f.availability_percent)} %"
    rows = [
        (
            "Coverage",
            f"{percent(f.coverage_percent)} % observed "
            f"({minutes(scope.unobserved_seconds)} min not observed)",
        ),
        ("Down outside maintenance", f"{minutes(f.down_seconds)} min"),
        ("Down inside maintenance", f"{minutes(f.maintenance_seconds)} min"),
        ("Availability", avail),
    ]
    if scope.send_down_seconds is not None and scope.receive_down_seconds is not None:
        rows.append(
            (
                "Send / receive down",
                f"{minutes(scope.send_down_seconds)} / {minutes(scope.receive_down_seconds)} min",
            )
        )
    d = f.delivery
    if d.average is not None and d.maximum is not None:
        value = f"average {delay(d.average)} s, maximum {delay(d.maximum)} s over {d.count} probes"
    else:
        value = "no delay measured"
    if d.found_late:
        value += f" ({d.found_late} found late: flagged, not measured)"
    rows.append(("Delivery delay", value))
    rows.append(
        (
            "Probes",
            f"{scope.probes_sent} sent, {scope.probes_delivered} delivered, "
            f"{scope.probes_lost} lost, {scope.probes_failed} failed, "
            f"{d.over_max} over the maximum",
        )
    )
    free = f.year_observed_days - f.year_failure_days
    if f.year_observed_days:
        days = (
            f"{free} of {f.year_observed_days} observed days trouble-free "
            f"({f.year_days} days in the rolling year, {f.year_days - f.year_observed_days} "
            "not observed)"
        )
    else:
        days = f"none of the {f.year_days} days in the rolling year observed"
    rows.append(("Trouble-free days", days))
    return rows + _service_facts(scope)


def _service_facts(scope: ScopeReport) -> list[tuple[str, str]]:
    """Webmail (per check, for the account) and anti-virus tests, where measured."""
    rows: list[tuple[str, str]] = []
    for name, w in scope.webmail:
        value = f"{w.samples} loads, {w.over_limit} not open within the limit ({w.failed} failed)"
        if w.p95 is not None and w.maximum is not None:
            value += f", p95 {delay(w.p95)} s, maximum {delay(w.maximum)} s"
        if w.within_percent is not None:
            value += f", {percent(w.within_percent)} % within"
        value += f"; down {minutes(w.down_seconds)} min (apart from mail)"
        rows.append((f"Webmail {name}", value))
    av = scope.figures.antivirus
    if av.measured:
        parts = [f"{n} {o.replace('_', ' ')}" for o, n in av.outcomes if n]
        if av.pending:
            parts.append(f"{av.pending} pending")
        value = f"{av.tests} sent: " + (", ".join(parts) or "none decided")
        if av.extra_delay_average is not None:
            value += (f"; clean probes after them {delay(av.extra_delay_average)} s slower than "
                      "the median on average")  # fmt: skip
        rows.append(("Anti-virus tests", value))
    return rows
