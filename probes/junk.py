"""The account's junk folder, watched from the inbox session: a probe filed there is found too.

Which folder: the configured name (given, or filled by a provider preset) where the server has
it, else the one LIST marks ``\\Junk`` (RFC 6154 SPECIAL-USE: a preset's English name may be
localized on the account), else none (then nothing is watched and the log says so once per
session). It is checked with
one STATUS (UIDNEXT) at the watcher's sparse checks, so it costs no IDLE and no second session.
When UIDNEXT grew, the folder is opened read-only (EXAMINE, so nothing in it changes, not even
\\Recent), searched for signed probes and each verified; only if the watcher's own are there is it
selected read-write to remove exactly those, by UID. Then the inbox is selected again.

A probe found there arrived between the last check that did not see it and the check that did;
the stamp is the middle of that bracket and its error bound half of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mailprobe.probes.errors import ProtocolError
from mailprobe.probes.finder import Arrival, Found, ProbeFinder
from mailprobe.probes.imap_session import PHASE, ImapSession
from mailprobe.probes.mailbox_names import to_wire
from mailprobe.probes.message import ProbeStamp
from mailprobe.probes.stamp import stamp

log = logging.getLogger(__name__)


class JunkWatch:
    """One account's junk folder: its name, what was seen of it, and how to look into it."""

    def __init__(self, configured: str | None, *, enabled: bool, finder: ProbeFinder) -> None:
        self._configured = configured
        self._enabled = enabled
        self._finder = finder
        self.name: str | None = None
        self._uidvalidity: int | None = None
        self._next_uid = 1
        self._uidnext: int | None = None
        self.lo = 0.0  # start of the last check after which everything there was searched

    async def open(
        self, session: ImapSession, clock: Callable[[], float], report: Callable[[Arrival], None]
    ) -> bool:
        """Find the folder in a new session and take what arrived while away; True if selected.

        True means the session went there and back: the inbox was selected again.
        """
        self.name = None
        if not self._enabled:
            return False
        name = None if self._configured is None else to_wire(self._configured)
        if name is None or await session.status(name) is None:
            name = await session.junk_folder()
        if name is None or name == session.endpoint.mailbox:
            log.info("%s: no junk folder found (LIST marks none \\Junk; set junk_folder): "
                     "probes filed as spam are not seen", session.endpoint.username)  # fmt: skip
            return False
        self.name = name
        self._uidnext = None
        return await self.check(session, clock, report, backlog=True)

    async def check(
        self,
        session: ImapSession,
        clock: Callable[[], float],
        report: Callable[[Arrival], None],
        *,
        backlog: bool = False,
    ) -> bool:
        """One STATUS; if the folder grew, take the probes in it. True if it was selected."""
        if self.name is None:
            return False
        start = clock()
        status = await session.status(self.name)
        seen = clock()
        if status is None:
            log.info("%s: STATUS of junk folder %r refused: not watched in this session",
                     session.endpoint.username, self.name)  # fmt: skip
            self.name = None
            return False
        if status.uidvalidity != self._uidvalidity:
            self._uidvalidity, self._next_uid, self._uidnext = status.uidvalidity, 1, None
        grew = status.uidnext != self._uidnext and status.uidnext > self._next_uid
        self._uidnext = status.uidnext
        if not grew:
            self.lo = start
            return False
        lo = self.lo

        def when(probe: ProbeStamp, uid: int) -> tuple[float, float | None]:
            if backlog:
                return max(start, probe.sent_at), None
            found = stamp(lo, seen, probe.sent_at)
            return found.at, found.error

        try:
            if await session.select(self.name, readonly=True):
                found: list[Found] = []

                async def keep(item: Found) -> None:
                    found.append(item)

                await self._finder.scan(
                    session, self._next_uid, when, keep, backlog=backlog, junked=True
                )
                if found:
                    writable = await session.select(self.name)
                    await self._finder.settle(session, found, report, removable=writable)
                # Only now: a session lost before this looks again next time.
                self._next_uid = max(self._next_uid, status.uidnext)
            self.lo = start
        finally:
            if session.alive and not await session.select(session.endpoint.mailbox):
                raise ProtocolError(
                    f"cannot select {session.endpoint.mailbox} again after the junk folder",
                    phase=PHASE,
                )
        return True
