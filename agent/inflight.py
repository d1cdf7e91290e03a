"""Probes submitted and not yet seen: matching arrivals, and the overdue and lost deadlines.

Pure bookkeeping, no I/O: the scheduler feeds it submissions, arrivals and the time, and gets back
ProbeResults to pass on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from mailprobe.agent.results import ProbeResult, Status


@dataclass(frozen=True, slots=True)
class Pending:
    """A submitted probe on its way."""

    probe_id: str
    route: str
    sent_at: float
    accepted_at: float
    overdue_after: float
    lost_after: float
    phases: Mapping[str, float] = field(default_factory=dict)
    reply_code: int | None = None
    overdue: bool = False


@dataclass(frozen=True, slots=True)
class Sighting:
    """What the mailbox watcher saw of an arrived probe."""

    probe_id: str
    arrived_at: float
    internaldate: float | None = None
    received: tuple[str, ...] = ()


class InFlight:
    """Tracks pending probes by id."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, pending: Pending) -> None:
        """Start tracking a probe the server accepted."""
        self._pending[pending.probe_id] = pending

    def count(self, route: str) -> int:
        """Probes of `route` still in flight."""
        return sum(1 for p in self._pending.values() if p.route == route)

    def pending(self) -> list[Pending]:
        """Every probe still in flight."""
        return list(self._pending.values())

    def arrive(self, seen: Sighting) -> ProbeResult | None:
        """Match an arrival; None when the probe is not (or no longer) ours to count."""
        pending = self._pending.pop(seen.probe_id, None)
        if pending is None:
            return None
        delay = max(0.0, seen.arrived_at - pending.sent_at)
        late = pending.overdue or delay > pending.overdue_after
        phases = dict(pending.phases)
        phases["delivery"] = max(0.0, seen.arrived_at - pending.accepted_at)
        return ProbeResult(
            probe_id=pending.probe_id,
            route=pending.route,
            status=Status.LATE if late else Status.OK,
            sent_at=pending.sent_at,
            accepted_at=pending.accepted_at,
            arrived_at=seen.arrived_at,
            delay_seconds=delay,
            reply_code=pending.reply_code,
            phases=phases,
            internaldate=seen.internaldate,
            received=seen.received,
        )

    def sweep(self, now: float) -> list[ProbeResult]:
        """Results for probes that just became overdue (interim) or lost (final)."""
        out: list[ProbeResult] = []
        for pid, pending in list(self._pending.items()):
            age = now - pending.sent_at
            if age >= pending.lost_after:
                del self._pending[pid]
                out.append(self._result(pending, Status.LOST, reason="lost"))
            elif age >= pending.overdue_after and not pending.overdue:
                self._pending[pid] = replace(pending, overdue=True)
                out.append(self._result(pending, Status.OVERDUE, reason=None))
        return out

    @staticmethod
    def _result(pending: Pending, status: Status, reason: str | None) -> ProbeResult:
        return ProbeResult(
            probe_id=pending.probe_id,
            route=pending.route,
            status=status,
            sent_at=pending.sent_at,
            accepted_at=pending.accepted_at,
            phase="delivery" if reason else None,
            reason=reason,
            reply_code=pending.reply_code,
            phases=pending.phases,
        )
