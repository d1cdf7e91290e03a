"""Memory of other agents' probes in one mailbox, so each is fetched once and removed once stale.

Several agents may share a secret and a mailbox (a fleet, or `probe-once` beside the daemon). A
watcher reports and removes only its own probes; another agent's verified probe is left to its
owner, and removed only when it is older than `foreign_probe_max_age`, so the probes of an agent
that stopped do not pile up. UIDs mean something only within one UIDVALIDITY: the memory is
reset when it changes.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable

from mailprobe.probes.imap_session import ImapSession
from mailprobe.probes.message import HEADER_SIGNATURE, ProbeStamp

#: Agent identities remembered for "first probe of this agent" notices; more are not announced.
MAX_ANNOUNCED = 256


class ForeignProbes:
    """Other agents' probes seen in the current UIDVALIDITY, by UID, with their expiry."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._stamps: dict[int, ProbeStamp] = {}
        self._expiry: list[tuple[float, int]] = []  # heap; entries of forgotten UIDs are skipped
        self._announced: set[str | None] = set()
        self._checked = 0.0

    def __len__(self) -> int:
        return len(self._stamps)

    def reset(self) -> None:
        """A new UIDVALIDITY: the UIDs remembered mean nothing now."""
        self._stamps.clear()
        self._expiry.clear()

    def add(self, uid: int, stamp: ProbeStamp) -> bool:
        """Remember a foreign probe; True when it is the first seen from its agent."""
        self._stamps[uid] = stamp
        heapq.heappush(self._expiry, (stamp.sent_at + self.max_age, uid))
        first = stamp.agent not in self._announced
        if first and len(self._announced) < MAX_ANNOUNCED:
            self._announced.add(stamp.agent)
        return first

    def next_expiry(self) -> float | None:
        """When the oldest remembered probe passes max_age (None when none is remembered)."""
        self._drop_stale()
        return self._expiry[0][0] if self._expiry else None

    def due(self, now: float) -> list[int]:
        """UIDs of remembered probes older than max_age at `now` (still remembered)."""
        self._drop_stale()
        return sorted({uid for when, uid in self._expiry if when <= now and uid in self._stamps})

    def lowest(self) -> int | None:
        """The lowest UID remembered."""
        return min(self._stamps) if self._stamps else None

    def keep_only(self, present: set[int]) -> None:
        """Forget every UID the server no longer has (the owner removed it)."""
        for uid in [u for u in self._stamps if u not in present]:
            del self._stamps[uid]

    async def sweep(
        self,
        session: ImapSession,
        now: float,
        recheck: float,
        remove: Callable[[int, ProbeStamp], Awaitable[bool]],
    ) -> list[ProbeStamp]:
        """Remove the probes past max age, at most once per `recheck` unless one is due.

        One UID SEARCH tells which remembered probes are still there: the others were removed
        by their owner and are forgotten. Returns the stamps of the probes removed.
        """
        expiry = self.next_expiry()
        lowest = self.lowest()
        stale = expiry is not None and expiry <= now
        if lowest is None or not (stale or now - self._checked >= recheck):
            return []
        self._checked = now
        self.keep_only(set(await session.probe_candidates(lowest, HEADER_SIGNATURE)))
        removed: list[ProbeStamp] = []
        for uid in self.due(now):
            stamp = self._stamps.pop(uid)
            if await remove(uid, stamp):
                removed.append(stamp)
        return removed

    def _drop_stale(self) -> None:
        while self._expiry and self._expiry[0][1] not in self._stamps:
            heapq.heappop(self._expiry)
        if len(self._expiry) > 2 * len(self._stamps) + 64:
            # Many forgotten UIDs buried in the heap: rebuild it so it stays proportional.
            self._expiry = [(w, u) for w, u in self._expiry if u in self._stamps]
            heapq.heapify(self._expiry)
