"""One mailbox session's watching: looks, IDLE, scans, the junk folder, all within the budget.

Two clocks: the agent's (``clock``: send times, ages, stamps; a test's virtual time) and the
monotonic one of the session's pacing (the server counts real seconds).

``Lookout`` holds what outlives a session (UIDs seen, the budget, the finder and the junk folder)
and watches each session the watcher opens: first what arrived while away (found late), then,
per awaited probe, the looks of its schedule (``probes.poll``), and IDLE or a quiet poll when no
probe is awaited. Each probe found is stamped from the bracket (``probes.stamp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from mailprobe.probes.finder import Arrival, Found, ProbeFinder, notify
from mailprobe.probes.imap_session import PHASE, ImapSession, SessionLost
from mailprobe.probes.junk import JunkWatch
from mailprobe.probes.message import ProbeStamp
from mailprobe.probes.poll import SLACK, CommandWindow, Planner, plan
from mailprobe.probes.stamp import Bracket, Push, PushCheck, stamp

if TYPE_CHECKING:
    from mailprobe.probes.imap import WatchPolicy

log = logging.getLogger(__name__)
_SHORTEST_IDLE = 0.005  # a shorter gap is slept through: an IDLE costs a command
_PASSES = 3  # searches in a row while announcements keep coming; the rest waits for the next look


class Lookout:
    """Watches the sessions of one mailbox, one after another."""

    def __init__(
        self,
        policy: WatchPolicy,
        finder: ProbeFinder,
        on_arrival: Callable[[Arrival], None],
        awaited: Callable[[], Iterable[float]],
        clock: Callable[[], float],
        rng: random.Random,
        *,
        on_commands: Callable[[int], None] | None = None,
    ) -> None:
        self.policy = pol = policy
        self.finder = finder
        self.junk = JunkWatch(pol.junk_folder, enabled=pol.watch_junk, finder=finder)
        self._on_arrival = on_arrival
        self._awaited = awaited  # send times of probes awaited here, for close watching
        self._clock = clock
        self._on_commands = on_commands
        self.wakeup = asyncio.Event()
        n = pol.sparse.count
        self.schedules = {
            Push.UNKNOWN: plan(pol.budget, pol.schedule, sparse=n, cost=2),  # IDLE + NOOP
            Push.LATE: plan(pol.budget, pol.schedule, sparse=n),
            Push.PROMPT: plan(pol.budget, pol.schedule, sparse=n),
        }
        self.planner = Planner(pol.budget, self.schedules[Push.LATE], pol.sparse, rng)
        self.window = CommandWindow(pol.budget.per_minute)
        self.bracket = Bracket()
        self.push = PushCheck()
        self.next_uid = 1
        self.uidvalidity: int | None = None
        self._scanned_changes = 0  # the session's size_changes when last scanned
        self._last_look = 0.0

    async def room(self, n: int) -> None:
        """Wait until ``n`` more commands keep the last minute within the budget."""
        wait = self.window.wait(time.monotonic(), n)
        if wait > 0:
            await asyncio.sleep(min(wait, 60.0))

    def spent(self, n: int) -> None:
        """``n`` commands were sent now."""
        self.window.record(time.monotonic(), n)
        self.planner.spend(n)
        notify(self._on_commands, n)

    async def pace(self) -> None:
        """Before each command: wait for room in the minute, then charge it."""
        await self.room(1)
        self.spent(1)

    async def watch(self, session: ImapSession) -> None:
        """Watch one open session until it ends."""
        if session.uidvalidity != self.uidvalidity:
            # A new mailbox identity: UIDs from before mean nothing now.
            self.uidvalidity = session.uidvalidity
            self.next_uid = 1
            self.finder.foreign.reset()
        self.push = PushCheck()  # another session may reach another server: decide again
        use_idle = self.policy.idle and "IDLE" in session.capabilities
        if not use_idle:
            self.push.polled()
        self.bracket.reset(session.selected_at)
        await self._scan(session, backlog=True)
        await self._from_junk(session, backlog=True)
        decided = self.push.state
        while session.alive:
            if self.push.state is not decided:
                decided = self.push.state
                log.info("%s: IDLE notices are %s%s", session.endpoint.username, decided,
                         "" if self.push.bound is None else f" (within {self.push.bound:.3f}s)")  # fmt: skip
            self.wakeup.clear()  # before reading what is awaited: a wake after it is not lost
            self.planner.track(self._awaited(), self._clock())
            self.planner.schedule = self.schedules[self.push.state]
            sparse_only = self.push.state is Push.PROMPT
            look = self.planner.next_look(
                2 if self.push.calibrating else 1, sparse_only=sparse_only
            )
            if look is not None:  # a busy minute spaces the looks (CommandWindow.spacing)
                look = max(look, self._last_look + self.window.spacing(time.monotonic()))
            check = self.planner.next_check() if self.junk.name else None
            if look is None and check is None:
                await self._quiet(session, use_idle)
            else:
                idle_between = use_idle and self.push.state is not Push.LATE
                await self._close(session, look, check, idle_between=idle_between)

    async def _close(
        self, session: ImapSession, look: float | None, check: float | None, *, idle_between: bool
    ) -> None:
        """One step of a close watch: wait for the next look or check, then make it."""
        moment = min(t for t in (look, check) if t is not None)
        idled = False
        if (wait := moment - self._clock()) > 0:
            if idle_between and wait > _SHORTEST_IDLE:
                idle_from, before = self._clock(), session.size_changes
                await session.idle(wait, self.wakeup)
                if session.size_changes != before:
                    if session.changed_at > session.idling_since:  # a push, not the start's sync
                        newest = max(self._awaited(), default=self.bracket.lo)
                        self.push.pushed(session.changed_at - max(self.bracket.lo, newest))
                    await self._scan(session, pushed=True)
                    self._looked(session, idle_from)
                    return
                idled = True
            else:
                await self._sleep_or_wake(wait)
            if self.wakeup.is_set():
                return  # woken: a new probe to plan for
        now = self._clock()
        if now < moment - SLACK:
            return  # the agent's clock is not there yet (a test's virtual time): wait again
        if check is not None and check <= now + SLACK:
            if any(self.planner.may_check(s) for s in self._awaited()):
                await self._from_junk(session)
            self.planner.checked(now)
        if look is not None and look <= now + SLACK:
            await self._look(session, idled=idled)

    async def _look(self, session: ImapSession, *, idled: bool = False) -> None:
        start, before = self._clock(), session.size_changes
        self._last_look = start
        await session.noop()
        if idled and session.size_changes != before:
            self.push.polled()  # IDLE waited before this look and did not announce it
        if session.size_changes != self._scanned_changes:
            await self._scan(session)
        self._looked(session, start)
        self.planner.looked(start, sparse_only=self.push.state is Push.PROMPT)

    def _looked(self, session: ImapSession, start: float) -> None:
        """The bracket's lower end moves to ``start`` only once all announced mail is searched:
        a message announced earlier and not yet found must keep the bracket it had."""
        if self._scanned_changes == session.size_changes:
            self.bracket.looked(start)

    async def _quiet(self, session: ImapSession, use_idle: bool) -> None:
        """No probe to watch closely: IDLE (or poll slowly) until woken or a refresh is due."""
        if session.size_changes != self._scanned_changes:
            await self._scan(session)  # announced while a command was in flight
        if use_idle:
            idle_from, before = self._clock(), session.size_changes
            await session.idle(self._idle_for(), self.wakeup)
            if session.size_changes != before:
                await self._scan(session, pushed=True)
                self._looked(session, idle_from)
        else:
            await self._sleep_or_wake(min(self.policy.poll_interval, self._idle_for()))
            await self._look(session)
        # The wait may have ended for a foreign probe's expiry (no command unless one is due).
        await self.finder.expire_foreign(session, self._clock())
        if not self.wakeup.is_set() and any(True for _ in self._awaited()):
            await self._from_junk(session)  # a probe may be in junk past its sparse checks

    def _idle_for(self) -> float:
        """How long to wait quietly: until IDLE needs refreshing or a foreign probe goes stale."""
        wait = self.policy.idle_refresh
        expiry = self.finder.foreign.next_expiry(self._clock())
        if expiry is not None:
            wait = min(wait, max(1.0, expiry - self._clock()))
        return wait

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), seconds)

    async def _scan(
        self, session: ImapSession, *, backlog: bool = False, pushed: bool = False,
        force: bool = False,
    ) -> None:  # fmt: skip
        """Take the own probes announced since the last scan, stamped from the bracket.

        ``force``: search even with nothing announced (a new selection, whatever it announced).
        """
        if force or backlog:
            self._scanned_changes = -1
        lo = self.bracket.lo
        bound = self.push.bound if pushed and self.push.state is Push.PROMPT else None

        def when(probe: ProbeStamp, uid: int) -> tuple[float, float | None]:
            now = self._clock()
            after = session.uidnext_at_select
            # Found at (re)connect, and there before the SELECT: not seen arriving. One that
            # came after it (its UID says so) is bracketed from the SELECT on.
            if backlog and (after is None or uid < after):
                return max(session.selected_at, probe.sent_at), None
            # The latest announcement is this probe's only if it came after the probe was sent
            # (an EXISTS aioimaplib dropped leaves an older one there): else it was found now.
            hi = session.changed_at if session.changed_at >= max(lo, probe.sent_at) else now
            found = stamp(lo, hi, probe.sent_at, bound)
            return found.at, found.error

        async def settle(item: Found) -> None:
            await self.finder.settle(session, [item], self._on_arrival)

        def mark(uid: int) -> None:
            self.next_uid = max(self.next_uid, uid + 1)

        for _ in range(_PASSES):  # more announced while we searched: again
            if self._scanned_changes == session.size_changes:
                break
            changes = session.size_changes
            await self.finder.scan(
                session, self.next_uid, when, settle, mark=mark, backlog=backlog,
                junked=False if self.junk.name else None,
            )  # fmt: skip
            self._scanned_changes = changes  # what came during this search waits for the next
        await self.finder.expire_foreign(session, self._clock())

    async def _from_junk(self, session: ImapSession, *, backlog: bool = False) -> None:
        """Check the junk folder; after a visit there, take what the inbox got meanwhile."""
        if backlog:
            went = await self.junk.open(session, self._clock, self._on_arrival)
        else:
            went = await self.junk.check(session, self._clock, self._on_arrival)
        if not went:
            return
        if session.uidvalidity != self.uidvalidity:
            raise SessionLost("the inbox changed its UIDVALIDITY", phase=PHASE)
        await self._scan(session, force=True)
        self._looked(session, session.selected_at)
