"""Delay: delivered within a minute on average and never later than an hour.

For each kind (delivery end to end; send and receive when the Received chain splits it): the
average of the measured delays of probes sent in the month, against ``sla.delay_average``; and the
probes over ``sla.delay_maximum`` (arrived later, or not arrived by then), counted once in the month
they passed it, more than ``sla.over_maximum_allowed`` being a breach. Probes only found late are
left out of the average: their delay was not measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailprobe.agent.clauses.base import (
    ClauseResult,
    DelayStats,
    Figures,
    Scope,
    Unit,
    Verdict,
    decide,
)
from mailprobe.agent.durations import format_duration
from mailprobe.agent.sla import SlaConfig

_TITLES = {"delivery": "Delivery delay", "send": "Send delay", "receive": "Receive delay"}


def _stats(figures: Figures, kind: str) -> DelayStats:
    stats: DelayStats = getattr(figures, kind)
    return stats


@dataclass(frozen=True)
class DelayAverage:
    """The month's average delay of one kind."""

    kind: str

    @property
    def id(self) -> str:
        """``delivery_delay_average`` and the like."""
        return f"{self.kind}_delay_average"

    group = "delay"
    unit = Unit.SECONDS
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE, Scope.KIND})

    @property
    def title(self) -> str:
        """The clause in words."""
        return f"{_TITLES[self.kind]}: average"

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Seconds at most."""
        return sla.delay_average

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult | None:
        """The average against the limit (send/receive only where the chain split some)."""
        stats = _stats(figures, self.kind)
        if self.kind != "delivery" and not (stats.count or stats.over_max):
            return None
        limit = sla.delay_average
        if stats.average is None:
            return ClauseResult(self.id, self.group, self.title, None, limit, self.unit,
                                Verdict.NOT_ENOUGH_DATA, "no delay measured",
                                "probes delivered while the agent watched")  # fmt: skip
        holds = stats.average <= limit
        verdict, needed, projection = decide(
            figures, sla, certain_breach=False, holds=holds, projected_holds=holds
        )
        late = f"; {stats.found_late} found late, not averaged" if stats.found_late else ""
        detail = (
            f"average {format_duration(stats.average)} over {stats.count} probes, max "
            f"{format_duration(stats.maximum or 0.0)}{late}, against at most "
            f"{format_duration(limit)}"
        )
        return ClauseResult(
            self.id, self.group, self.title, stats.average, limit, self.unit, verdict, detail,
            needed, projection, overdue=max(0.0, stats.average - limit), committed=limit,
        )  # fmt: skip


@dataclass(frozen=True)
class OverMaximum:
    """Probes of one kind over the delay maximum this month."""

    kind: str

    @property
    def id(self) -> str:
        """``delivery_over_maximum`` and the like."""
        return f"{self.kind}_over_maximum"

    group = "delay"
    unit = Unit.PROBES
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE, Scope.KIND})

    @property
    def title(self) -> str:
        """The clause in words."""
        return f"{_TITLES[self.kind]}: over the maximum"

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Probes a month at most."""
        return float(sla.over_maximum_allowed)

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult | None:
        """The count against the allowance: certain once exceeded."""
        stats = _stats(figures, self.kind)
        if self.kind != "delivery" and not (stats.count or stats.over_max):
            return None
        allowed = sla.over_maximum_allowed
        frac = figures.observed_fraction
        projected = stats.over_max / frac if frac > 0 else float(stats.over_max)
        verdict, needed, projection = decide(
            figures, sla, certain_breach=stats.over_max > allowed,
            holds=True, projected_holds=projected <= allowed,
        )  # fmt: skip
        title = f"{_TITLES[self.kind]}: over {format_duration(sla.delay_maximum)}"
        detail = (
            f"{stats.over_max} probes over {format_duration(sla.delay_maximum)} "
            f"(more than {allowed} is a breach)"
        )
        return ClauseResult(
            self.id, self.group, title, float(stats.over_max), float(allowed), self.unit, verdict,
            detail, needed, projection,
            overdue=float(max(0, stats.over_max - allowed)), committed=float(max(allowed, 1)),
        )  # fmt: skip
