"""One IMAP session: the connection (``imap_connection``) and the mailbox commands of a watcher.

Nothing but ProbeError leaves this module: numbers are parsed with a bound, text is decoded with
errors replaced.
"""

from __future__ import annotations

import asyncio
import re

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

__all__ = [
    "MAX_NUMBER",
    "PHASE",
    "ImapEndpoint",
    "ImapSession",
    "Removal",
    "Security",
    "SessionLost",
    "parse_internaldate",
    "parse_number",
]


class ImapSession(ImapConnection):
    """A logged-in, selected IMAP session with the commands that find, read and remove probes."""

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
