"""The written guarantee as config, each clause judged against a month's figures, and remedies.

Defaults are the seed contract: disconnection < 44 min a month, failure <= 100 min, maintenance
<= 100 min, availability >= 99.99 %, >= 360 trouble-free days a year, delivery delay average <= 1 min
and maximum <= 1 h with at most two probes over it; connectivity, delay and operations breaches owe
double service time, anti-spam breaches the monthly fee.

Verdict rules (the report states them):

- ``breached`` when the observed figures alone already exceed the limit: seconds and counts only grow
  with more observation, so a breach seen with partial coverage is certain. For availability the
  test is whether it fails even if every unobserved second had been up.
- ``insufficient_data`` when not breached and coverage (observed / evaluated time) is below
  ``coverage_floor_percent``, or when nothing was measured.
- ``kept`` otherwise.

Remedies: a clause belongs to a group (connectivity, delay, operations, anti_spam) and each group has
a remedy. ``double_service_time`` and ``fee_waived`` are owed once a month however many clauses call
for them. ``percentage`` is per breached clause (one event): contract_total x overdue / committed x
coefficient, or contract_total x rate_percent_per_hour % x overdue hours when a rate is set and the
clause measures time; at least ``minimum_per_event``; all percentage amounts together capped at
``cap_percent`` of the contract total.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from mailprobe.agent.config_types import Count, Flag, Number, Text
from mailprobe.agent.durations import Duration, format_duration, positive
from mailprobe.agent.windows import TimeZoneName

PositiveDuration = Annotated[Duration, AfterValidator(positive)]


class RemedyKind(enum.StrEnum):
    """What a breached clause owes."""

    DOUBLE_SERVICE_TIME = "double_service_time"
    FEE_WAIVED = "fee_waived"
    PERCENTAGE = "percentage"


class Remedy(BaseModel):
    """The remedy for one clause group."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: RemedyKind = RemedyKind.DOUBLE_SERVICE_TIME
    coefficient: Number = Field(default=1.0, gt=0)
    rate_percent_per_hour: Number | None = Field(default=None, gt=0)


class Remedies(BaseModel):
    """Remedy per clause group."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connectivity: Remedy = Remedy()
    delay: Remedy = Remedy()
    operations: Remedy = Remedy()
    anti_spam: Remedy = Remedy(kind=RemedyKind.FEE_WAIVED)


class Compensation(BaseModel):
    """Money terms for the percentage formula and the waived fee."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contract_total: Number | None = Field(default=None, gt=0)
    monthly_fee: Number | None = Field(default=None, gt=0)
    currency: Annotated[Text, Field(max_length=16)] = ""
    minimum_per_event: Number = Field(default=1000.0, ge=0)
    cap_percent: Number = Field(default=15.0, gt=0, le=100)


class SlaConfig(BaseModel):
    """The ``sla:`` section: targets, accounting parameters and remedies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: TimeZoneName = "UTC"
    disconnection_minutes: Number = Field(default=44.0, ge=0)
    connectivity_percent: Number = Field(default=99.9, gt=0, lt=100)
    ratio_mode: Flag = False
    failure_minutes: Number = Field(default=100.0, ge=0)
    maintenance_minutes: Number = Field(default=100.0, ge=0)
    availability_percent: Number = Field(default=99.99, gt=0, lt=100)
    trouble_free_days: Count = Field(default=360, ge=0, le=365)
    delay_average: PositiveDuration = 60.0
    delay_maximum: PositiveDuration = 3600.0
    over_maximum_allowed: Count = Field(default=2, ge=0)
    receive_deadline: PositiveDuration = 300.0
    confirm_retry: PositiveDuration = 15.0
    confirm_within: PositiveDuration = 120.0
    coverage_floor_percent: Number = Field(default=90.0, ge=0, le=100)
    remedies: Remedies = Remedies()
    compensation: Compensation = Compensation()

    @model_validator(mode="after")
    def _consistent(self) -> SlaConfig:
        problems = []
        if self.confirm_within < self.confirm_retry:
            problems.append("confirm_within must be at least confirm_retry")
        if self.delay_maximum < self.delay_average:
            problems.append("delay_maximum must be at least delay_average")
        uses_percentage = (
            any(
                r.kind is RemedyKind.PERCENTAGE
                for r in (self.remedies.connectivity, self.remedies.delay, self.remedies.operations)
            )
            or self.remedies.anti_spam.kind is RemedyKind.PERCENTAGE
        )
        if uses_percentage and self.compensation.contract_total is None:
            problems.append("a percentage remedy needs compensation.contract_total")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def disconnection_limit_minutes(self, month_seconds: float) -> float:
        """The connectivity limit: stated minutes, or the ratio of this month's length."""
        if self.ratio_mode:
            return (100.0 - self.connectivity_percent) / 100.0 * month_seconds / 60.0
        return self.disconnection_minutes


# ---------------------------------------------------------------- figures and verdicts


class Verdict(enum.StrEnum):
    """A clause's outcome for the month."""

    KEPT = "kept"
    BREACHED = "breached"
    INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True, slots=True)
class DelayStats:
    """Delay figures of one kind (delivery, send or receive) for a month."""

    count: int = 0
    average: float | None = None
    maximum: float | None = None
    over_max: int = 0


@dataclass(frozen=True, slots=True)
class Figures:
    """What a scope (a route or the account) measured in the evaluated period."""

    period_seconds: float
    month_seconds: float
    observed_seconds: float
    down_seconds: float
    maintenance_seconds: float
    year_days: int
    year_failure_days: int
    year_observed_percent: float
    delivery: DelayStats = DelayStats()
    send: DelayStats = DelayStats()
    receive: DelayStats = DelayStats()

    @property
    def coverage_percent(self) -> float:
        """Observed share of the evaluated period."""
        return 100.0 * self.observed_seconds / self.period_seconds if self.period_seconds else 0.0

    @property
    def availability_percent(self) -> float | None:
        """Up share of observed time outside maintenance; None when nothing was observed."""
        base = self.observed_seconds - self.maintenance_seconds
        return 100.0 * (1.0 - self.down_seconds / base) if base > 0 else None


@dataclass(frozen=True, slots=True)
class ClauseResult:
    """One clause judged: the measured value against its limit."""

    clause: str
    group: str
    title: str
    measured: float | None
    limit: float
    unit: str
    verdict: Verdict
    detail: str
    overdue: float = 0.0
    committed: float = 1.0
    overdue_hours: float | None = None


def _verdict(breached: bool, ok: bool, covered: bool) -> Verdict:
    if breached:
        return Verdict.BREACHED
    if not covered:
        return Verdict.INSUFFICIENT_DATA
    return Verdict.KEPT if ok else Verdict.BREACHED


def _minutes_at_most(
    clause: str, group: str, title: str, *, measured: float, limit: float, covered: bool
) -> ClauseResult:
    verdict = _verdict(measured > limit, True, covered)
    detail = f"{measured:.2f} min against at most {limit:g} min"
    if verdict is Verdict.INSUFFICIENT_DATA:
        detail += " (coverage below the floor)"
    overdue = max(0.0, measured - limit)
    return ClauseResult(
        clause,
        group,
        title,
        measured,
        limit,
        "min",
        verdict,
        detail,
        overdue=overdue,
        committed=limit or 1.0,
        overdue_hours=overdue / 60.0,
    )


def _delay_clauses(
    kind: str, stats: DelayStats, sla: SlaConfig, covered: bool
) -> list[ClauseResult]:
    title = {"delivery": "Delivery delay", "send": "Send delay", "receive": "Receive delay"}[kind]
    avg_limit = sla.delay_average
    if stats.average is None:
        avg = ClauseResult(
            f"{kind}_delay_average",
            "delay",
            f"{title}: average",
            None,
            avg_limit,
            "s",
            Verdict.INSUFFICIENT_DATA,
            "no delay measured",
        )
    else:
        verdict = _verdict(False, stats.average <= avg_limit, covered)
        avg = ClauseResult(
            f"{kind}_delay_average",
            "delay",
            f"{title}: average",
            stats.average,
            avg_limit,
            "s",
            verdict,
            f"average {format_duration(stats.average)} over {stats.count} probes, "
            f"max {format_duration(stats.maximum or 0.0)}, against at most "
            f"{format_duration(avg_limit)}",
            overdue=max(0.0, stats.average - avg_limit),
            committed=avg_limit,
        )
    allowed = sla.over_maximum_allowed
    over = stats.over_max > allowed
    verdict = _verdict(over, True, covered and (stats.count > 0 or stats.over_max > 0))
    over_max = ClauseResult(
        f"{kind}_over_maximum",
        "delay",
        f"{title}: over {format_duration(sla.delay_maximum)}",
        float(stats.over_max),
        float(allowed),
        "probes",
        verdict,
        f"{stats.over_max} probes over {format_duration(sla.delay_maximum)} "
        f"(more than {allowed} is a breach)",
        overdue=float(max(0, stats.over_max - allowed)),
        committed=float(max(allowed, 1)),
    )
    return [avg, over_max]


def evaluate(figures: Figures, sla: SlaConfig, *, route_scope: bool) -> tuple[ClauseResult, ...]:
    """Judge every measured clause for one scope."""
    floor = sla.coverage_floor_percent
    covered = figures.observed_seconds > 0 and figures.coverage_percent >= floor
    down_min = figures.down_seconds / 60.0
    what = "the route cannot send or cannot receive" if route_scope else "any route is down"
    limit = sla.disconnection_limit_minutes(figures.month_seconds)
    results = [
        _minutes_at_most(
            "connectivity",
            "connectivity",
            f"Disconnection ({what})",
            measured=down_min,
            limit=limit,
            covered=covered,
        )
    ]
    results += _delay_clauses("delivery", figures.delivery, sla, covered)
    for kind, stats in (("send", figures.send), ("receive", figures.receive)):
        if stats.count or stats.over_max:
            results += _delay_clauses(kind, stats, sla, covered)
    results.append(
        _minutes_at_most(
            "failure_time",
            "operations",
            "Failure time",
            measured=down_min,
            limit=sla.failure_minutes,
            covered=covered,
        )
    )
    results.append(
        _minutes_at_most(
            "maintenance_time",
            "operations",
            "Maintenance time (down inside windows)",
            measured=figures.maintenance_seconds / 60.0,
            limit=sla.maintenance_minutes,
            covered=covered,
        )
    )
    results.append(_availability(figures, sla, covered))
    results.append(_trouble_free(figures, sla))
    return tuple(results)


def _availability(figures: Figures, sla: SlaConfig, covered: bool) -> ClauseResult:
    target = sla.availability_percent
    measured = figures.availability_percent
    best_base = figures.period_seconds - figures.maintenance_seconds
    best = 100.0 * (1.0 - figures.down_seconds / best_base) if best_base > 0 else 100.0
    base = figures.observed_seconds - figures.maintenance_seconds
    allowed = (100.0 - target) / 100.0 * max(base, 0.0)
    overdue = max(0.0, figures.down_seconds - allowed)
    if measured is None:
        verdict, text = Verdict.INSUFFICIENT_DATA, "nothing observed"
    else:
        verdict = _verdict(best < target, measured >= target, covered)
        text = f"{measured:.4f} % against at least {target:g} %"
        if verdict is Verdict.INSUFFICIENT_DATA:
            text += " (coverage below the floor)"
    return ClauseResult(
        "availability",
        "operations",
        "Availability",
        measured,
        target,
        "%",
        verdict,
        text,
        overdue=overdue,
        committed=allowed or 1.0,
        overdue_hours=overdue / 3600.0,
    )


def _trouble_free(figures: Figures, sla: SlaConfig) -> ClauseResult:
    free = figures.year_days - figures.year_failure_days
    need = sla.trouble_free_days
    covered = figures.year_observed_percent >= sla.coverage_floor_percent
    verdict = _verdict(free < need, True, covered)
    text = (
        f"{free} of {figures.year_days} days without failure in the 12 months to date "
        f"({figures.year_failure_days} with failures, {figures.year_observed_percent:.1f} % "
        f"observed), against at least {need}"
    )
    return ClauseResult(
        "trouble_free_days",
        "operations",
        "Trouble-free days (rolling year)",
        float(free),
        float(need),
        "days",
        verdict,
        text,
        overdue=float(max(0, need - free)),
        committed=float(max(need, 1)),
    )


# ---------------------------------------------------------------- remedies


@dataclass(frozen=True, slots=True)
class Owed:
    """One remedy owed, with the clauses that call for it and the reason in words."""

    kind: RemedyKind
    clauses: tuple[str, ...]
    amount: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class RemedyOutcome:
    """Everything owed for the month."""

    owed: tuple[Owed, ...]
    money_total: float
    currency: str
    capped: bool
    summary: str


def _remedy_for(group: str, sla: SlaConfig) -> Remedy:
    remedy: Remedy = getattr(sla.remedies, group)
    return remedy


def _percentage(
    result: ClauseResult, remedy: Remedy, total: float, minimum: float
) -> tuple[float, str]:
    if remedy.rate_percent_per_hour is not None and result.overdue_hours is not None:
        amount = total * remedy.rate_percent_per_hour / 100.0 * result.overdue_hours
        formula = (
            f"contract total {total:g} x {remedy.rate_percent_per_hour:g} % per hour x "
            f"{result.overdue_hours:.3f} h overdue"
        )
    else:
        amount = total * (result.overdue / result.committed) * remedy.coefficient
        formula = (
            f"contract total {total:g} x overdue {result.overdue:g} / committed "
            f"{result.committed:g} {result.unit} x coefficient {remedy.coefficient:g}"
        )
    if amount < minimum:
        return minimum, f"{formula} = {amount:.2f}, raised to the minimum {minimum:g} per event"
    return amount, f"{formula} = {amount:.2f}"


def remedies(
    results: Sequence[ClauseResult], sla: SlaConfig, month: str, month_days: int
) -> RemedyOutcome:
    """What the breached clauses owe for ``month`` under the configured remedies."""
    comp = sla.compensation
    breached = [r for r in results if r.verdict is Verdict.BREACHED]
    by_kind: dict[RemedyKind, list[ClauseResult]] = {}
    for result in breached:
        by_kind.setdefault(_remedy_for(result.group, sla).kind, []).append(result)
    owed: list[Owed] = []
    money, capped = 0.0, False
    if doubled := by_kind.get(RemedyKind.DOUBLE_SERVICE_TIME):
        names = ", ".join(r.title for r in doubled)
        owed.append(
            Owed(
                RemedyKind.DOUBLE_SERVICE_TIME,
                tuple(r.clause for r in doubled),
                None,
                f"double service time for {month}: the month's {month_days} days of service count "
                f"twice ({month_days} days' extension), because of: {names}",
            )
        )
    if waived := by_kind.get(RemedyKind.FEE_WAIVED):
        names = ", ".join(r.title for r in waived)
        owed.append(
            Owed(
                RemedyKind.FEE_WAIVED,
                tuple(r.clause for r in waived),
                comp.monthly_fee,
                f"monthly fee for {month} waived, because of: {names}",
            )
        )
        money += comp.monthly_fee or 0.0
    if (events := by_kind.get(RemedyKind.PERCENTAGE)) and comp.contract_total is not None:
        total = comp.contract_total
        priced = [
            _percentage(r, _remedy_for(r.group, sla), total, comp.minimum_per_event) for r in events
        ]
        amounts = [amount for amount, _ in priced]
        cap = total * comp.cap_percent / 100.0
        capped = sum(amounts) > cap
        scale = cap / sum(amounts) if capped else 1.0
        for result, (amount, formula) in zip(events, priced, strict=True):
            note = f", scaled by {scale:.4f} to the cap" if capped else ""
            owed.append(
                Owed(
                    RemedyKind.PERCENTAGE,
                    (result.clause,),
                    amount * scale,
                    f"{result.title} breached ({result.detail}): {formula}{note}",
                )
            )
        money += sum(amounts) * scale
    if not owed:
        summary = "nothing owed: no clause was breached"
    else:
        parts = [o.reason for o in owed if o.kind is not RemedyKind.PERCENTAGE]
        if money:
            parts.append(
                f"{money:,.2f} {comp.currency}".strip()
                + " in money in total"
                + (f" (capped at {comp.cap_percent:g} % of the contract)" if capped else "")
            )
        summary = "; ".join(parts)
    return RemedyOutcome(tuple(owed), money, comp.currency, capped, summary)
