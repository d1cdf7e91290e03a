"""Probe counts per route: what the probe counters export, continued from the ledger.

A count moves when a probe's record gains a fact: every probe is ``sent`` (an attempt) once; it
becomes ``overdue``, ``lost``, ``received`` (and ``late``, and ``junked`` when it was delivered
into the junk folder) once each; a failed submission counts
under ``failed:PHASE:REASON``. The ledger counts the same facts from its rows
(``Ledger.counts``), so a restarted agent starts where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Mapping

from mailprobe.agent.probe import Probe, Status

COUNTED = ("sent", "received", "overdue", "late", "lost", "junked")


def failed_kind(phase: str, reason: str) -> str:
    """The count kind of a failure."""
    return f"failed:{phase}:{reason}"


def new_facts(old: Probe | None, new: Probe) -> list[str]:
    """The count kinds ``new`` adds over ``old`` (None: the probe's first record)."""
    kinds: list[str] = []
    if old is None:
        kinds.append("sent")
        if new.status is Status.FAILED:
            kinds.append(failed_kind(str(new.phase or ""), str(new.reason or "")))
    if new.overdue_at is not None and (old is None or old.overdue_at is None):
        kinds.append("overdue")
    if new.lost_at is not None and (old is None or old.lost_at is None):
        kinds.append("lost")
    if new.arrived and (old is None or not old.arrived):
        kinds.append("received")
        if new.status is Status.LATE:
            kinds.append("late")
        if new.junked:
            kinds.append("junked")
    return kinds


class Tally:
    """Counts per (route, kind)."""

    def __init__(self, start: Mapping[tuple[str, str], float] | None = None) -> None:
        self._counts: dict[tuple[str, str], float] = dict(start or {})

    def add(self, old: Probe | None, new: Probe) -> None:
        """Count what ``new`` adds over ``old``."""
        for kind in new_facts(old, new):
            key = (new.route, kind)
            self._counts[key] = self._counts.get(key, 0.0) + 1.0

    def get(self, route: str, kind: str) -> float:
        """One count (0 when never counted)."""
        return self._counts.get((route, kind), 0.0)

    def failures(self, route: str) -> dict[tuple[str, str], float]:
        """(phase, reason) -> count of the route's failed submissions."""
        out: dict[tuple[str, str], float] = {}
        for (r, kind), value in self._counts.items():
            if r == route and kind.startswith("failed:"):
                _, phase, reason = kind.split(":", 2)
                out[(phase, reason)] = value
        return out

    def routes(self) -> set[str]:
        """Routes with any count."""
        return {route for route, _ in self._counts}
