"""Anti-virus: attachment viruses removed, without delaying mail (remedy by default: fee waived).

Measured only where a route sends test viruses (``antivirus:`` on the route; off by default):

- ``anti_virus``: test viruses delivered intact this month; any is a breach (certain at once).
  Refused at SMTP, delivered stripped or replaced, quarantined, or not delivered by the test's
  deadline all count as stopped. Kept once the month is over, covered, with a decided test.
- ``anti_virus_delay``: the clean probe sent right after each test, its delay minus the route's
  median delay of the month's other probes, averaged; more than ``sla.antivirus.delay_allowed``
  (1 min) is a breach: scanning delayed the mail.

Judged per route and for the account (every route's tests together).
"""

from __future__ import annotations

from mailprobe.agent.clauses.base import ClauseResult, Figures, Scope, Unit, Verdict, decide
from mailprobe.agent.durations import format_duration
from mailprobe.agent.sla import SlaConfig


def _outcomes(figures: Figures) -> str:
    stats = figures.antivirus
    parts = [f"{n} {o.replace('_', ' ')}" for o, n in stats.outcomes if n]
    if stats.pending:
        parts.append(f"{stats.pending} pending")
    return ", ".join(parts) or "none sent"


class AntiVirus:
    """Test viruses delivered intact."""

    id = "anti_virus"
    group = "anti_virus"
    title = "Anti-virus: test viruses delivered intact"
    unit = Unit.PROBES
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE})

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """None may pass."""
        return 0.0

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult | None:
        """Intact deliveries: a breach at the first; None where no test is configured or sent."""
        stats = figures.antivirus
        if not stats.measured:
            return None
        intact = stats.count("intact")
        detail = f"test viruses: {_outcomes(figures)}"
        if stats.decided == 0 and intact == 0:
            return ClauseResult(
                self.id, self.group, self.title, None, 0.0, self.unit, Verdict.NOT_ENOUGH_DATA,
                detail, "a test virus whose fate is known (sent, and refused, delivered or past "
                "its deadline)",
            )  # fmt: skip
        verdict, needed, projection = decide(
            figures, sla, certain_breach=intact > 0, holds=True, projected_holds=intact == 0
        )
        return ClauseResult(
            self.id, self.group, self.title, float(intact), 0.0, self.unit, verdict, detail,
            needed, projection, overdue=float(intact), committed=1.0,
        )  # fmt: skip


class AntiVirusDelay:
    """Clean probes right after a test virus: how much slower than the route's median."""

    id = "anti_virus_delay"
    group = "anti_virus"
    title = "Anti-virus: extra delay of clean mail after a test virus"
    unit = Unit.SECONDS
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE})

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Seconds at most, on average."""
        return sla.antivirus.delay_allowed

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult | None:
        """The average extra delay against the allowance; None where no test is configured."""
        stats = figures.antivirus
        if not stats.measured:
            return None
        allowed = sla.antivirus.delay_allowed
        value = stats.extra_delay_average
        if value is None:
            return ClauseResult(
                self.id, self.group, self.title, None, allowed, self.unit,
                Verdict.NOT_ENOUGH_DATA, "no clean probe after a test virus measured",
                "a clean probe sent right after a test virus, delivered",
            )  # fmt: skip
        holds = value <= allowed
        verdict, needed, projection = decide(
            figures, sla, certain_breach=False, holds=holds, projected_holds=holds
        )
        detail = (
            f"{stats.follow_ups} clean probes after test viruses took {value:.3f} s longer than "
            f"the route's median on average (at most {stats.extra_delay_maximum or 0.0:.3f} s), "
            f"against at most {format_duration(allowed)}"
        )
        return ClauseResult(
            self.id, self.group, self.title, value, allowed, self.unit, verdict, detail, needed,
            projection, overdue=max(0.0, value - allowed), committed=allowed,
        )  # fmt: skip
