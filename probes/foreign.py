"""Memory of other agents' probes in one mailbox, so each is fetched once and removed once stale.

Several agents may share a secret and a mailbox (a fleet, or `probe-once` beside the daemon). A
watcher reports and removes only its own probes; another agent's verified probe is left to its
owner, and removed only when it is older than `foreign_probe_max_age`, so the probes of an agent
that stopped do not pile up.

Several live agents see the same stale probe at once (the same new mail wakes them all), so one
of them goes first: the lowest identity among the agents whose fresh probes this watcher has seen
here lately. The others wait `defer` longer, by when the probe is gone and they only forget it,
so the removal is counted once, by the agent that made it. (Two agents that have not yet seen
each other's probes may both remove it in the same instant, and both count it.) UIDs mean something only within one UIDVALIDITY: the memory is
reset when it changes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Awaitable, Callable

from mailprobe.probes.imap_session import ImapSession
from mailprobe.probes.message import HEADER_SIGNATURE, ProbeStamp

#: Agent identities remembered for "first probe of this agent" notices; more are not announced.
MAX_ANNOUNCED = 256
#: How long an agent that is not first in line waits past max age: a tenth of max age, kept
#: within these bounds (the first agent's scan must have come and gone by then).
DEFER_MIN, DEFER_MAX = 5.0, 60.0


def defer_for(max_age: float) -> float:
    """The wait past max age for an agent that is not first in line to remove a stale probe."""
    return min(DEFER_MAX, max(DEFER_MIN, max_age / 10))


class ForeignProbes:
    """Other agents' probes seen in the current UIDVALIDITY, by UID, with their expiry."""

    def __init__(self, max_age: float, own: str | None = None) -> None:
        self.max_age = max_age
        self.own = own  # this watcher's agent identity
        self.defer = defer_for(max_age)
        self._live: dict[str, float] = {}  # other agents' identities -> newest send time seen
        self._stamps: dict[int, ProbeStamp] = {}
        self._expiry: list[tuple[float, int]] = []  # (sent_at, uid) heap; forgotten UIDs skipped
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
        heapq.heappush(self._expiry, (stamp.sent_at, uid))
        if stamp.agent is not None and stamp.sent_at > self._live.get(stamp.agent, -math.inf):
            self._live[stamp.agent] = stamp.sent_at
            if len(self._live) > MAX_ANNOUNCED:  # forget the agent heard from longest ago
                del self._live[min(self._live, key=self._live.__getitem__)]
        first = stamp.agent not in self._announced
        if first and len(self._announced) < MAX_ANNOUNCED:
            self._announced.add(stamp.agent)
        return first

    def first_in_line(self, now: float) -> bool:
        """True when no live agent seen here has a lower identity than this watcher's."""
        live = [a for a, sent in self._live.items() if sent > now - self.max_age]
        return self.own is None or all(self.own <= agent for agent in live)

    def _wait(self, now: float) -> float:
        return self.max_age + (0.0 if self.first_in_line(now) else self.defer)

    def next_expiry(self, now: float) -> float | None:
        """When the oldest remembered probe is due for removal (None when none is remembered)."""
        self._drop_stale()
        return self._expiry[0][0] + self._wait(now) if self._expiry else None

    def due(self, now: float) -> list[int]:
        """UIDs of remembered probes due for removal at `now` (still remembered)."""
        self._drop_stale()
        cut = now - self._wait(now)
        return sorted({uid for sent, uid in self._expiry if sent <= cut and uid in self._stamps})

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
        expiry = self.next_expiry(now)
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
