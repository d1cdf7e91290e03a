"""Watch one mailbox for signed probes over a persistent IMAP session.

How arrival time is taken: between probes the session IDLEs (cheap for the server). While the agent
awaits a probe it submitted to this mailbox (`awaited`, woken by `wake`), the watcher leaves IDLE and
polls with NOOP,
starting every 20 ms and stretching the interval as the probe ages (0.5 % of its age, at most 0.5 s),
because Dovecot holds IDLE notices for 0.5 s and a fixed slow poll would quantise the delay. The
arrival time is the clock reading when the server's EXISTS reached us, before any SEARCH or FETCH.
After the fast window the watcher goes back to IDLE (or to its slow poll when IDLE is not offered).

A probe found at (re)connect was not seen arriving: its arrival is the earliest moment this session
could have seen it (when it was ready, never before the probe's send time) and it is reported as
found late, so its delay is not taken for a measurement.

States reported (`WatchState`): the session is up; an open session was lost (a reconnect follows:
not yet a failure); an attempt to open the mailbox failed (the mailbox cannot be opened, since the
moment the previous session was lost, or since the attempt when there was none).

Only messages whose HMAC verifies are reported, and only those are deleted or moved, by UID.
Every other message is left exactly as it was: headers are read with BODY.PEEK, so not even
\\Seen changes. Of the verified probes, only the watcher's own (its agent identity, or none for
probes from before identities) are reported and removed; another agent's are left to it and
removed only once older than `foreign_probe_max_age` (probes/foreign.py).

Reconnects back off exponentially (reconnect_min doubling up to reconnect_max). Only a session
that stayed up for reconnect_max seconds resets the backoff: a server that accepts LOGIN and
drops the connection at once is retried ever more slowly, not every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

from mailprobe.probes.errors import ProbeError, ProtocolError
from mailprobe.probes.foreign import ForeignProbes
from mailprobe.probes.imap_session import PHASE, ImapEndpoint, ImapSession, Removal, SessionLost
from mailprobe.probes.message import HEADER_SIGNATURE, ProbeStamp, verify_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Arrival:
    """A verified probe seen in the mailbox."""

    stamp: ProbeStamp
    uid: int
    arrived_at: float
    internaldate: float | None
    received: tuple[str, ...]
    found_late: bool = False  # found at (re)connect: arrived_at is when the session was ready
    message: bytes | None = None  # the whole message, when WatchHooks.wants_message asked for it


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """Timing knobs of a watcher."""

    idle: bool = True  # use IDLE when the server offers it
    poll_interval: float = 30.0  # slow poll when IDLE is off or not offered
    idle_refresh: float = 25 * 60.0  # re-issue IDLE before servers' 30-minute cut-off
    fast_poll_min: float = 0.02
    fast_poll_max: float = 0.5
    fast_poll_factor: float = 0.005
    fast_rescan: float = 0.25  # while polling fast, search at least this often
    fast_window: float = 120.0  # poll fast for this long after an expected probe was sent
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0  # also: a session shorter than this does not reset the backoff
    move_to: str | None = None  # move verified probes there instead of deleting them
    foreign_probe_max_age: float = 6 * 3600.0  # another agent's probe older than this is removed
    foreign_recheck: float = 600.0  # forget other agents' probes their owner removed, this often


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
    wants_message(stamp): True for an own probe whose whole message the agent inspects (an
        anti-virus test): it is fetched (BODY.PEEK) before the probe is removed.
    """

    on_reconnect: Callable[[str], None] | None = None
    on_unremoved: Callable[[ProbeStamp, Removal], None] | None = None
    on_foreign: Callable[[ProbeStamp, bool], None] | None = None
    wants_message: Callable[[ProbeStamp], bool] | None = None


class MailboxWatcher:
    """Keeps one session open, reports verified probes, reconnects with backoff when dropped.

    Counters the agent may read at any time: `reconnects` (by reason), `unremoved` (own probes
    the server would not let us remove), `foreign_seen` and `foreign_removed`.
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
        self.policy = policy or WatchPolicy()
        self.agent_id = agent_id
        self._secret = secret
        self._on_arrival = on_arrival
        self._on_state = on_state
        self._hooks = hooks or WatchHooks()
        self._clock = clock
        self._rng = rng or random.Random()
        self._awaited = awaited  # send times of probes awaited here, for fast polling
        self._wake = asyncio.Event()
        self._lost_at: float | None = None  # when the last open session ended
        self._sleep = sleep  # between reconnects: the agent's clock, so tests need not wait
        self._ready_at = 0.0  # when the current session was ready
        self._next_uid = 1
        self._uidvalidity: int | None = None
        self._foreign = ForeignProbes(self.policy.foreign_probe_max_age, agent_id)
        self._warned_unremoved = False  # per session
        self.session: ImapSession | None = None
        self.up = False
        self.cert_not_after: float | None = None
        self.commands = 0  # IMAP commands over all sessions
        self.reconnects: Counter[str] = Counter()
        self.unremoved = 0
        self.foreign_seen = 0
        self.foreign_removed = 0

    def wake(self) -> None:
        """A probe was just submitted to this mailbox: leave IDLE and watch closely."""
        self._wake.set()

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
            self._warned_unremoved = False
            opened_at: float | None = None
            try:
                await session.open()
                opened_at = loop.time()
                self.cert_not_after = session.cert_not_after
                self._ready_at = self._clock()
                self._lost_at = None
                self._set_state(WatchState(True, self._ready_at))
                await self._watch(session)
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
            self.reconnects[error.reason] += 1
            _notify(self._hooks.on_reconnect, error.reason)
            await self._sleep(delay)

    async def close(self) -> None:
        """Log out of the current session (used at shutdown, after run() was cancelled)."""
        if self.session is not None:
            await self.session.logout()

    def _set_state(self, state: WatchState) -> None:
        self.up = state.up
        _notify(self._on_state, state)

    async def _watch(self, session: ImapSession) -> None:
        if session.uidvalidity != self._uidvalidity:
            # A new mailbox identity: UIDs from before mean nothing now.
            self._uidvalidity = session.uidvalidity
            self._next_uid = 1
            self._foreign.reset()
        await self._scan(session, self._ready_at, backlog=True)
        use_idle = self.policy.idle and "IDLE" in session.capabilities
        # Pacing is real time (the loop's clock); arrival stamps are the agent's clock.
        loop = asyncio.get_running_loop()
        last_scan = loop.time()
        while session.alive:
            interval = self._fast_interval()
            if interval is not None:
                await asyncio.sleep(interval)
                # aioimaplib drops an EXISTS pushed while another command runs, so rescan now
                # and then even when NOOP reports nothing new.
                if await session.noop() or loop.time() - last_scan >= self.policy.fast_rescan:
                    last_scan = loop.time()
                    await self._scan(session, self._clock())
                continue
            # Catch anything announced while a command was in flight, before waiting again.
            await self._scan(session, self._clock())
            self._wake.clear()
            if use_idle:
                if await session.idle(self._idle_for(), self._wake):
                    await self._scan(session, self._clock())
            else:
                await self._sleep_or_wake(min(self.policy.poll_interval, self._idle_for()))
                if await session.noop():
                    await self._scan(session, self._clock())
            last_scan = loop.time()

    def _idle_for(self) -> float:
        """How long to wait quietly: until IDLE needs refreshing or a foreign probe goes stale."""
        wait = self.policy.idle_refresh
        expiry = self._foreign.next_expiry(self._clock())
        if expiry is not None:
            wait = min(wait, max(1.0, expiry - self._clock()))
        return wait

    def _fast_interval(self) -> float | None:
        """The poll interval while a fresh probe is expected, or None to go back to IDLE."""
        now = self._clock()
        pol = self.policy
        ages = [now - sent_at for sent_at in self._awaited()]
        youngest = min((age for age in ages if age <= pol.fast_window), default=None)
        if youngest is None:
            return None
        return min(pol.fast_poll_max, max(pol.fast_poll_min, youngest * pol.fast_poll_factor))

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def owns(self, stamp: ProbeStamp) -> bool:
        """True for this watcher's own probes (and for v1 probes, which carry no identity)."""
        return stamp.agent is None or stamp.agent == self.agent_id

    async def _scan(self, session: ImapSession, seen_at: float, *, backlog: bool = False) -> None:
        """Find new probe candidates, verify them, report and remove the watcher's own."""
        untouched: list[int] = []
        for uid in await session.probe_candidates(self._next_uid, HEADER_SIGNATURE):
            self._next_uid = max(self._next_uid, uid + 1)
            fetched = await session.fetch_headers(uid)
            if fetched is None:
                continue
            internaldate, raw = fetched
            headers = _parse_headers(raw)
            stamp = verify_headers(headers, self._secret) if headers is not None else None
            if headers is None or stamp is None:
                untouched.append(uid)
                continue
            if not self.owns(stamp):
                self._foreign_probe(uid, stamp)
                continue
            # Found at (re)connect: the session could have seen it once ready, not before.
            arrived = max(seen_at, stamp.sent_at) if backlog else seen_at
            message = None
            if self._hooks.wants_message is not None and self._hooks.wants_message(stamp):
                message = await session.fetch_message(uid)
            arrival = Arrival(stamp, uid, arrived, internaldate, _received(headers), backlog,
                              message)  # fmt: skip
            try:
                # Clean up first, so a caller that stops on the arrival leaves no probe behind.
                await self._remove(session, uid, stamp)
            finally:
                _notify(self._on_arrival, arrival)
        if untouched:
            log.warning(
                "%d message(s) in %s carry probe headers that do not verify (another secret, "
                "or forged): left untouched (uids %s)",
                len(untouched),
                self.endpoint.username,
                _uid_list(untouched),
            )
        await self._expire_foreign(session)

    def _foreign_probe(self, uid: int, stamp: ProbeStamp) -> None:
        self.foreign_seen += 1
        if self._foreign.add(uid, stamp):
            log.info(
                "%s also holds probes of agent %s (same secret): left to it, removed when older "
                "than %gs",
                self.endpoint.username,
                stamp.agent,
                self.policy.foreign_probe_max_age,
            )
        _notify(self._hooks.on_foreign, stamp, False)

    async def _expire_foreign(self, session: ImapSession) -> None:
        """Remove other agents' probes past max age; forget the ones their owner removed."""

        async def remove(uid: int, stamp: ProbeStamp) -> bool:
            return await self._remove(session, uid, stamp)

        now = self._clock()
        removed = await self._foreign.sweep(session, now, self.policy.foreign_recheck, remove)
        for stamp in removed:
            self.foreign_removed += 1
            _notify(self._hooks.on_foreign, stamp, True)
        if removed:
            log.info(
                "removed %d probe(s) of other agents older than %gs from %s",
                len(removed),
                self.policy.foreign_probe_max_age,
                self.endpoint.username,
            )

    async def _remove(self, session: ImapSession, uid: int, stamp: ProbeStamp) -> bool:
        outcome = await session.remove(uid, self.policy.move_to)
        if outcome == "removed":
            return True
        self.unremoved += 1
        _notify(self._hooks.on_unremoved, stamp, outcome)
        if not self._warned_unremoved:
            self._warned_unremoved = True
            why = (
                "offers no UID EXPUNGE/MOVE"
                if outcome == "unsupported"
                else f"refused to remove uid {uid} (UID STORE/EXPUNGE or MOVE)"
            )
            log.warning(
                "server %s %s: probes are left in %s (%d so far)",
                self.endpoint.host,
                why,
                self.endpoint.username,
                self.unremoved,
            )
        return False


def session_ended() -> SessionLost:
    """The error of a session whose watch loop found the connection gone."""
    return SessionLost("IMAP session ended", phase=PHASE)


def _parse_headers(raw: bytes) -> Message | None:
    try:
        return BytesHeaderParser().parsebytes(raw)
    except Exception:  # noqa: BLE001 - hostile input must never escape as an error
        return None


def _received(headers: Message) -> tuple[str, ...]:
    """Received header values as clean text (a server may put any byte into them)."""
    out: list[str] = []
    for value in headers.get_all("Received") or ():
        text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        out.append(text)
    return tuple(out)


def _uid_list(uids: list[int], limit: int = 10) -> str:
    shown = ",".join(str(u) for u in uids[:limit])
    return shown + (f",... ({len(uids) - limit} more)" if len(uids) > limit else "")


def _notify(callback: Callable[..., None] | None, *args: Any) -> None:
    """Call an agent callback; its own failure is logged, never taken for the server's."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.exception("watcher callback %s failed", getattr(callback, "__name__", callback))
