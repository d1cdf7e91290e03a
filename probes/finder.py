"""Finding the watcher's own probes in the selected mailbox, and removing them (and only them).

A candidate is a message with the signature header (a server-side SEARCH, no fetch). Its headers
are read with BODY.PEEK (not even \\Seen changes) and its HMAC verified. Of the verified probes,
the watcher's own (its agent identity, or none for probes from before identities) are reported
and removed by UID; another agent's are left to it and removed only once older than
``foreign_probe_max_age`` (probes/foreign.py). Every other message is left exactly as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

from mailprobe.probes.foreign import ForeignProbes
from mailprobe.probes.imap_session import ImapSession, Removal
from mailprobe.probes.message import HEADER_SIGNATURE, ProbeStamp, verify_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Arrival:
    """A verified probe seen in the mailbox (or in its junk folder)."""

    stamp: ProbeStamp
    uid: int
    arrived_at: float
    internaldate: float | None
    received: tuple[str, ...]
    found_late: bool = False  # found at (re)connect: arrived_at is when the session was ready
    error: float | None = None  # arrived_at is off by at most this (None: found late)
    # True: in the junk folder. False: in the inbox while the junk folder was watched too.
    # None: the junk folder was not watched.
    junked: bool | None = None
    message: bytes | None = None  # the whole message, when WatchHooks.wants_message asked for it


@dataclass(frozen=True, slots=True)
class Found:
    """An own probe found by a scan, to be removed and then reported."""

    uid: int
    arrival: Arrival


When = Callable[[ProbeStamp, int], tuple[float, float | None]]
"""A found probe's (by its UID) arrival stamp and error bound (None: found late)."""


@dataclass(frozen=True, slots=True)
class FinderHooks:
    """What the agent may count (see probes.imap.WatchHooks)."""

    on_unremoved: Callable[[ProbeStamp, Removal], None] | None = None
    on_foreign: Callable[[ProbeStamp, bool], None] | None = None
    wants_message: Callable[[ProbeStamp], bool] | None = None


class ProbeFinder:
    """Scans, verifies, removes; counts what it left behind and what belongs to others."""

    def __init__(
        self,
        mailbox: str,
        secret: bytes,
        agent_id: str | None,
        hooks: FinderHooks,
        *,
        move_to: str | None,
        foreign_max_age: float,
        foreign_recheck: float,
    ) -> None:
        self._mailbox = mailbox  # for log lines: the account
        self._secret = secret
        self.agent_id = agent_id
        self._hooks = hooks
        self._move_to = move_to
        self._recheck = foreign_recheck
        self.foreign = ForeignProbes(foreign_max_age, agent_id)
        self.warned_unremoved = False  # per session
        self.unremoved = 0
        self.foreign_seen = 0
        self.foreign_removed = 0

    def owns(self, stamp: ProbeStamp) -> bool:
        """True for this watcher's own probes (and for v1 probes, which carry no identity)."""
        return stamp.agent is None or stamp.agent == self.agent_id

    async def scan(
        self,
        session: ImapSession,
        first_uid: int,
        when: When,
        on_found: Callable[[Found], Awaitable[None]],
        *,
        mark: Callable[[int], None] = lambda uid: None,
        backlog: bool = False,
        junked: bool | None = None,
    ) -> None:
        """Hand each own probe with UID >= first_uid in the selected mailbox to ``on_found``.

        ``mark(uid)`` is called before a candidate is fetched, so one whose headers break the
        session is not fetched again. Other agents' probes in the inbox are noted for expiry; in
        the junk folder they are only announced (their owner's watcher takes care of them).
        """
        untouched: list[int] = []
        for uid in await session.probe_candidates(first_uid, HEADER_SIGNATURE):
            mark(uid)
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
                self._foreign_probe(uid, stamp, track=junked is not True)
                continue
            arrived, error = when(stamp, uid)
            message = None
            # In the junk folder a test's whereabouts are its outcome: its body is not read.
            wants = self._hooks.wants_message
            if junked is not True and wants is not None and wants(stamp):
                message = await session.fetch_message(uid)
            arrival = Arrival(stamp, uid, arrived, internaldate, _received(headers),
                              backlog and error is None, error, junked, message)  # fmt: skip
            await on_found(Found(uid, arrival))
        if untouched:
            log.warning(
                "%d message(s) in %s (%s) carry probe headers that do not verify (another "
                "secret, or forged): left untouched (uids %s)",
                len(untouched),
                self._mailbox,
                session.selected,
                _uid_list(untouched),
            )

    async def settle(
        self,
        session: ImapSession,
        found: list[Found],
        report: Callable[[Arrival], None],
        *,
        removable: bool = True,
    ) -> None:
        """Remove each found probe, then report it (cleanup first, so a stop leaves none).

        ``removable`` False: the folder could not be opened for writing; the probes stay.
        """
        for item in found:
            try:
                if removable:
                    await self.remove(session, item.uid, item.arrival.stamp)
                else:
                    self._left(session, item.uid, item.arrival.stamp, "refused")
            finally:
                notify(report, item.arrival)

    def _foreign_probe(self, uid: int, stamp: ProbeStamp, *, track: bool) -> None:
        self.foreign_seen += 1
        if not track or self.foreign.add(uid, stamp):
            log.info(
                "%s also holds probes of agent %s (same secret): left to it%s",
                self._mailbox,
                stamp.agent,
                f", removed when older than {self.foreign.max_age:g}s" if track else "",
            )
        notify(self._hooks.on_foreign, stamp, False)

    async def expire_foreign(self, session: ImapSession, now: float) -> None:
        """Remove other agents' probes past max age; forget the ones their owner removed."""

        async def remove(uid: int, stamp: ProbeStamp) -> bool:
            return await self.remove(session, uid, stamp)

        removed = await self.foreign.sweep(session, now, self._recheck, remove)
        for stamp in removed:
            self.foreign_removed += 1
            notify(self._hooks.on_foreign, stamp, True)
        if removed:
            log.info(
                "removed %d probe(s) of other agents older than %gs from %s",
                len(removed),
                self.foreign.max_age,
                self._mailbox,
            )

    async def remove(self, session: ImapSession, uid: int, stamp: ProbeStamp) -> bool:
        """Delete (or move) one verified probe by UID; False when it stays, counted and warned."""
        outcome = await session.remove(uid, self._move_to)
        if outcome == "removed":
            return True
        self._left(session, uid, stamp, outcome)
        return False

    def _left(self, session: ImapSession, uid: int, stamp: ProbeStamp, outcome: Removal) -> None:
        self.unremoved += 1
        notify(self._hooks.on_unremoved, stamp, outcome)
        if not self.warned_unremoved:
            self.warned_unremoved = True
            why = (
                "offers no UID EXPUNGE/MOVE"
                if outcome == "unsupported"
                else f"refused to remove uid {uid} (UID STORE/EXPUNGE or MOVE)"
            )
            log.warning(
                "server %s %s: probes are left in %s (%d so far)",
                session.endpoint.host,
                why,
                self._mailbox,
                self.unremoved,
            )


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


def notify(callback: Callable[..., None] | None, *args: Any) -> None:
    """Call an agent callback; its own failure is logged, never taken for the server's."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.exception("watcher callback %s failed", getattr(callback, "__name__", callback))
