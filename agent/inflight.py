"""Probes the sender's service accepted and nobody has seen yet: the one place the agent holds them.

The scheduler adds a probe once the server took it; the mailbox watchers ask which send times they
are waiting for (to poll closely right after a send); an arrival takes the probe out; the sweep
moves probes past their marks (overdue, lost, over the contract's maximum) and hands back each new
record, so the ledger, the accounting and the metrics all see the same step once. The ledger's
``sent``/``overdue`` rows are this registry made durable: a restart fills it from them.

Pure bookkeeping, no I/O and no clock of its own: callers pass ``now``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mailprobe.agent.probe import Probe, Sighting, Status


@dataclass(frozen=True, slots=True)
class Marks:
    """When a route's probes become overdue and lost (seconds after sending)."""

    overdue_after: float
    lost_after: float


class InFlight:
    """Accepted probes by id, until they arrive or are lost and past the delay maximum."""

    def __init__(self, marks: Mapping[str, Marks], delay_maximum: float) -> None:
        self._marks = dict(marks)
        self._retired: dict[str, Marks] = {}  # routes no longer configured, while probes are held
        self._maximum = delay_maximum
        self._probes: dict[str, Probe] = {}

    def set_marks(self, marks: Mapping[str, Marks]) -> None:
        """The configured routes changed (a reload): new probes only of these, with these marks.

        Probes already held stay, also those of a route no longer configured: they keep its old
        marks until they arrive or are let go.
        """
        for route, old in self._marks.items():
            if route not in marks:
                self._retired[route] = old
        self._marks = dict(marks)
        for route in list(self._retired):
            if route in self._marks or not any(p.route == route for p in self._probes.values()):
                del self._retired[route]

    def __len__(self) -> int:
        return len(self._probes)

    def __iter__(self) -> Iterator[Probe]:
        return iter(list(self._probes.values()))

    def __contains__(self, probe_id: object) -> bool:
        return probe_id in self._probes

    def tracks(self, route: str) -> bool:
        """True when probes of ``route`` are held here (it is configured)."""
        return route in self._marks

    def add(self, probe: Probe) -> None:
        """Hold an accepted probe (a new one, or one the ledger still has on its way)."""
        if not probe.accepted or probe.arrived or probe.route not in self._marks:
            raise ValueError(f"probe {probe.probe_id} is not an accepted probe of a known route")
        self._probes[probe.probe_id] = probe

    def get(self, probe_id: str) -> Probe | None:
        """The probe's current record, if held."""
        return self._probes.get(probe_id)

    def count(self, route: str) -> int:
        """Probes of ``route`` still awaited (sent or overdue, not lost)."""
        return sum(1 for p in self._probes.values() if p.route == route and p.in_flight)

    def awaited(self, routes: frozenset[str]) -> list[float]:
        """Send times of the probes of ``routes`` still awaited (a watcher polls closely for them)."""
        return [p.sent_at for p in self._probes.values() if p.route in routes and p.in_flight]

    def arrive(self, seen: Sighting) -> Probe | None:
        """The arrived record of a held probe (no longer held); None when it is not held."""
        probe = self._probes.pop(seen.probe_id, None)
        if probe is None:
            return None
        return probe.arrive(
            seen.arrived_at,
            internaldate=seen.internaldate,
            received=seen.received,
            found_late=seen.found_late,
            error=seen.error,
            junked=seen.junked,
        )

    def sweep(self, now: float) -> list[tuple[Probe, Probe]]:
        """(previous, new) record of each probe that passed a mark since the last sweep.

        Overdue, then lost, each once; past the delay maximum once. A lost probe is let go once it
        has passed the maximum too (the ledger still matches it, should it turn up).
        """
        out: list[tuple[Probe, Probe]] = []
        for pid, probe in list(self._probes.items()):
            marks = self._marks.get(probe.route) or self._retired[probe.route]
            age = now - probe.sent_at
            new = probe
            mark = new.over_maximum_at(self._maximum)
            if new.over_max_at is None and mark is not None and mark <= now:
                new = new.past_maximum(mark)
            if new.status is Status.SENT and age >= marks.overdue_after:
                new = new.overdue(probe.sent_at + marks.overdue_after)
            if new.status is not Status.LOST and age >= marks.lost_after:
                new = new.lost(probe.sent_at + marks.lost_after)
            if new is not probe:
                out.append((probe, new))
            if new.status is Status.LOST and new.over_max_at is not None:
                del self._probes[pid]
            else:
                self._probes[pid] = new
        return out
