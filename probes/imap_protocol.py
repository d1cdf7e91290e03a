"""aioimaplib's client protocol, hardened against what a hostile or broken server sends.

aioimaplib 2.0.3 trusts the server: it buffers a line until its CRLF however long it grows, reads
whatever literal size a server announces (`{2000000000}`), recurses once per line received (a
flood of short lines hits RecursionError), starts a greeting task for every line before the
greeting is answered, and lets a decode error or an unexpected tagged line escape from
data_received (asyncio then logs a traceback and drops the connection). This subclass bounds
each of those and turns any surprise into one ProtocolError that ends the session: the session
reads it from `failure` once the connection is gone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from aioimaplib import aioimaplib

from mailprobe.probes.errors import ProtocolError

log = logging.getLogger(__name__)

PHASE = "imap"
CRLF = b"\r\n"
#: Memory a response line costs beyond its bytes (list slot, bytes object): counted against
#: the budget so a flood of empty lines is bounded too.
LINE_OVERHEAD = 64
#: The budget between two tagged responses, in multiples of the largest literal.
BUDGET_FACTOR = 4
_MAX_DIGITS = 10  # literal sizes and UIDs are 32-bit numbers in IMAP
_SIZE = re.compile(rb"^\* (\d{1,10}) (EXISTS|EXPUNGE)$", re.IGNORECASE)


def quoted(value: str) -> str:
    """The IMAP quoted-string form of `value` (RFC 3501 section 9), as aioimaplib sends it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class GuardedProtocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """IMAP4ClientProtocol with bounded buffers and no exception escaping the event loop.

    `max_literal` bounds a literal and a line; at most BUDGET_FACTOR times that may arrive
    between two tagged responses (untagged floods included).
    """

    incomplete_line: bytes
    current_command: Any

    def __init__(
        self, loop: Any, conn_lost_cb: Callable[[Exception | None], None], max_literal: int
    ) -> None:
        super().__init__(loop, conn_lost_cb)
        self.max_literal = max_literal
        self.failure: ProtocolError | None = None
        self._budget = max_literal * BUDGET_FACTOR
        self._spent = 0
        self._greeted = False
        self._pieces: list[bytes] = []
        self._pieces_size = 0
        #: Told of every untagged ``N EXISTS`` and ``N EXPUNGE``, whichever command is running
        #: (aioimaplib hands an EXISTS that comes during SEARCH or FETCH to no one).
        self.on_size: Callable[[bytes, int], None] | None = None
        self._sasl: _SaslExchange | None = None
        #: The error challenge of the last AUTHENTICATE (base64 of a JSON status), if any.
        self.sasl_challenge: bytes | None = None

    # -- failing ------------------------------------------------------------------------------
    def fail(self, message: str) -> None:
        """End the session: remember why and drop the connection (never raises)."""
        if self.failure is None:
            self.failure = ProtocolError(message, phase=PHASE)
        self._release()
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the session, and let go of buffers at once."""
        self._release()
        super().connection_lost(exc)

    def _release(self) -> None:
        # The protocol sits in reference cycles (transport, session callback) that only the
        # cyclic collector frees; without this a dead session's megabyte line waits for it.
        self.incomplete_line = b""
        self.current_command = None
        self._pieces.clear()
        self._pieces_size = 0

    # -- receiving ----------------------------------------------------------------------------
    def data_received(self, d: bytes) -> None:
        """Parse what arrived; any problem ends the session as a protocol error."""
        if self.failure is not None:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("received %d bytes: %r", len(d), d[:160])
        if self._mid_line(d):
            # Keep the pieces of a long line apart until its end comes: joining them at each
            # arrival, as aioimaplib does, copies the line over and over (and fragments memory).
            self._pieces.append(d)
            self._pieces_size += len(d)
            if len(self.incomplete_line) + self._pieces_size > self.max_literal:
                self.fail(f"server line longer than {self.max_literal} bytes")
            return
        if self._pieces:
            d = b"".join([*self._pieces, d])
            self._pieces.clear()
            self._pieces_size = 0
        try:
            self._handle_responses(
                self.incomplete_line + d, self._handle_line, self.current_command
            )
            self.incomplete_line = b""
            self.current_command = None
        except aioimaplib.IncompleteRead as incomplete:
            self.current_command = incomplete.cmd
            self.incomplete_line = incomplete.data
            if len(self.incomplete_line) > self.max_literal:
                self.fail(f"server line longer than {self.max_literal} bytes")
        except _Limit as exc:
            self.fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - every byte is untrusted; one reply never crashes us
            self.fail(f"unparseable server response ({type(exc).__name__}: {_short(exc)})")

    def _mid_line(self, d: bytes) -> bool:
        """True when `d` continues a line without ending it (and no literal is being read)."""
        if not self.incomplete_line:
            return False
        last = self._pieces[-1] if self._pieces else self.incomplete_line
        return CRLF not in d and not (last.endswith(b"\r") and d.startswith(b"\n"))

    def _handle_responses(
        self,
        data: bytes,
        line_handler: Callable[[bytes, Any], Any],
        current_cmd: Any = None,
    ) -> None:
        # aioimaplib's version recurses once per line and copies the tail each time; this is the
        # same state machine as a loop over offsets.
        buf, pos = data, 0
        while True:
            if pos >= len(buf):
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                buf, pos = current_cmd.append_literal_data(buf[pos:]), 0
                if current_cmd.wait_literal_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
                continue
            end = buf.find(CRLF, pos)
            if end < 0:
                raise aioimaplib.IncompleteRead(current_cmd, buf[pos:])
            line = buf[pos:end]
            pos = end + 2
            self._account(line)
            cmd = line_handler(line, current_cmd)
            size = _literal_size(line)
            if size is not None:
                if size > self.max_literal:
                    raise _Limit(
                        f"server announced a {size}-byte literal (limit {self.max_literal})"
                    )
                self._spend(size)
                if cmd is None:
                    cmd = aioimaplib.Command("NIL", "unused")
                cmd.begin_literal_data(size)
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None

    def _account(self, line: bytes) -> None:
        if len(line) > self.max_literal:
            raise _Limit(f"server line longer than {self.max_literal} bytes")
        if aioimaplib.tagged_status_response_re.match(line):
            self._spent = 0
        else:
            self._spend(len(line) + LINE_OVERHEAD)

    def _spend(self, size: int) -> None:
        self._spent += size
        if self._spent > self._budget:
            raise _Limit(f"server sent over {self._budget} bytes without completing a command")

    def _handle_line(self, line: bytes, current_cmd: Any) -> Any:
        if self.state == aioimaplib.CONNECTED:
            # aioimaplib starts a greeting task per line until the greeting is processed.
            if self._greeted:
                return None
            self._greeted = True
        elif current_cmd is None and self.on_size is not None and (m := _SIZE.match(line)):
            self.on_size(m.group(2), int(m.group(1)))
        return super()._handle_line(line, current_cmd)

    async def welcome(self, command: bytes) -> None:
        """Process the greeting; a refusal or garbage ends the session instead of a task error."""
        try:
            await super().welcome(command)
        except Exception as exc:  # noqa: BLE001 - the greeting is untrusted input
            self.fail(f"unusable greeting {command[:80]!r} ({type(exc).__name__})")

    def _continuation(self, line: bytes) -> None:
        """A `+` line: during AUTHENTICATE, answer it ourselves (aioimaplib only records it)."""
        command = self.pending_sync_command
        if self._sasl is None or command is None or command.name != "AUTHENTICATE":
            super()._continuation(line)
            return
        reply = self._sasl.answer(line[1:].strip())
        if reply is None:
            self.fail("server sent more SASL challenges than the mechanism has steps")
            return
        if self.transport is not None:
            self.transport.write(reply.encode("ascii") + CRLF)

    @aioimaplib.change_state  # type: ignore[untyped-decorator]
    async def authenticate(self, mechanism: str, response: str, *, sasl_ir: bool,
                           after_failure: str) -> Any:  # fmt: skip
        """AUTHENTICATE with a base64 initial response: on the command line when the server
        takes it (SASL-IR), else after its first `+`; an error challenge is answered with
        `after_failure` so the server ends the exchange. The challenge is kept in
        `sasl_challenge`."""
        self._sasl = _SaslExchange(None if sasl_ir else response, after_failure)
        args = (mechanism, response) if sasl_ir else (mechanism,)
        try:
            result = await self.execute(
                aioimaplib.Command("AUTHENTICATE", self.new_tag(), *args, loop=self.loop),
                scrub=response,
            )
        finally:
            self.sasl_challenge = self._sasl.challenge
            self._sasl = None
        if result.result == "OK":
            self.state = aioimaplib.AUTH
            # As aioimaplib's login does: servers announce what logged-in sessions may do
            # (UIDPLUS, MOVE ...) in the OK's CAPABILITY response code.
            for line in result.lines:
                if isinstance(line, bytes) and b"CAPABILITY" in line:
                    words = line.decode("ascii", "replace").replace("CAPABILITY", "")
                    self.capabilities |= set(words.strip("[] ").split("]")[0].split())
        return result

    # -- sending ------------------------------------------------------------------------------
    def send(self, line: str, scrub: str | None = None) -> None:
        """Write one command line; the debug log never shows a secret, quoted or not."""
        if log.isEnabledFor(logging.DEBUG):
            shown = line
            if scrub:
                for form in (quoted(scrub), scrub):
                    shown = shown.replace(form, "***")
            log.debug("sending: %s", shown)
        if self.transport is None:
            raise aioimaplib.Abort("not connected")
        self.transport.write(line.encode() + CRLF)


class _SaslExchange:
    """What to send at each `+` of one AUTHENTICATE: the initial response if it is still due,
    then one answer to the error challenge; None once the mechanism has no step left."""

    def __init__(self, initial: str | None, after_failure: str) -> None:
        self._initial = initial
        self._after_failure: str | None = after_failure
        self.challenge: bytes | None = None

    def answer(self, challenge: bytes) -> str | None:
        if self._initial is not None:
            initial, self._initial = self._initial, None
            return initial
        if self._after_failure is None:
            return None
        self.challenge = challenge[:4096]
        answer, self._after_failure = self._after_failure, None
        return answer


class _Limit(Exception):
    """A bound on what the server may send was passed."""


def _literal_size(line: bytes) -> int | None:
    """The size of a literal announced at the end of `line`, if any (bounded parsing)."""
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    digits = line[start + 1 : -1] if start >= 0 else b""
    if not digits.isdigit():
        return None
    if len(digits) > _MAX_DIGITS:
        raise _Limit(f"server announced a literal of {len(digits)} digits")
    return int(digits)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."
