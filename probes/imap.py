"""Watch one mailbox for signed probes over a persistent IMAP session.

How arrival time is taken: between probes the session IDLEs (cheap for the server). When the agent
announces a probe it has just submitted (`expect`), the watcher leaves IDLE and polls with NOOP,
starting every 20 ms and stretching the interval as the probe ages (0.5 % of its age, at most 0.5 s),
because Dovecot holds IDLE notices for 0.5 s and a fixed slow poll would quantise the delay. The
arrival time is the clock reading when the server's EXISTS reached us, before any SEARCH or FETCH.
After the fast window the watcher goes back to IDLE (or to its slow poll when IDLE is not offered).

Only messages whose HMAC verifies are reported, and only those are deleted or moved, by UID.
Every other message is left exactly as it was: headers are read with BODY.PEEK, so not even
\\Seen changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser

from mailprobe.probes.errors import ProbeError
from mailprobe.probes.imap_session import ImapEndpoint, ImapSession
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
    backlog: bool = False  # found at (re)connect, so arrived_at is the server's INTERNALDATE


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
    reconnect_max: float = 60.0
    move_to: str | None = None  # move verified probes there instead of deleting them


ArrivalCallback = Callable[[Arrival], None]
StateCallback = Callable[[bool, ProbeError | None], None]


class MailboxWatcher:
    """Keeps one session open, reports verified probes, reconnects with backoff when dropped."""

    def __init__(
        self,
        endpoint: ImapEndpoint,
        secret: bytes,
        on_arrival: ArrivalCallback,
        on_state: StateCallback,
        *,
        policy: WatchPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy or WatchPolicy()
        self._secret = secret
        self._on_arrival = on_arrival
        self._on_state = on_state
        self._clock = clock
        self._rng = rng or random.Random()
        self._expected: dict[str, float] = {}  # probe id -> sent_at, for fast polling
        self._wake = asyncio.Event()
        self._next_uid = 1
        self._uidvalidity: int | None = None
        self._warned_no_remove = False
        self.session: ImapSession | None = None
        self.up = False
        self.cert_not_after: float | None = None
        self.commands = 0  # IMAP commands over all sessions

    def expect(self, probe_id: str, sent_at: float) -> None:
        """A probe was just submitted to this mailbox: watch closely until it shows up."""
        self._expected[probe_id] = sent_at
        self._wake.set()

    def forget(self, probe_id: str) -> None:
        """Stop watching closely for a probe (it was lost or the agent gave up on it)."""
        self._expected.pop(probe_id, None)

    async def run(self) -> None:
        """Watch forever (until cancelled), reconnecting with capped exponential backoff."""
        backoff = self.policy.reconnect_min
        while True:
            session = ImapSession(self.endpoint, self._clock)
            self.session = session
            try:
                await session.open()
                self.cert_not_after = session.cert_not_after
                self._set_state(True, None)
                backoff = self.policy.reconnect_min
                await self._watch(session)
            except ProbeError as exc:
                self._set_state(False, exc)
            finally:
                self.commands += session.commands
                session.close()
            delay = backoff * (1 + self._rng.random() * 0.2)
            backoff = min(backoff * 2, self.policy.reconnect_max)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Log out of the current session (used at shutdown, after run() was cancelled)."""
        if self.session is not None:
            await self.session.logout()

    def _set_state(self, up: bool, error: ProbeError | None) -> None:
        if up != self.up or error is not None:
            self.up = up
            self._on_state(up, error)

    async def _watch(self, session: ImapSession) -> None:
        if session.uidvalidity != self._uidvalidity:
            # A new mailbox identity: UIDs from before mean nothing now.
            self._uidvalidity = session.uidvalidity
            self._next_uid = 1
        await self._scan(session, self._clock(), backlog=True)
        use_idle = self.policy.idle and "IDLE" in session.capabilities
        last_scan = self._clock()
        while session.alive:
            interval = self._fast_interval()
            if interval is not None:
                await asyncio.sleep(interval)
                now = self._clock()
                # aioimaplib drops an EXISTS pushed while another command runs, so rescan now
                # and then even when NOOP reports nothing new.
                if await session.noop() or now - last_scan >= self.policy.fast_rescan:
                    last_scan = now
                    await self._scan(session, now)
                continue
            # Catch anything announced while a command was in flight, before waiting again.
            await self._scan(session, self._clock())
            self._wake.clear()
            if use_idle:
                if await session.idle(self.policy.idle_refresh, self._wake):
                    await self._scan(session, self._clock())
            else:
                await self._sleep_or_wake(self.policy.poll_interval)
                if await session.noop():
                    await self._scan(session, self._clock())
            last_scan = self._clock()

    def _fast_interval(self) -> float | None:
        """The poll interval while a fresh probe is expected, or None to go back to IDLE."""
        now = self._clock()
        pol = self.policy
        youngest: float | None = None
        for pid, sent_at in list(self._expected.items()):
            age = now - sent_at
            if age > pol.fast_window:
                del self._expected[pid]
            elif youngest is None or age < youngest:
                youngest = age
        if youngest is None:
            return None
        return min(pol.fast_poll_max, max(pol.fast_poll_min, youngest * pol.fast_poll_factor))

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _scan(self, session: ImapSession, seen_at: float, *, backlog: bool = False) -> None:
        """Find new probe candidates, verify them, report and remove the genuine ones."""
        for uid in await session.probe_candidates(self._next_uid, HEADER_SIGNATURE):
            self._next_uid = max(self._next_uid, uid + 1)
            fetched = await session.fetch_headers(uid)
            if fetched is None:
                continue
            internaldate, raw = fetched
            headers = BytesHeaderParser().parsebytes(raw)
            stamp = verify_headers(headers, self._secret)
            if stamp is None:
                log.warning(
                    "uid %s in %s carries probe headers that do not verify: left untouched",
                    uid,
                    self.endpoint.username,
                )
                continue
            self._expected.pop(stamp.probe_id, None)
            arrived = internaldate if backlog and internaldate is not None else seen_at
            received = tuple(str(v) for v in headers.get_all("Received") or ())
            arrival = Arrival(stamp, uid, arrived, internaldate, received, backlog)
            try:
                # Clean up first, so a caller that stops on the arrival leaves no probe behind.
                await self._remove(session, uid)
            finally:
                self._on_arrival(arrival)

    async def _remove(self, session: ImapSession, uid: int) -> None:
        removed = await session.remove(uid, self.policy.move_to) == "removed"
        if not removed and not self._warned_no_remove:
            self._warned_no_remove = True
            log.warning(
                "server %s cannot or will not remove probes by UID: they are left in the mailbox",
                self.endpoint.host,
            )
