"""What every clause shares: the figures it reads, its result, and the rules for a verdict.

Verdicts are given only where the data decides them:

- ``breached`` when the observed figures already break the clause whatever the unobserved time
  holds (50 minutes down against 44 is a breach at any coverage: more observation only adds).
- ``kept`` only when the month is over, coverage (observed / evaluated time) is at least
  ``sla.coverage_floor_percent``, and the figures hold.
- ``not enough data`` otherwise, saying what would be needed to decide.

A month still in progress gets a projection: what the verdict would be if the rest of the month
stays as observed so far.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from mailprobe.agent.sla import SlaConfig


class Verdict(enum.StrEnum):
    """A clause's outcome for the month."""

    KEPT = "kept"
    BREACHED = "breached"
    NOT_ENOUGH_DATA = "not enough data"


class Unit(enum.StrEnum):
    """How a clause's figure and limit are written."""

    MINUTES = "min"
    SECONDS = "s"
    PERCENT = "%"
    PROBES = "probes"
    DAYS = "days"
    LOADS = "loads"


class Scope(enum.StrEnum):
    """Where a clause is judged."""

    ACCOUNT = "account"  # the whole service (route "all")
    ROUTE = "route"  # each route
    KIND = "kind"  # the internal or the external routes together


@dataclass(frozen=True, slots=True)
class DelayStats:
    """Delay figures of one kind (delivery, send or receive) for a month."""

    count: int = 0
    average: float | None = None
    maximum: float | None = None
    over_max: int = 0
    found_late: int = 0  # probes only found late: not in the average (their delay is not measured)


@dataclass(frozen=True, slots=True)
class WebmailStats:
    """Webmail loads of a month: how many, how many did not open within the limit, how fast.

    ``p95`` and ``maximum`` are of the loads that opened (a failed load has no load time);
    ``percentile`` is the policy's percentile of every load, a failed one counted as never open
    (infinite), so failures weigh against it.
    """

    checks: int = 0  # webmail checks configured
    samples: int = 0
    failed: int = 0
    over_limit: int = 0  # did not open within the limit: slower, or failed
    p95: float | None = None
    maximum: float | None = None
    percentile: float | None = None
    down_seconds: float = 0.0  # confirmed down outside maintenance (apart from mail)
    maintenance_seconds: float = 0.0

    @property
    def within_percent(self) -> float | None:
        """Share of loads that opened within the limit."""
        return 100.0 * (self.samples - self.over_limit) / self.samples if self.samples else None


@dataclass(frozen=True, slots=True)
class AntivirusStats:
    """Test viruses of a month and what became of them, and the delay of the clean probes after."""

    routes: int = 0  # routes with anti-virus tests configured
    outcomes: tuple[tuple[str, int], ...] = ()  # (outcome, count), decided tests only
    pending: int = 0
    follow_ups: int = 0  # clean probes after a test that arrived and were measured
    extra_delay_average: float | None = None  # their delay minus the route's clean median
    extra_delay_maximum: float | None = None

    def count(self, outcome: str) -> int:
        """Tests that ended with ``outcome``."""
        return dict(self.outcomes).get(outcome, 0)

    @property
    def tests(self) -> int:
        """Tests sent (decided or pending)."""
        return sum(n for _, n in self.outcomes) + self.pending

    @property
    def measured(self) -> bool:
        """Configured, or tests were sent: the clauses are judged."""
        return self.routes > 0 or self.tests > 0

    @property
    def decided(self) -> int:
        """Tests whose outcome says something of the scanning (not failed, not pending)."""
        return sum(n for o, n in self.outcomes if o != "failed")


@dataclass(frozen=True, slots=True)
class Figures:
    """What a scope (a route or the account) measured in the evaluated period."""

    period_seconds: float  # evaluated: the month, or up to now while it is in progress
    month_seconds: float  # the whole calendar month
    observed_seconds: float
    down_seconds: float
    maintenance_seconds: float
    year_days: int
    year_observed_days: int  # local days of the rolling year with any observation
    year_failure_days: int
    year_observed_percent: float
    delivery: DelayStats = DelayStats()
    send: DelayStats = DelayStats()
    receive: DelayStats = DelayStats()
    webmail: WebmailStats = WebmailStats()
    antivirus: AntivirusStats = AntivirusStats()
    junk_watched: int = 0  # probes delivered while the junk folder was watched too
    junked: int = 0  # of those, the ones filed into the junk folder

    @property
    def partial(self) -> bool:
        """The month is still in progress."""
        return self.period_seconds < self.month_seconds

    @property
    def coverage_percent(self) -> float:
        """Observed share of the evaluated period."""
        return 100.0 * self.observed_seconds / self.period_seconds if self.period_seconds else 0.0

    @property
    def availability_percent(self) -> float | None:
        """Up share of observed time outside maintenance; None when nothing was observed."""
        base = self.observed_seconds - self.maintenance_seconds
        return 100.0 * (1.0 - self.down_seconds / base) if base > 0 else None

    @property
    def observed_fraction(self) -> float:
        """Observed share of the whole month (the part a projection scales up from)."""
        return self.observed_seconds / self.month_seconds if self.month_seconds else 0.0


@dataclass(frozen=True, slots=True)
class ClauseResult:
    """One clause judged: the measured value against its limit."""

    clause: str
    group: str
    title: str
    measured: float | None
    limit: float
    unit: Unit
    verdict: Verdict
    detail: str
    needed: str = ""  # for `not enough data`: what would decide it
    projection: Verdict | None = None  # partial month: the verdict if the rest stays as observed
    overdue: float = 0.0
    committed: float = 1.0
    overdue_hours: float | None = None


class Clause(Protocol):
    """One promise of the contract: its id, group (which remedy it owes), scope and judgement."""

    @property
    def id(self) -> str:
        """The label value everywhere (report, exported targets, rules)."""
        ...

    @property
    def group(self) -> str:
        """The remedy group (``sla.remedies.<group>``)."""
        ...

    @property
    def title(self) -> str:
        """The clause in words."""
        ...

    @property
    def unit(self) -> Unit:
        """How its figure and limit are written."""
        ...

    @property
    def scopes(self) -> frozenset[Scope]:
        """Where it is judged."""
        ...

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """The clause's limit for a month of this length, in its unit."""
        ...

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult | None:
        """The clause's result for one scope, or None when it has nothing to judge there."""
        ...


def covered(figures: Figures, sla: SlaConfig) -> bool:
    """Coverage reaches the floor (a keep can be stated, once the month is over)."""
    return figures.observed_seconds > 0 and figures.coverage_percent >= sla.coverage_floor_percent


def coverage_needed(figures: Figures, sla: SlaConfig) -> str:
    """What a `not enough data` verdict would need, in words."""
    parts: list[str] = []
    if figures.coverage_percent < sla.coverage_floor_percent:
        missing = (sla.coverage_floor_percent - figures.coverage_percent) / 100.0
        days = missing * figures.period_seconds / 86400.0
        parts.append(
            f"coverage {figures.coverage_percent:.1f} % of the {'month so far' if figures.partial else 'month'}, "
            f"{sla.coverage_floor_percent:g} % needed (about {days:.1f} more days observed)"
        )
    if figures.partial:
        left = (figures.month_seconds - figures.period_seconds) / 86400.0
        parts.append(f"the month is not over ({left:.1f} days left)")
    return "; ".join(parts)


def decide(
    figures: Figures, sla: SlaConfig, *, certain_breach: bool, holds: bool, projected_holds: bool
) -> tuple[Verdict, str, Verdict | None]:
    """The verdict, what would be needed, and the projection (partial months only)."""
    projection = None
    if figures.partial and figures.observed_seconds > 0:
        projection = Verdict.KEPT if projected_holds else Verdict.BREACHED
    if certain_breach:
        return Verdict.BREACHED, "", None
    if covered(figures, sla) and not figures.partial:
        return (Verdict.KEPT if holds else Verdict.BREACHED), "", None
    return Verdict.NOT_ENOUGH_DATA, coverage_needed(figures, sla), projection


def minutes_clause(
    clause_id: str,
    group: str,
    title: str,
    measured: float,
    limit: float,
    figures: Figures,
    sla: SlaConfig,
) -> ClauseResult:
    """A clause of minutes a month at most: certain once exceeded, kept once covered and over.

    The projection scales the observed minutes to the whole month.
    """
    frac = figures.observed_fraction
    projected = measured / frac if frac > 0 else measured
    verdict, needed, projection = decide(
        figures,
        sla,
        certain_breach=measured > limit,
        holds=True,
        projected_holds=projected <= limit,
    )
    detail = f"{measured:.2f} min against at most {limit:g} min"
    if projection is not None:
        detail += f"; {projected:.1f} min projected for the whole month"
    overdue = max(0.0, measured - limit)
    return ClauseResult(
        clause_id, group, title, measured, limit, Unit.MINUTES, verdict, detail, needed,
        projection, overdue=overdue, committed=limit or 1.0, overdue_hours=overdue / 60.0,
    )  # fmt: skip
