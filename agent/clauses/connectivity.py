"""Connectivity: the address can send and receive; disconnection under 44 minutes a month.

Measured as the down minutes outside maintenance of a route's connectivity (send or receive down),
and for the account of ``any`` (some route down; overlaps counted once); for the internal or the
external routes (``Scope.KIND``) likewise, over the routes of that kind. The limit is the stated
minutes, or with ``sla.ratio_mode`` the stated percentage of the month's length.
"""

from __future__ import annotations

from mailprobe.agent.clauses.base import ClauseResult, Figures, Scope, Unit, minutes_clause
from mailprobe.agent.sla import SlaConfig


class Disconnection:
    """Disconnection minutes against the monthly limit."""

    id = "disconnection"
    group = "connectivity"
    title = "Disconnection"
    unit = Unit.MINUTES
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE, Scope.KIND})

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Minutes a month."""
        return sla.disconnection_limit_minutes(month_seconds)

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult:
        """Down minutes against the limit."""
        what = {
            Scope.ROUTE: "the route cannot send or cannot receive",
            Scope.KIND: "any of these routes is down",
        }.get(scope, "any route is down")
        return minutes_clause(
            self.id, self.group, f"{self.title} ({what})", figures.down_seconds / 60.0,
            self.limit(sla, figures.month_seconds), figures, sla,
        )  # fmt: skip
