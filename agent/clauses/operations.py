"""Operations: failure and maintenance minutes, availability, trouble-free days in the year.

Failure minutes are the service's down minutes outside maintenance, any failure counted once (the
account's ``any``); maintenance minutes are the down minutes inside agreed windows. Availability is
1 - down / (observed - maintenance), judged on the observed time; it is a breach before the
coverage floor only if it fails even with every unobserved second of the month up. A trouble-free
day is a local calendar day with no down second outside maintenance; only observed days count as
trouble-free.
"""

from __future__ import annotations

from mailprobe.agent.clauses.base import (
    ClauseResult,
    Figures,
    Scope,
    Unit,
    Verdict,
    covered,
    decide,
    minutes_clause,
)
from mailprobe.agent.sla import SlaConfig


class FailureTime:
    """Failure minutes a month."""

    id = "failure"
    group = "operations"
    title = "Failure time"
    unit = Unit.MINUTES
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE})

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Minutes a month."""
        return sla.failure_minutes

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult:
        """Down minutes against the failure limit."""
        return minutes_clause(self.id, self.group, self.title, figures.down_seconds / 60.0,
                              sla.failure_minutes, figures, sla)  # fmt: skip


class MaintenanceTime:
    """Maintenance (agreed adjustment) minutes a month."""

    id = "maintenance"
    group = "operations"
    title = "Maintenance time (down inside windows)"
    unit = Unit.MINUTES
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE})

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Minutes a month."""
        return sla.maintenance_minutes

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult:
        """Down minutes inside windows against the maintenance limit."""
        return minutes_clause(self.id, self.group, self.title, figures.maintenance_seconds / 60.0,
                              sla.maintenance_minutes, figures, sla)  # fmt: skip


class Availability:
    """Availability of the observed time outside maintenance."""

    id = "availability"
    group = "operations"
    title = "Availability"
    unit = Unit.PERCENT
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE})

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Percent at least."""
        return sla.availability_percent

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult:
        """Observed availability against the target."""
        target = sla.availability_percent
        measured = figures.availability_percent
        base = figures.observed_seconds - figures.maintenance_seconds
        allowed = (100.0 - target) / 100.0 * max(base, 0.0)
        overdue = max(0.0, figures.down_seconds - allowed)
        # The best the month can still be: every second not observed up.
        best_base = figures.month_seconds - figures.maintenance_seconds
        best = 100.0 * (1.0 - figures.down_seconds / best_base) if best_base > 0 else 100.0
        holds = measured is not None and measured >= target
        verdict, needed, projection = decide(
            figures, sla, certain_breach=best < target, holds=holds, projected_holds=holds
        )
        if measured is None:
            text = "nothing observed"
        else:
            text = f"{measured:.4f} % of the observed time against at least {target:g} %"
            if verdict is Verdict.BREACHED and not covered(figures, sla):
                text += f" (at most {best:.4f} % even if every unobserved second was up)"
        return ClauseResult(
            self.id, self.group, self.title, measured, target, self.unit, verdict, text, needed,
            projection, overdue=overdue, committed=allowed or 1.0, overdue_hours=overdue / 3600.0,
        )  # fmt: skip


class TroubleFreeDays:
    """Trouble-free days in the rolling year ending with the report month."""

    id = "trouble_free_days"
    group = "operations"
    title = "Trouble-free days (rolling year)"
    unit = Unit.DAYS
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE})

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Days a year at least."""
        return float(sla.trouble_free_days)

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult:
        """Observed trouble-free days against the target; certain either way when the count says."""
        need = sla.trouble_free_days
        observed_free = figures.year_observed_days - figures.year_failure_days
        best_free = figures.year_days - figures.year_failure_days
        if best_free < need:
            verdict, needed = Verdict.BREACHED, ""
        elif observed_free >= need:
            verdict, needed = Verdict.KEPT, ""
        else:
            verdict = Verdict.NOT_ENOUGH_DATA
            needed = f"{need - observed_free} more observed trouble-free days"
        text = (
            f"{observed_free} trouble-free of {figures.year_observed_days} observed days in the "
            f"12 months to date ({figures.year_days} days; {figures.year_failure_days} with "
            f"failures; {figures.year_observed_percent:.1f} % of the time observed), against at "
            f"least {need}"
        )
        return ClauseResult(
            self.id, self.group, self.title, float(observed_free), float(need), self.unit,
            verdict, text, needed, None,
            overdue=float(max(0, need - best_free)), committed=float(max(need, 1)),
        )  # fmt: skip
