"""One IMAP session: the connection (``imap_connection``) and the mailbox commands of a watcher.

The session follows the selected mailbox's size from every untagged EXISTS and EXPUNGE, whichever
command they come with, and notes when it last changed: the moment new mail was announced.
Nothing but ProbeError leaves this module: numbers are parsed with a bound, text is decoded with
errors replaced.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mailprobe.probes.errors import ProtocolError
from mailprobe.probes.imap_connection import (
    MAX_NUMBER,
    PHASE,
    ImapConnection,
    ImapEndpoint,
    Removal,
    Security,
    SessionLost,
    parse_internaldate,
    parse_number,
)
from mailprobe.probes.imap_protocol import quoted

_EXISTS = re.compile(rb"^(\d+) EXISTS$")
_FETCH_UID = re.compile(rb"UID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]{1,64})"')
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_STATUS_ITEMS = re.compile(rb"\(([A-Z0-9 ]{0,200})\)\s*$", re.IGNORECASE)
_LIST_ENTRY = re.compile(rb'^\(([^()]{0,500})\) (?:"(?:[^"\\]|\\.){0,4}"|NIL) (.+)$', re.IGNORECASE)
_JUNK_FLAGS = frozenset({b"\\junk", b"\\spam"})  # \Spam: Gmail's XLIST-era name

__all__ = [
    "MAX_NUMBER",
    "PHASE",
    "ImapEndpoint",
    "ImapSession",
    "MailboxStatus",
    "Removal",
    "Security",
    "SessionLost",
    "parse_internaldate",
    "parse_number",
]


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """STATUS of a mailbox that is not selected."""

    uidnext: int
    uidvalidity: int | None
    messages: int | None


class ImapSession(ImapConnection):
    """A logged-in, selected IMAP session with the commands that find, read and remove probes."""

    def __init__(self, endpoint: ImapEndpoint, clock: Callable[[], float] = time.time) -> None:
        super().__init__(endpoint, clock)
        self.size: int | None = None  # messages in the selected mailbox, as last announced
        self.size_changes = 0  # announcements that changed it
        self.changed_at = 0.0  # clock reading when the last one came
        self.selected_at = 0.0  # clock reading when the current SELECT (or EXAMINE) was sent
        self.selected = endpoint.mailbox
        #: When the server last confirmed IDLE: what it announces earlier is its sync at the
        #: start, not a push.
        self.idling_since = 0.0
        #: Awaited before each command the session sends once open (the watcher's budget).
        self.pace: Callable[[], Awaitable[None]] | None = None
        self._protocol.on_size = self._on_size

    async def _command(self, name: str, *args: str, prefix: str = "") -> Any:
        if self.pace is not None:
            await self.pace()
        return await super()._command(name, *args, prefix=prefix)

    def _on_size(self, kind: bytes, number: int) -> None:
        if kind.upper() == b"EXPUNGE":
            if self.size is not None:
                self.size = max(0, self.size - 1)
            return
        if number != self.size:
            self.size = number
            self.size_changes += 1
            self.changed_at = self._clock()

    async def _select(self) -> None:
        self.selected_at = self._clock()
        self.size = None
        await super()._select()

    async def select(self, mailbox: str, *, readonly: bool = False) -> bool:
        """SELECT (or EXAMINE) another mailbox; False when the server refuses it."""
        self.selected_at = self._clock()
        self.size = None
        response = await self._command("EXAMINE" if readonly else "SELECT", quoted(mailbox))
        if response.result != "OK":
            return False
        self.selected = mailbox
        blob = b" ".join(line for line in response.lines if isinstance(line, bytes))
        if mailbox == self.endpoint.mailbox and (m := _UIDVALIDITY.search(blob)):
            self.uidvalidity = parse_number(m.group(1), "UIDVALIDITY")
        return True

    async def status(self, mailbox: str) -> MailboxStatus | None:
        """UIDNEXT, UIDVALIDITY and MESSAGES of a mailbox; None when refused or unusable."""
        response = await self._command("STATUS", quoted(mailbox), "(UIDNEXT UIDVALIDITY MESSAGES)")
        if response.result != "OK":
            return None
        for line in response.lines[:-1]:
            if isinstance(line, bytes) and (m := _STATUS_ITEMS.search(line)):
                words = m.group(1).upper().split()
                items = dict(zip(words[::2], words[1::2], strict=False))
                if b"UIDNEXT" not in items:
                    return None
                uidvalidity, messages = items.get(b"UIDVALIDITY"), items.get(b"MESSAGES")
                return MailboxStatus(
                    parse_number(items[b"UIDNEXT"], "UIDNEXT"),
                    parse_number(uidvalidity, "UIDVALIDITY") if uidvalidity else None,
                    parse_number(messages, "MESSAGES") if messages else None,
                )
        return None

    async def junk_folder(self) -> str | None:
        """The mailbox LIST marks as \\Junk (RFC 6154), or None."""
        caps = self.capabilities
        if "SPECIAL-USE" in caps and "LIST-EXTENDED" in caps:
            response = await self._command("LIST", "(SPECIAL-USE)", '""', '"*"')
        else:
            response = await self._command("LIST", '""', '"*"')
        if response.result != "OK":
            return None
        lines = response.lines[:-1]
        for i, line in enumerate(lines):
            if not isinstance(line, bytes) or not (m := _LIST_ENTRY.match(line)):
                continue
            if not _JUNK_FLAGS & set(m.group(1).lower().split()):
                continue
            name = m.group(2)
            if name.endswith(b"}") and i + 1 < len(lines):  # the name came as a literal
                literal = lines[i + 1]
                name = bytes(literal) if isinstance(literal, bytes | bytearray) else b""
            elif name.startswith(b'"') and name.endswith(b'"') and len(name) >= 2:
                name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
            try:
                text = name.decode("utf-8")  # a name we could not send back as it came: none
            except UnicodeDecodeError:
                continue
            if text and text.isprintable():
                return text
        return None

    async def noop(self) -> bool:
        """Send NOOP; True when the server reported new messages (EXISTS)."""
        response = await self._command("NOOP")
        return any(isinstance(x, bytes) and _EXISTS.match(x) for x in response.lines)

    async def probe_candidates(self, first_uid: int, header: str) -> list[int]:
        """UIDs >= first_uid of messages that carry `header` (a server-side filter, no fetch)."""
        response = await self._command(
            "SEARCH", "UID", f"{max(first_uid, 1)}:*", "HEADER", header, '""', prefix="UID"
        )
        uids: list[int] = []
        for line in response.lines[:-1]:
            if not isinstance(line, bytes):
                continue
            words = line.split()
            if words and words[0] == b"SEARCH":
                words = words[1:]
            uids.extend(parse_number(w, "UID") for w in words if w.isdigit())
        # `n:*` always matches the highest UID even when it is below n.
        return sorted(u for u in uids if u >= first_uid)

    async def fetch_headers(self, uid: int) -> tuple[float | None, bytes] | None:
        """INTERNALDATE and the header block of one message, without setting \\Seen."""
        response = await self._command(
            "FETCH", str(uid), "(UID INTERNALDATE BODY.PEEK[HEADER])", prefix="UID"
        )
        meta = b""
        literal = b""
        for line in response.lines:
            if isinstance(line, bytes | bytearray) and b"FETCH (" in line:
                meta += bytes(line)
            elif isinstance(line, bytearray) and not literal:
                literal = bytes(line)
        m_uid = _FETCH_UID.search(meta)
        if not literal or (m_uid and parse_number(m_uid.group(1), "UID") != uid):
            return None
        m_date = _INTERNALDATE.search(meta)
        internaldate = (
            parse_internaldate(m_date.group(1).decode("ascii", "replace")) if m_date else None
        )
        return internaldate, literal

    async def fetch_message(self, uid: int) -> bytes | None:
        """The whole message (without setting \\Seen), for a probe whose body is inspected.

        Bounded like every literal (the connection refuses one over 1 MiB).
        """
        response = await self._command("FETCH", str(uid), "(UID BODY.PEEK[])", prefix="UID")
        for line in response.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None

    async def remove(self, uid: int, move_to: str | None) -> Removal:
        """Delete (or move) one message by UID.

        "unsupported" when the server offers no safe way, "refused" when it said NO or BAD.
        """
        caps = self.capabilities
        if move_to:
            if "MOVE" not in caps:
                return "unsupported"
            moved = await self._command("MOVE", str(uid), quoted(move_to), prefix="UID")
            return "removed" if moved.result == "OK" else "refused"
        # Plain EXPUNGE would also remove other messages flagged \Deleted by their owner:
        # only UID EXPUNGE (UIDPLUS) removes exactly ours.
        if "UIDPLUS" not in caps:
            return "unsupported"
        stored = await self._command(
            "STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)", prefix="UID"
        )
        if stored.result != "OK":
            return "refused"
        expunged = await self._command("EXPUNGE", str(uid), prefix="UID")
        return "removed" if expunged.result == "OK" else "refused"

    async def idle(self, timeout: float, wake: asyncio.Event) -> bool:
        """IDLE until the server reports new mail, `wake` is set or `timeout` passes.

        Returns True when new mail (EXISTS) was announced.
        """
        if "IDLE" not in self.capabilities:
            raise ProtocolError("server does not support IDLE", phase=PHASE)
        protocol = self._protocol
        if self.pace is not None:
            await self.pace()
        self.commands += 1
        idle_task = asyncio.ensure_future(protocol.idle())
        started = asyncio.ensure_future(protocol.wait_for_idle_response())
        try:
            # A server that answers IDLE with NO completes the command instead of continuing.
            await self._call(
                "IDLE", asyncio.wait({started, idle_task}, return_when="FIRST_COMPLETED")
            )
            if not started.done() or not protocol.has_pending_idle_command():
                raise ProtocolError("server refused IDLE", phase=PHASE)
            self.idling_since = self._clock()
            got_new = await self._idle_wait(timeout, wake)
            protocol.idle_done()
            await self._call("IDLE DONE", asyncio.shield(idle_task))
            self._check_bye(idle_task.result().lines)
            return got_new
        finally:
            started.cancel()
            if not idle_task.done():
                idle_task.cancel()

    async def _idle_wait(self, timeout: float, wake: asyncio.Event) -> bool:
        queue = self._protocol.idle_queue
        deadline = asyncio.get_running_loop().time() + timeout
        waker = asyncio.ensure_future(wake.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or wake.is_set():
                    return False
                pushed = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {pushed, waker, lost}, timeout=remaining, return_when="FIRST_COMPLETED"
                )
                if pushed not in done:
                    pushed.cancel()
                    if lost in done:
                        raise self._gone("IDLE")
                    return False
                lines = pushed.result()
                if not isinstance(lines, list):
                    continue  # aioimaplib's stop marker
                self._check_bye(lines)
                if any(isinstance(x, bytes) and _EXISTS.match(x) for x in lines):
                    return True
        finally:
            waker.cancel()
            lost.cancel()
