"""The monthly SLA report: figures per route and for the account, verdicts, remedies, renderers.

Everything is recomputed from the ledger (runs, base-check transitions, probes) for a calendar month
in the contract time zone, so the report does not depend on a running agent's counters. A month
still in progress is evaluated up to ``now`` and marked partial.

Scopes: the account (route ``all``: downtime is ``any``, the union over routes) and each route
(downtime is ``connectivity``). Remedies are owed on the first scope of the report: the account,
or the single route asked for.

The ledger is read through ``MonthSource``, the four questions the report asks of it, so a fleet
of vantages merged by the quorum (``mailprobe.agent.fleet_report``) reports through the same code.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from mailprobe.agent.checks import ALL_ROUTES, Check, Transition, breakdown, spans_from_transitions
from mailprobe.agent.clauses import (
    NOT_MEASURED,
    ClauseResult,
    DelayStats,
    Figures,
    Scope,
    Verdict,
    evaluate,
)
from mailprobe.agent.durations import format_duration
from mailprobe.agent.fleet import FleetSummary
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.remedies import RemedyOutcome, remedies
from mailprobe.agent.report_precision import precision_notes
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import (
    OneOffWindow,
    RecurringWindow,
    Span,
    clip,
    days_between,
    intersect,
    month_bounds,
    shift_month,
    subtract,
    total,
    window_occurrences,
    window_spans,
    zone,
)


class MonthSource(Protocol):
    """What the report reads of a ledger (``mailprobe.agent.ledger.Ledger`` is one)."""

    def routes(self) -> list[str]:
        """Every route seen."""
        ...

    def runs(self) -> list[Span]:
        """Observed spans, normalized."""
        ...

    def transitions(self, until: float = ...) -> list[Transition]:
        """Base-check transitions before ``until``, in time order."""
        ...

    def probes(self, start: float, end: float, route: str | None = None) -> list[Probe]:
        """Probes sent in ``[start, end)``, in send order."""
        ...


@dataclass(frozen=True, slots=True)
class Outage:
    """One down period of a route's base check, cut to the month."""

    route: str
    check: str
    start: float
    end: float
    down_seconds: float
    maintenance_seconds: float


@dataclass(frozen=True, slots=True)
class DayFigure:
    """Seconds of one local calendar day for a scope."""

    day: date
    observed_seconds: float
    down_seconds: float
    maintenance_seconds: float
    unobserved_seconds: float


@dataclass(frozen=True, slots=True)
class ScopeReport:
    """Figures and verdicts of the account or one route."""

    route: str
    figures: Figures
    send_down_seconds: float | None
    receive_down_seconds: float | None
    probes_sent: int
    probes_delivered: int
    probes_lost: int
    probes_failed: int
    daily: tuple[DayFigure, ...]
    clauses: tuple[ClauseResult, ...]
    delays: tuple[float, ...]

    @property
    def unobserved_seconds(self) -> float:
        """Evaluated time the agent was not running."""
        return self.figures.period_seconds - self.figures.observed_seconds


@dataclass(frozen=True, slots=True)
class Report:
    """A month's report."""

    month: str
    timezone: str
    start: float
    end: float
    evaluated_until: float
    generated_at: float
    partial: bool
    scopes: tuple[ScopeReport, ...]
    remedy: RemedyOutcome
    outages: tuple[Outage, ...]
    windows: tuple[tuple[str, float, float], ...]
    unobserved: tuple[Span, ...]
    delay_average: float
    delay_maximum: float
    rules: tuple[str, ...]
    not_measured: tuple[str, ...] = tuple(text for _, text in NOT_MEASURED)
    precision: tuple[str, ...] = ()  # how precise the first scope's figures are, in words
    fleet: FleetSummary | None = None  # several vantage points merged by the quorum

    @property
    def verdict(self) -> Verdict:
        """Worst clause verdict of the first scope."""
        found = {c.verdict for c in self.scopes[0].clauses} if self.scopes else set()
        for verdict in (Verdict.BREACHED, Verdict.NOT_ENOUGH_DATA):
            if verdict in found:
                return verdict
        return Verdict.KEPT


def accounting_rules(sla: SlaConfig) -> tuple[str, ...]:
    """The accounting rules in words, with the configured numbers."""
    f = format_duration
    return (
        f"Calendar months and days are taken in the contract time zone {sla.timezone}.",
        "Each probe is a sample taken at its send time. Send works when the server accepted the "
        "probe; it fails when submission failed (connect, TLS, login or the message refused).",
        f"Receive works when an accepted probe is in the mailbox within {f(sla.receive_deadline)} "
        "of its send time; it fails when the probe comes later, is lost, or the deadline passes "
        "without it. A route that accepts mail but does not deliver it is therefore down from the "
        "send time of the first such probe until the send time of the next probe that arrives in "
        "time.",
        "Receive also fails when the mailbox cannot be opened (connection refused, TLS or login "
        "failure, a dropped session that does not come back): down from the moment the mailbox "
        "went away, confirmed like a failed probe, until a probe sent after the mailbox came back "
        "arrives in time. A probe found in the mailbox when the agent (re)connects was not seen "
        "arriving: its arrival is the earliest moment the agent could have seen it, its delay is "
        "not a measurement and enters no delay figure, and it decides nothing about receive.",
        f"One failed sample is a suspicion. A second consecutive failure confirms it; a success "
        f"sent within {f(sla.confirm_within)} clears it as a glitch that costs nothing. If no "
        f"sample comes within {f(sla.confirm_within)} the failure stands. A confirmed down period "
        "starts at the send time of the FIRST failed sample and ends at the send time of the first "
        "successful one, to the sub-second; it is never rounded to the probe interval.",
        "A route's connectivity is down while it cannot send or cannot receive (the union of "
        "both). The account is down while any route is down; overlapping outages count once.",
        "Seconds inside an agreed maintenance window are maintenance, not downtime. Time the "
        "agent was not running is unobserved: neither up nor down. Coverage is observed time "
        "divided by the evaluated time.",
        "Disconnection and failure minutes are the down minutes outside maintenance "
        + (
            f"(disconnection limit {sla.connectivity_percent:g} % of the month's length); "
            if sla.ratio_mode
            else f"(limits {sla.disconnection_minutes:g} and {sla.failure_minutes:g} min, as stated "
            "in the contract, not a ratio of the month's length); "
        )
        + f"maintenance minutes are down minutes inside windows (limit "
        f"{sla.maintenance_minutes:g}). Availability is 1 - down / (observed - maintenance) "
        f"(target {sla.availability_percent:g} %).",
        f"A trouble-free day is an observed local calendar day with no down second outside "
        f"maintenance; the rolling year is the 12 months ending with the report month (target "
        f"{sla.trouble_free_days} days).",
        f"Delivery delay is arrival minus send time of probes sent in the month and seen arriving "
        f"(average at most "
        f"{f(sla.delay_average)}). A probe is over the maximum when it arrived more than "
        f"{f(sla.delay_maximum)} after sending or had not arrived by then; it counts once, in the "
        f"month it passed the maximum (more than {sla.over_maximum_allowed} is a breach).",
        f"A clause is breached when the observed figures already break it whatever the "
        f"unobserved time holds (availability: even with every unobserved second up). It is kept "
        f"only when the month is over, at least {sla.coverage_floor_percent:g} % of it was "
        "observed, and it holds. Otherwise there is not enough data, and the report says what "
        "would be needed; for a month in progress it says what the verdict would be if the rest "
        "of the month stays as observed. Only decided breaches owe a remedy.",
    )


def _delay_stats(values: Sequence[float], over: int, found_late: int = 0) -> DelayStats:
    if not values:
        return DelayStats(over_max=over, found_late=found_late)
    return DelayStats(len(values), sum(values) / len(values), max(values), over, found_late)


def _delays(
    probes: Sequence[Probe], over_max: Sequence[Probe], sla: SlaConfig
) -> tuple[DelayStats, DelayStats, DelayStats]:
    maximum = sla.delay_maximum
    delivery = [p.measured_delay for p in probes if p.measured_delay is not None]
    found_late = sum(p.arrived and p.found_late for p in probes)
    send = [p.send_delay_seconds for p in probes if p.send_delay_seconds is not None]
    receive = [p.receive_delay_seconds for p in probes if p.receive_delay_seconds is not None]
    return (
        _delay_stats(delivery, len(over_max), found_late),
        _delay_stats(send, sum(v > maximum for v in send)),
        _delay_stats(receive, sum(v > maximum for v in receive)),
    )


def _observed_days(observed: Sequence[Span], days: Sequence[tuple[date, Span]]) -> int:
    return sum(1 for _, (lo, hi) in days if total(clip(observed, lo, hi)) > 0)


def _failure_days(
    parts: Mapping[tuple[str, Check], tuple[list[Span], list[Span]]],
    key: tuple[str, Check],
    days: Sequence[tuple[date, Span]],
) -> int:
    down = parts[key][0]
    return sum(1 for _, (lo, hi) in days if total(clip(down, lo, hi)) > 0)


def build_report(
    ledger: MonthSource,
    sla: SlaConfig,
    month: str,
    *,
    windows: Sequence[OneOffWindow | RecurringWindow] = (),
    routes: Sequence[str] = (),
    route: str | None = None,
    now: float | None = None,
) -> Report:
    """Compute the report of calendar ``month`` (``YYYY-MM``) from the ledger."""
    now = time.time() if now is None else now
    tz = zone(sla.timezone)
    start, end = month_bounds(month, tz)
    until = max(start, min(end, now))
    known = list(dict.fromkeys([*routes, *ledger.routes()]))
    if route is not None and route not in known:
        raise ValueError(f"route {route!r} is neither configured nor in the ledger")
    runs = ledger.runs()
    transitions = ledger.transitions(until)
    base = spans_from_transitions(transitions, until)

    def parts_for(lo: float, hi: float) -> dict[tuple[str, Check], tuple[list[Span], list[Span]]]:
        return breakdown(
            clip(runs, lo, hi), base, known, lambda r: window_spans(windows, lo, hi, r)
        )

    month_parts = parts_for(start, until)
    year_start = month_bounds(shift_month(month, -11), tz)[0]
    year_parts = parts_for(year_start, until)
    year_days = days_between(year_start, end, tz)
    year_observed = 100.0 * total(clip(runs, year_start, until)) / max(until - year_start, 1e-9)
    month_days = days_between(start, until, tz) if until > start else []
    observed = clip(runs, start, until)
    probes = ledger.probes(start, until)
    over_candidates = ledger.probes(start - sla.delay_maximum, until)
    over_max = [
        p for p in over_candidates
        if (mark := p.over_maximum_at(sla.delay_maximum)) is not None
        and start <= mark < until and mark <= now
    ]  # fmt: skip
    year_observed_days = _observed_days(clip(runs, year_start, until), year_days)

    scopes: list[ScopeReport] = []
    names = [route] if route is not None else [ALL_ROUTES, *known]
    for name in names:
        key = (ALL_ROUTES, Check.ANY) if name == ALL_ROUTES else (name, Check.CONNECTIVITY)
        down, maint = month_parts[key]
        mine = [p for p in probes if name in (ALL_ROUTES, p.route)]
        mine_over = [p for p in over_max if name in (ALL_ROUTES, p.route)]
        delivery, send, receive = _delays(mine, mine_over, sla)
        figures = Figures(
            period_seconds=until - start,
            month_seconds=end - start,
            observed_seconds=total(observed),
            down_seconds=total(down),
            maintenance_seconds=total(maint),
            year_days=len(year_days),
            year_observed_days=year_observed_days,
            year_failure_days=_failure_days(year_parts, key, year_days),
            year_observed_percent=year_observed,
            delivery=delivery,
            send=send,
            receive=receive,
        )
        daily = tuple(
            DayFigure(
                day,
                total(clip(observed, lo, hi)),
                total(clip(down, lo, hi)),
                total(clip(maint, lo, hi)),
                hi - lo - total(clip(observed, lo, hi)),
            )
            for day, (lo, hi) in month_days
        )
        per_check = name != ALL_ROUTES
        scopes.append(
            ScopeReport(
                route=name,
                figures=figures,
                send_down_seconds=total(month_parts[(name, Check.SEND)][0]) if per_check else None,
                receive_down_seconds=(
                    total(month_parts[(name, Check.RECEIVE)][0]) if per_check else None
                ),
                probes_sent=len(mine),
                probes_delivered=sum(p.arrived_at is not None for p in mine),
                probes_lost=sum(p.status is Status.LOST for p in mine),
                probes_failed=sum(p.status is Status.FAILED for p in mine),
                daily=daily,
                clauses=evaluate(figures, sla, Scope.ROUTE if per_check else Scope.ACCOUNT),
                delays=tuple(p.measured_delay for p in mine if p.measured_delay is not None),
            )
        )

    outages: list[Outage] = []
    for (r, check), spans in sorted(base.items()):
        if route is not None and r != route:
            continue
        win = window_spans(windows, start, until, r)
        for span in clip(spans, start, until):
            seen = clip(observed, *span)
            outages.append(
                Outage(
                    r,
                    str(check),
                    span[0],
                    span[1],
                    total(clip(subtract(seen, win), *span)),
                    total(clip(intersect(seen, win), *span)),
                )
            )
    outages.sort(key=lambda o: (o.start, o.route, o.check))
    return Report(
        month=month,
        timezone=sla.timezone,
        start=start,
        end=end,
        evaluated_until=until,
        generated_at=now,
        partial=until < end,
        scopes=tuple(scopes),
        remedy=remedies(scopes[0].clauses, sla, month, len(days_between(start, end, tz))),
        outages=tuple(outages),
        windows=tuple((n, s, e) for n, (s, e) in window_occurrences(windows, start, end)),
        unobserved=tuple(subtract([(start, until)], observed)),
        delay_average=sla.delay_average,
        delay_maximum=sla.delay_maximum,
        rules=accounting_rules(sla),
        precision=precision_notes(sla, scopes[0].figures),
    )
