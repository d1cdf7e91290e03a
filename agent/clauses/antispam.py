"""Anti-spam: legitimate mail is not blocked.

Every probe is legitimate mail. One the provider filed into the account's junk folder instead of
the inbox fails this clause; it was delivered, so connectivity and delay count it as received.
The clause counts only probes that arrived while the watcher also watched the junk folder: an
account whose junk folder is unknown to it proves nothing either way. More than
``sla.junked_allowed`` probes in the junk folder in a month is a breach (certain once it
happens); the remedy is the ``anti_spam`` group's, by default the monthly fee waived.
"""

from __future__ import annotations

from mailprobe.agent.clauses.base import ClauseResult, Figures, Scope, Unit, Verdict, decide
from mailprobe.agent.sla import SlaConfig


class JunkedProbes:
    """Probes filed as spam this month."""

    id = "anti_spam"
    group = "anti_spam"
    title = "Anti-spam: probes filed as spam"
    unit = Unit.PROBES
    scopes = frozenset({Scope.ACCOUNT, Scope.ROUTE})

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Probes a month at most."""
        return float(sla.junked_allowed)

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult:
        """The probes in the junk folder against the allowance: certain once exceeded."""
        allowed = sla.junked_allowed
        junked = figures.junked
        if figures.junk_watched == 0:
            return ClauseResult(
                self.id, self.group, self.title, None, float(allowed), self.unit,
                Verdict.NOT_ENOUGH_DATA, "no probe arrived while the junk folder was watched",
                "a junk folder the agent finds (LIST marks it \\Junk, or imap.junk_folder) and "
                "probes delivered while it watches",
            )  # fmt: skip
        frac = figures.observed_fraction
        projected = junked / frac if frac > 0 else float(junked)
        verdict, needed, projection = decide(
            figures, sla, certain_breach=junked > allowed,
            holds=True, projected_holds=projected <= allowed,
        )  # fmt: skip
        detail = (
            f"{junked} of {figures.junk_watched} delivered probes filed into the junk folder "
            f"(more than {allowed} is a breach)"
        )
        return ClauseResult(
            self.id, self.group, self.title, float(junked), float(allowed), self.unit, verdict,
            detail, needed, projection,
            overdue=float(max(0, junked - allowed)), committed=float(max(allowed, 1)),
        )  # fmt: skip
