"""The monthly SLA report: figures per route and for the account, verdicts, remedies, renderers.

Everything is recomputed from the ledger (runs, base-check transitions, probes) for a calendar month
in the contract time zone, so the report does not depend on a running agent's counters. A month
still in progress is evaluated up to ``now`` and marked partial.

Scopes: the account (route ``all``: downtime is ``any``, the union over routes), the internal
and the external routes together (``mailprobe.agent.report_kinds``) and each route (downtime is
``connectivity``). Remedies are owed on the first scope of the report: the account, or the single
route asked for. Webmail and anti-virus figures come from ``mailprobe.agent.report_services``;
the clauses measured only where configured are named as not measured when they are not.

The ledger is read through ``MonthSource``, the four questions the report asks of it, so a fleet
of vantages merged by the quorum (``mailprobe.agent.fleet_report``) reports through the same code.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from mailprobe.agent.checks import ALL_ROUTES, Check, breakdown, spans_from_transitions
from mailprobe.agent.clauses import (
    NOT_CONFIGURED,
    NOT_MEASURED,
    AntivirusStats,
    ClauseResult,
    DelayStats,
    Figures,
    Scope,
    Verdict,
    WebmailStats,
    evaluate,
)
from mailprobe.agent.durations import format_duration
from mailprobe.agent.fleet import FleetSummary
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.remedies import RemedyOutcome, remedies
from mailprobe.agent.report_kinds import KIND_SCOPE, kind_parts, kind_routes
from mailprobe.agent.report_precision import arrival_errors, precision_notes
from mailprobe.agent.report_services import WebmailOutage, antivirus_by_scope, webmail_figures
from mailprobe.agent.report_source import MonthSource
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
    kind: str | None = None  # a kind scope: internal or external
    members: tuple[str, ...] = ()  # a kind scope's routes
    webmail: tuple[tuple[str, WebmailStats], ...] = ()  # the account: each webmail check

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
        f"A probe the provider filed into the junk folder instead of the inbox fails the "
        f"anti-spam clause (more than {sla.junked_allowed} such probes a month is a breach); it "
        "was delivered, so connectivity and delay count it as received. Only probes that arrived "
        "while the junk folder was watched too are counted.",
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


def _failure_days(down: Sequence[Span], days: Sequence[tuple[date, Span]]) -> int:
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
    kinds: Mapping[str, str] | None = None,
    webmail: Sequence[str] = (),
    antivirus: Sequence[str] = (),
) -> Report:
    """Compute the report of calendar ``month`` (``YYYY-MM``) from the ledger.

    ``kinds``: route -> ``internal``/``external``; ``webmail``: the configured webmail checks;
    ``antivirus``: the routes configured to send test viruses.
    """
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

    web, web_outages = webmail_figures(ledger, sla, (start, until), observed, windows, webmail)
    av_routes = {r: r in antivirus for r in known}
    av = antivirus_by_scope(ledger, (start, until), probes, av_routes)
    by_kind = kind_routes(kinds or {}, known) if route is None else {}
    scopes: list[ScopeReport] = []
    names = (
        [route] if route is not None else [ALL_ROUTES, *(KIND_SCOPE + k for k in by_kind), *known]
    )
    for name in names:
        kind = name.removeprefix(KIND_SCOPE) if name.startswith(KIND_SCOPE) else None
        members = by_kind[kind] if kind is not None else ([] if name == ALL_ROUTES else [name])
        if kind is not None:
            down, maint = kind_parts(month_parts, members)
            year_down = kind_parts(year_parts, members)[0]
        else:
            key = (ALL_ROUTES, Check.ANY) if name == ALL_ROUTES else (name, Check.CONNECTIVITY)
            down, maint = month_parts[key]
            year_down = year_parts[key][0]
        mine = [p for p in probes if name == ALL_ROUTES or p.route in members]
        mine_over = [p for p in over_max if name == ALL_ROUTES or p.route in members]
        delivery, send, receive = _delays(mine, mine_over, sla)
        figures = Figures(
            period_seconds=until - start,
            month_seconds=end - start,
            observed_seconds=total(observed),
            down_seconds=total(down),
            maintenance_seconds=total(maint),
            year_days=len(year_days),
            year_observed_days=year_observed_days,
            year_failure_days=_failure_days(year_down, year_days),
            year_observed_percent=year_observed,
            delivery=delivery,
            send=send,
            receive=receive,
            webmail=web[""] if name == ALL_ROUTES else WebmailStats(),
            antivirus=av.get("" if name == ALL_ROUTES else name, AntivirusStats()),
            junk_watched=sum(p.arrived and p.junked is not None for p in mine),
            junked=sum(p.arrived and p.junked is True for p in mine),
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
        per_check = name != ALL_ROUTES and kind is None
        scope = Scope.ROUTE if per_check else (Scope.ACCOUNT if kind is None else Scope.KIND)
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
                clauses=evaluate(figures, sla, scope),
                delays=tuple(p.measured_delay for p in mine if p.measured_delay is not None),
                kind=kind,
                members=tuple(members) if kind is not None else (),
                webmail=tuple((n, s) for n, s in web.items() if n) if name == ALL_ROUTES else (),
            )
        )

    errors = arrival_errors([p for p in probes if route in (None, p.route)])
    outages = _outages(base, web_outages, route, windows, observed, (start, until))
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
        precision=precision_notes(sla, scopes[0].figures, errors),
        not_measured=_not_measured(scopes[0].figures, by_kind, route),
    )


def _outages(
    base: Mapping[tuple[str, Check], Sequence[Span]],
    webmail: Sequence[WebmailOutage],
    route: str | None,
    windows: Sequence[OneOffWindow | RecurringWindow],
    observed: Sequence[Span],
    period: Span,
) -> list[Outage]:
    """The month's down periods of the mail checks and (for the account) the webmail checks."""
    start, until = period
    found: list[tuple[str, str, Span, list[Span]]] = [
        (r, str(check), span, window_spans(windows, start, until, r))
        for (r, check), spans in sorted(base.items())
        if route is None or r == route
        for span in clip(list(spans), start, until)
    ]
    if route is None:
        every = window_spans(windows, start, until, None)
        found += [(o.check, str(Check.WEBMAIL), (o.start, o.end), every) for o in webmail]
    outages = []
    for name, check, span, win in found:
        seen = clip(list(observed), *span)
        outages.append(Outage(name, check, span[0], span[1], total(subtract(seen, win)),
                              total(intersect(seen, win))))  # fmt: skip
    return sorted(outages, key=lambda o: (o.start, o.route, o.check))


def _not_measured(
    figures: Figures, by_kind: Mapping[str, Sequence[str]], route: str | None
) -> tuple[str, ...]:
    """The promises no clause measures, those not configured here, and a kind without routes."""
    out = [text for _, text in NOT_MEASURED]
    if route is None and not (figures.webmail.checks or figures.webmail.samples):
        out.append(NOT_CONFIGURED["webmail"])
    if not figures.antivirus.measured:
        out.append(NOT_CONFIGURED["anti_virus"])
    if route is None and by_kind:
        out += [
            f"{kind.capitalize()} mail: no {kind} route (a route with "
            f"{'both ends at the provider' if kind == 'internal' else 'one end elsewhere'})"
            for kind in ("internal", "external") if kind not in by_kind
        ]  # fmt: skip
    return tuple(out)
