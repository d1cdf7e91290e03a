"""The SMTP side of the embedded service: aiosmtpd on the running loop with submission rules.

aiosmtpd's `Controller` runs its own loop in a thread; the service instead runs aiosmtpd's
`SMTP` protocol on the caller's loop, so a test or `mailprobe demo` owns every task and socket.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["SmtpFront", "Submission", "SubmissionHandler", "received_header"]

_logger = logging.getLogger(__name__)

#: How long dropped sessions may take to close cleanly before their sockets are aborted.
_CLOSE_TIMEOUT = 2.0

#: Idle time after which aiosmtpd hangs up on a client, as Postfix's smtpd_timeout does.
_IDLE_TIMEOUT = 300.0


class _LoginDataNotice(logging.Filter):
    """Drops aiosmtpd 1.4's notice that `Session.login_data` is deprecated.

    aiosmtpd sets that attribute itself after every successful AUTH, so the notice is about
    aiosmtpd, not this code, and would otherwise be printed once per login.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


def _quiet_login_data_notice() -> None:
    aiosmtpd_log = logging.getLogger("mail.log")
    if not any(isinstance(f, _LoginDataNotice) for f in aiosmtpd_log.filters):
        aiosmtpd_log.addFilter(_LoginDataNotice())


@dataclass(frozen=True, slots=True)
class Submission:
    """A message accepted at end of DATA."""

    sender: str
    recipients: tuple[str, ...]  # user names, as the user table spells them
    content: bytes  # as submitted, below a Received header for the submission hop
    queue_id: str
    accepted_at: float  # unix seconds when 250 was decided


def received_header(
    *,
    from_: str | None,
    by: str,
    with_: str,
    queue_id: str,
    when: float,
    for_: str | None = None,
    envelope_from: str | None = None,
) -> bytes:
    """A Received header (CRLF-terminated) in the shape Postfix and Dovecot LMTP write it."""
    lines = [f"Received: from {from_}" if from_ else "Received:"]
    lines.append(f"\tby {by} (mailprobe embedded) with {with_} id {queue_id}")
    if envelope_from is not None:
        lines.append(f"\t(envelope-from <{envelope_from}>)")
    # Whole seconds, as real servers stamp them.
    stamp = format_datetime(datetime.fromtimestamp(int(when), UTC))
    lines.append(f"\tfor <{for_}>; {stamp}" if for_ else f"\t; {stamp}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


class SubmissionHandler:
    """aiosmtpd hooks: users log in, known recipients only, refusals on demand, mail handed on."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        hostname: str,
        refuse: Callable[[], bool],
        accept: Callable[[Submission], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._passwords = {name.encode(): password.encode() for name, password in users.items()}
        self._mailboxes = {name.lower(): name for name in users}
        self._hostname = hostname
        self._refuse = refuse
        self._accept = accept
        self._clock = clock

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd authenticator: the login and password must match the user table."""
        if isinstance(auth_data, LoginPassword):
            expected = self._passwords.get(auth_data.login)
            if expected is not None and hmac.compare_digest(expected, auth_data.password):
                return AuthResult(success=True, auth_data=auth_data.login.decode())
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(  # aiosmtpd finds hooks by this spelling
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> object:
        # aiosmtpd cannot require AUTH on an implicit-TLS port without warning that AUTH is
        # unencrypted (it only knows STARTTLS), so the rule is kept here for every port.
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        return MISSING

    async def handle_RCPT(  # aiosmtpd finds hooks by this spelling
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() not in self._mailboxes:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(  # aiosmtpd finds hooks by this spelling
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self._refuse():
            return "451 4.3.0 Temporary failure, try again later"
        now = self._clock()
        queue_id = uuid.uuid4().hex[:12].upper()
        recipients = tuple(self._mailboxes[address.lower()] for address in envelope.rcpt_tos)
        peer_ip = session.peer[0] if isinstance(session.peer, tuple) else "unknown"
        header = received_header(
            from_=f"{session.host_name or 'unknown'} ([{peer_ip}])",
            by=self._hostname,
            with_="ESMTPSA",
            queue_id=queue_id,
            when=now,
            # Postfix names the recipient only when there is exactly one.
            for_=recipients[0] if len(recipients) == 1 else None,
        )
        content = envelope.original_content or b""
        self._accept(
            Submission(
                sender=envelope.mail_from or "",
                recipients=recipients,
                content=header + content,
                queue_id=queue_id,
                accepted_at=now,
            )
        )
        return f"250 2.0.0 Ok: queued as {queue_id}"


class _TrackedSMTP(SMTP):
    """aiosmtpd's protocol, registering itself so its session can be dropped and awaited."""

    def __init__(self, front: SmtpFront, handler: SubmissionHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._front = front

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS with the TLS transport; registering twice is harmless.
        super().connection_made(transport)
        # aiosmtpd's own tests await this task; it is the whole client session.
        task = self._handler_coroutine
        if task is not None:
            self._front.register(self, task)

    def hang_up(self, *, abort: bool) -> None:
        """Say 421 and close, or drop the connection at once."""
        transport = self.transport
        if not isinstance(transport, asyncio.Transport):
            return
        if abort:
            transport.abort()
        elif not transport.is_closing():  # a closing TLS transport raises on write
            transport.write(b"421 4.3.2 Service shutting down, closing connection\r\n")
            transport.close()


class SmtpFront:
    """Runs aiosmtpd protocols for the submission ports and keeps every session in hand."""

    def __init__(
        self, handler: SubmissionHandler, *, hostname: str, ssl_context: ssl.SSLContext
    ) -> None:
        self._handler = handler
        self._hostname = hostname
        self._ssl_context = ssl_context
        self._sessions: dict[asyncio.Task[None], _TrackedSMTP] = {}
        _quiet_login_data_notice()

    @property
    def session_count(self) -> int:
        """Open SMTP sessions."""
        return len(self._sessions)

    async def start_submission(self, host: str, port: int) -> asyncio.Server:
        """Listen for submission: STARTTLS, then AUTH, both required."""
        loop = asyncio.get_running_loop()
        return await loop.create_server(partial(self._protocol, implicit_tls=False), host, port)

    async def start_implicit_tls(self, host: str, port: int) -> asyncio.Server:
        """Listen for submission over TLS from the first byte, then AUTH (required)."""
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            partial(self._protocol, implicit_tls=True), host, port, ssl=self._ssl_context
        )

    def register(self, protocol: _TrackedSMTP, task: asyncio.Task[None]) -> None:
        """Track a session until its task ends."""
        if task not in self._sessions:
            self._sessions[task] = protocol
            task.add_done_callback(self._forget)

    async def drop_sessions(self) -> None:
        """Close every open session with 421; abort those that do not close in time."""
        sessions = dict(self._sessions)
        if not sessions:
            return
        for protocol in sessions.values():
            protocol.hang_up(abort=False)
        _, pending = await asyncio.wait(sessions, timeout=_CLOSE_TIMEOUT)
        for task in pending:
            sessions[task].hang_up(abort=True)
        if pending:
            await asyncio.wait(pending)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._sessions.pop(task, None)
        # Retrieved here so a reset connection is not reported as a lost task exception.
        if not task.cancelled() and (exc := task.exception()) is not None:
            _logger.debug("SMTP session ended with an error: %r", exc)

    def _protocol(self, *, implicit_tls: bool) -> _TrackedSMTP:
        loop = asyncio.get_running_loop()
        common: dict[str, Any] = {
            "hostname": self._hostname,
            "ident": "mailprobe embedded ESMTP",
            "timeout": _IDLE_TIMEOUT,
            "authenticator": self._handler.authenticate,
            "loop": loop,
        }
        if implicit_tls:
            # AUTH is safe from the first byte; handle_MAIL enforces it (see there).
            return _TrackedSMTP(self, self._handler, auth_require_tls=False, **common)
        return _TrackedSMTP(
            self,
            self._handler,
            tls_context=self._ssl_context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            **common,
        )
