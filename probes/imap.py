"""Watch one mailbox for signed probes over a persistent IMAP session, within a command budget.

How arrival time is taken: between probes the session IDLEs (cheap for the server). While the agent
awaits a probe it submitted to this mailbox (``awaited``, woken by ``wake``), the watcher looks
(NOOP) on the schedule of ``probes.poll``: every 44 ms at first, then at intervals growing with
the probe's age, as many looks as the budget allows. The last look that did not see the probe
and the announcement (EXISTS) that showed it bracket its arrival: the arrival is stamped at the
middle and carries half the width as its error bound (``probes.stamp``). IDLE stands in for the
looks where the session showed its pushes are prompt; Dovecot holds its notices 0.5 s, so there
the looks time arrivals. The junk folder is checked at a few sparse moments (``probes.junk``).

The budget (``probes.poll.Budget``): a look or junk check is made only while the probe's own
commands so far, with what its handling still needs, stay within ``per_probe``; and no command
is sent while the last minute already holds ``per_minute``.

A probe found at (re)connect was not seen arriving: its arrival is the earliest moment this session
could have seen it (when it was ready, never before the probe's send time) and it is reported as
found late, so its delay is not taken for a measurement.

States reported (``WatchState``): the session is up; an open session was lost (a reconnect follows:
not yet a failure); an attempt to open the mailbox failed (the mailbox cannot be opened, since the
moment the previous session was lost, or since the attempt when there was none). Only verified
probes are reported and removed (``probes.finder``); every other message is left as it was.

Reconnects back off exponentially (reconnect_min doubling up to reconnect_max). Only a session
that stayed up for reconnect_max seconds resets the backoff: a server that accepts LOGIN and
drops the connection at once is retried ever more slowly, not every second.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from mailprobe.probes.errors import ProbeError, ProtocolError
from mailprobe.probes.finder import Arrival, FinderHooks, ProbeFinder, notify
from mailprobe.probes.imap_session import PHASE, ImapEndpoint, ImapSession, Removal, SessionLost
from mailprobe.probes.lookout import Lookout
from mailprobe.probes.message import ProbeStamp
from mailprobe.probes.poll import Budget, Schedule, Sparse
from mailprobe.probes.stamp import PushCheck

__all__ = ["Arrival", "MailboxWatcher", "WatchHooks", "WatchPolicy", "WatchState"]

log = logging.getLogger(__name__)
_OPEN_COMMANDS = 5  # CAPABILITY, STARTTLS, CAPABILITY again, LOGIN, SELECT


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """Timing knobs and the command budget of a watcher."""

    idle: bool = True  # use IDLE when the server offers it
    poll_interval: float = 30.0  # quiet poll when IDLE is off or not offered
    idle_refresh: float = 25 * 60.0  # re-issue IDLE before servers' 30-minute cut-off
    budget: Budget = field(default_factory=Budget)
    # The finest schedule: plan() widens it to the budget.
    schedule: Schedule = field(default_factory=Schedule)
    # Junk checks, and the looks that keep prompt pushes honest (the agent: Sparse.within).
    sparse: Sparse = field(default_factory=Sparse)
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0  # also: a session shorter than this does not reset the backoff
    move_to: str | None = None  # move verified probes there instead of deleting them
    foreign_probe_max_age: float = 6 * 3600.0  # another agent's probe older than this is removed
    foreign_recheck: float = 600.0  # forget other agents' probes their owner removed, this often
    watch_junk: bool = True
    junk_folder: str | None = None  # None: the folder LIST marks \Junk


@dataclass(frozen=True, slots=True)
class WatchState:
    """A change of the watcher's session: up, an open session lost, or an attempt failed."""

    up: bool
    at: float  # when: the session was ready, was lost, or (failed attempt) the mailbox went away
    error: ProbeError | None = None
    lost_session: bool = False  # an open session ended; a reconnect follows


ArrivalCallback = Callable[[Arrival], None]
StateCallback = Callable[[WatchState], None]
AwaitedCallback = Callable[[], Iterable[float]]


@dataclass(frozen=True, slots=True)
class WatchHooks:
    """What the agent may count; each is called on the event loop and must not block.

    on_reconnect(reason): the watcher is about to reconnect; reason is from errors.REASONS.
    on_unremoved(stamp, why): a verified probe stays in the mailbox; why is "unsupported" (no
        UIDPLUS/MOVE) or "refused" (the server said NO/BAD to UID STORE/EXPUNGE or UID MOVE).
    on_foreign(stamp, removed): another agent's verified probe, once when first seen
        (removed=False) and once more if this watcher removed it as stale (removed=True).
    on_commands(n): the session sent ``n`` more IMAP commands.
    wants_message(stamp): True for an own probe whose whole message the agent inspects (an
        anti-virus test): it is fetched (BODY.PEEK) before the probe is removed, from the inbox
        or the junk folder.
    """

    on_commands: Callable[[int], None] | None = None
    on_reconnect: Callable[[str], None] | None = None
    on_unremoved: Callable[[ProbeStamp, Removal], None] | None = None
    on_foreign: Callable[[ProbeStamp, bool], None] | None = None
    wants_message: Callable[[ProbeStamp], bool] | None = None


class MailboxWatcher:
    """Keeps one session open, reports verified probes, reconnects with backoff when dropped.

    Counters the agent may read at any time: ``commands``, ``reconnects`` (by reason),
    ``unremoved`` (own probes the server would not let us remove), ``foreign_seen`` and
    ``foreign_removed``; ``push`` says what this session's IDLE notices are worth.
    """

    def __init__(
        self,
        endpoint: ImapEndpoint,
        secret: bytes,
        on_arrival: ArrivalCallback,
        on_state: StateCallback,
        *,
        awaited: AwaitedCallback = tuple,
        policy: WatchPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        agent_id: str | None = None,
        hooks: WatchHooks | None = None,
    ) -> None:
        self.endpoint = endpoint
        pol = self.policy = policy or WatchPolicy()
        self._on_state = on_state
        self._hooks = hooks = hooks or WatchHooks()
        self._clock = clock
        self._rng = rng or random.Random()
        self._lost_at: float | None = None  # when the last open session ended
        self._sleep = sleep  # between reconnects: the agent's clock, so tests need not wait
        self.finder = ProbeFinder(
            endpoint.username, secret, agent_id,
            FinderHooks(hooks.on_unremoved, hooks.on_foreign, hooks.wants_message),
            move_to=pol.move_to, foreign_max_age=pol.foreign_probe_max_age,
            foreign_recheck=pol.foreign_recheck,
        )  # fmt: skip
        self.lookout = Lookout(
            pol,
            self.finder,
            on_arrival,
            awaited,
            clock,
            self._rng,
            on_commands=self._hooks.on_commands,
        )
        self.session: ImapSession | None = None
        self.up = False
        self.cert_not_after: float | None = None
        self.commands = 0  # IMAP commands over all sessions
        self.reconnects: Counter[str] = Counter()

    @property
    def push(self) -> PushCheck:
        """What the current session's IDLE notices are worth."""
        return self.lookout.push

    @property
    def unremoved(self) -> int:
        """Own probes the server would not let the watcher remove."""
        return self.finder.unremoved

    @property
    def foreign_seen(self) -> int:
        """Other agents' verified probes seen."""
        return self.finder.foreign_seen

    @property
    def foreign_removed(self) -> int:
        """Other agents' probes removed as stale."""
        return self.finder.foreign_removed

    def wake(self) -> None:
        """A probe was just submitted to this mailbox: leave IDLE and watch closely."""
        self.lookout.wakeup.set()

    async def run(self) -> None:
        """Watch forever (until cancelled), reconnecting with capped exponential backoff.

        Nothing a server sends ends this loop: an unexpected exception inside a session ends
        that session as a protocol error and the watcher reconnects.
        """
        loop = asyncio.get_running_loop()
        backoff = self.policy.reconnect_min
        while True:
            session = ImapSession(self.endpoint, self._clock)
            self.session = session
            attempt = self._clock()
            self.finder.warned_unremoved = False
            opened_at: float | None = None
            try:
                await self.lookout.room(_OPEN_COMMANDS)
                try:
                    await session.open()
                finally:
                    # aioimaplib asks CAPABILITY after the greeting: the session does not count it.
                    self.lookout.spent(session.commands + 1)
                session.pace = self.lookout.pace
                opened_at = loop.time()
                self.cert_not_after = session.cert_not_after
                self._lost_at = None
                self._set_state(WatchState(True, self._clock()))
                await self.lookout.watch(session)
                error: ProbeError = session_ended()
            except ProbeError as exc:
                error = exc
            except Exception as exc:  # one reply must never end the watcher
                text = f"IMAP: unexpected {type(exc).__name__}: {exc}"
                error = ProtocolError(text[:300], phase=PHASE)
                log.warning("watcher %s: %s", self.endpoint.username, error)
                log.debug("watcher %s: traceback", self.endpoint.username, exc_info=True)
            finally:
                self.commands += session.commands
                session.close()
            if opened_at is not None:
                self._lost_at = self._clock()
                self._set_state(WatchState(False, self._lost_at, error, lost_session=True))
            else:
                # The first failed attempt after a lost session dates the loss; each later one is
                # a failure of its own, so two in a row confirm the mailbox is away.
                since = attempt if self._lost_at is None else self._lost_at
                self._lost_at = None
                self._set_state(WatchState(False, since, error))
            if opened_at is not None and loop.time() - opened_at >= self.policy.reconnect_max:
                backoff = self.policy.reconnect_min
            delay = backoff * (1 + self._rng.random() * 0.2)
            backoff = min(backoff * 2, self.policy.reconnect_max)
            _end_if_cancelled()
            self.reconnects[error.reason] += 1
            notify(self._hooks.on_reconnect, error.reason)
            await self._sleep(delay)

    async def close(self) -> None:
        """Log out of the current session (used at shutdown, after run() was cancelled)."""
        if self.session is not None:
            self.session.pace = None
            await self.session.logout()

    def _set_state(self, state: WatchState) -> None:
        self.up = state.up
        notify(self._on_state, state)


def session_ended() -> SessionLost:
    """The error of a session whose watch loop found the connection gone."""
    return SessionLost("IMAP session ended", phase=PHASE)


def _end_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled: ``asyncio.wait_for`` can eat a cancel
    (before Python 3.12) when the awaited connect fails at that moment."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
