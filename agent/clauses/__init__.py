"""The contract's clauses, each defined once: the report, the exported targets and the dashboards
read them from here.

A clause is an object with an ``id`` (the label value everywhere: report, ``mailprobe_sla_target_*``
series, rules), a ``group`` (which remedy it owes: ``sla.remedies.<group>``), a ``title``, a
``unit``, the scopes it is judged in, ``limit(sla, month_seconds)`` and ``judge(figures, sla,
scope)``. Adding a clause means a module here, an entry in ``CLAUSES``, and its tests.
"""

from __future__ import annotations

from collections.abc import Mapping

from mailprobe.agent.clauses.antispam import JunkedProbes
from mailprobe.agent.clauses.antivirus import AntiVirus, AntiVirusDelay
from mailprobe.agent.clauses.base import (
    AntivirusStats,
    Clause,
    ClauseResult,
    DelayStats,
    Figures,
    Scope,
    Unit,
    Verdict,
    WebmailStats,
)
from mailprobe.agent.clauses.connectivity import Disconnection
from mailprobe.agent.clauses.delay import DelayAverage, OverMaximum
from mailprobe.agent.clauses.operations import (
    Availability,
    FailureTime,
    MaintenanceTime,
    TroubleFreeDays,
)
from mailprobe.agent.clauses.webmail import Webmail
from mailprobe.agent.sla import SlaConfig

__all__ = [
    "CLAUSES",
    "NOT_CONFIGURED",
    "NOT_MEASURED",
    "AntivirusStats",
    "Clause",
    "ClauseResult",
    "DelayStats",
    "Figures",
    "Scope",
    "Unit",
    "Verdict",
    "WebmailStats",
    "by_id",
    "evaluate",
    "sla_targets",
]

CLAUSES: tuple[Clause, ...] = (
    Disconnection(),
    DelayAverage("delivery"),
    OverMaximum("delivery"),
    DelayAverage("send"),
    OverMaximum("send"),
    DelayAverage("receive"),
    OverMaximum("receive"),
    FailureTime(),
    MaintenanceTime(),
    Availability(),
    TroubleFreeDays(),
    Webmail(),
    AntiVirus(),
    AntiVirusDelay(),
    JunkedProbes(),
)

NOT_MEASURED = (
    ("spam_handling", "Spam handled within one working day: a support process, not measurable "
                      "from outside"),
    ("force_majeure", "Force majeure and customer-side faults: exclusions a person decides; "
                      "agreed maintenance is counted apart"),
)  # fmt: skip
"""Promises of the seed contract no clause here measures, with why.

Webmail and anti-virus are measured only where configured (``webmail:``, a route's
``antivirus:``); ``not_configured`` says so for a config without them.
"""

NOT_CONFIGURED = {
    "webmail": "Webmail opens within 10 s: no webmail check is configured (add a `webmail:` "
               "entry to measure it)",
    "anti_virus": "Anti-virus (attachment viruses removed without delay): no route sends test "
                  "viruses (set `antivirus:` on a route to measure it; off by default)",
}  # fmt: skip
"""What the report says of a clause that is measured only where configured, when it is not."""


def by_id(clause_id: str) -> Clause:
    """The clause with this id (KeyError if none)."""
    for clause in CLAUSES:
        if clause.id == clause_id:
            return clause
    raise KeyError(clause_id)


def evaluate(figures: Figures, sla: SlaConfig, scope: Scope) -> tuple[ClauseResult, ...]:
    """Every clause judged for one scope, in the registry's order."""
    out: list[ClauseResult] = []
    for clause in CLAUSES:
        if scope in clause.scopes:
            result = clause.judge(figures, sla, scope)
            if result is not None:
                out.append(result)
    return tuple(out)


# Clauses whose limit is a duration a month, exported as mailprobe_sla_target_seconds{clause}.
_SECONDS_PER = {Unit.MINUTES: 60.0, Unit.SECONDS: 1.0}


def sla_targets(sla: SlaConfig, month_seconds: float = 30 * 86400.0) -> Mapping[str, float]:
    """The limit of every clause measured in time, in seconds (``mailprobe_sla_target_seconds``).

    ``month_seconds`` matters only with ``sla.ratio_mode`` (a limit that is a share of the month).
    """
    return {
        clause.id: clause.limit(sla, month_seconds) * _SECONDS_PER[clause.unit]
        for clause in CLAUSES
        if clause.unit in _SECONDS_PER
    }
