"""One IMAP connection on aioimaplib's protocol, with the gaps of aioimaplib 2.0.3 filled in:
connect, TLS, log in, select; the commands a watcher needs are in ``imap_session``.

We drive `IMAP4ClientProtocol` on a transport we open ourselves, so that plain, STARTTLS and implicit
TLS connections all report a lost connection at once, STARTTLS works (send the command, upgrade the
transport with loop.start_tls, re-read capabilities) and every command runs under our own timeout
and fails fast when the server says BYE or the connection drops.

Every byte from the server is untrusted: the protocol underneath bounds what it buffers
(probes/imap_protocol.py), numbers are parsed with a bound, text is decoded with errors
replaced, and whatever still goes wrong inside aioimaplib surfaces here as a ProtocolError.
Nothing but ProbeError leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from aioimaplib import aioimaplib

from mailprobe.probes import sasl
from mailprobe.probes.errors import (
    AuthError,
    ConnectError,
    ProbeError,
    ProbeTimeout,
    ProtocolError,
    ResolveError,
    TLSError,
)
from mailprobe.probes.imap_protocol import GuardedProtocol
from mailprobe.probes.sasl import OAuth2Login
from mailprobe.probes.tls import describe_tls_error, not_after

Security = Literal["starttls", "tls", "plain"]
T = TypeVar("T")
PHASE = "imap"

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
MAX_NUMBER = 2**32 - 1  # UIDs, UIDVALIDITY and UIDNEXT are 32-bit in IMAP (RFC 3501 section 4)


@dataclass(frozen=True, slots=True)
class ImapEndpoint:
    """Where and how to watch a mailbox."""

    host: str
    port: int
    security: Security
    username: str
    password: str
    tls_context: ssl.SSLContext
    timeout: float = 30.0
    mailbox: str = "INBOX"
    source_address: str | None = None
    max_literal: int = 1 << 20  # largest literal or line taken from the server; more: protocol
    oauth2: OAuth2Login | None = None  # sign in with a bearer token instead of the password


Removal = Literal["removed", "unsupported", "refused"]


class SessionLost(ConnectError):
    """The server closed the session (BYE, reset, restart)."""


def parse_number(text: bytes, what: str) -> int:
    """A 32-bit IMAP number from server bytes; ProtocolError when absurd (never int() on 5000 digits)."""
    if not text.isdigit() or len(text) > 10 or int(text) > MAX_NUMBER:
        raise ProtocolError(f"server sent an impossible {what}: {text[:24]!r}", phase=PHASE)
    return int(text)


def parse_internaldate(text: str) -> float | None:
    """INTERNALDATE (`22-Nov-2026 01:02:03 +0100`) as Unix seconds, None if garbled."""
    try:
        return datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z").timestamp()
    except ValueError:
        return None


def _last_text(lines: list[Any]) -> str:
    """The server's last response line as printable text, cut to fit a log line."""
    last = next((line for line in reversed(lines) if isinstance(line, bytes) and line), b"")
    text = last.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


class ImapConnection:
    """A logged-in, selected IMAP connection; every call raises ProbeError on trouble."""

    def __init__(self, endpoint: ImapEndpoint, clock: Callable[[], float] = time.time) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self._lost = asyncio.Event()
        self._protocol = GuardedProtocol(
            asyncio.get_running_loop(), self._on_lost, endpoint.max_literal
        )
        self._transport: asyncio.BaseTransport | None = None
        self.uidvalidity: int | None = None
        #: UIDNEXT the mailbox's SELECT reported: a message with this UID or above came after it.
        self.uidnext_at_select: int | None = None
        self.cert_not_after: float | None = None
        self.commands = 0  # IMAP commands sent in this session (for cost figures)

    # -- plumbing ---------------------------------------------------------------------------
    def _on_lost(self, _exc: Exception | None) -> None:
        self._lost.set()

    @property
    def alive(self) -> bool:
        """False once the server has closed the session."""
        return not self._lost.is_set()

    @property
    def capabilities(self) -> set[str]:
        """The server's current capability list (upper case)."""
        return {str(c).upper() for c in self._protocol.capabilities}

    def _gone(self, what: str) -> ProbeError:
        """Why the session is gone: the protocol's own verdict, else the server closed it."""
        if self._protocol.failure is not None:
            return self._protocol.failure
        return SessionLost(f"IMAP session closed by server during {what}", phase=PHASE)

    async def _call(self, what: str, step: Awaitable[T], timeout: float | None = None) -> T:
        """Await `step` under a timeout, failing fast when the connection drops."""
        limit = self.endpoint.timeout if timeout is None else timeout
        task: asyncio.Future[T] = asyncio.ensure_future(step)
        lost: asyncio.Future[Any] = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=limit, return_when="FIRST_COMPLETED")
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()  # also when we are cancelled: leave no command task behind
        if task in done:
            try:
                return task.result()
            except ProbeError:
                raise
            except (aioimaplib.Abort, aioimaplib.Error) as exc:
                raise ProtocolError(f"IMAP {what}: {exc}", phase=PHASE) from exc
            except aioimaplib.CommandTimeout as exc:
                raise ProbeTimeout(f"IMAP {what} timed out", phase=PHASE) from exc
            except ssl.SSLError as exc:
                raise TLSError(f"IMAP {what}: {describe_tls_error(exc)}", phase=PHASE) from exc
            except OSError as exc:
                raise ConnectError(f"IMAP {what}: {exc}", phase=PHASE) from exc
            except Exception as exc:
                # Raised inside aioimaplib by what the server sent (a CAPABILITY that is not
                # UTF-8, a missing response line): the server broke the protocol.
                raise ProtocolError(
                    f"IMAP {what}: unusable response ({type(exc).__name__}: {exc})"[:300],
                    phase=PHASE,
                ) from exc
        if self._lost.is_set():
            raise self._gone(what)
        raise ProbeTimeout(f"IMAP {what} timed out after {limit:g}s", phase=PHASE)

    async def _command(self, name: str, *args: str, prefix: str = "") -> Any:
        try:
            command = aioimaplib.Command(name, self._protocol.new_tag(), *args, prefix=prefix)
        except ValueError as exc:  # CR, LF or NUL in an argument (a mailbox name from config)
            raise ProtocolError(f"IMAP {name}: {exc}", phase=PHASE) from exc
        self.commands += 1
        response = await self._call(name, self._protocol.execute(command))
        self._check_bye(response.lines)
        return response

    def _check_bye(self, lines: list[Any]) -> None:
        for line in lines:
            if isinstance(line, bytes) and line.startswith(b"BYE"):
                self.close()
                raise SessionLost(f"server said {line[:80]!r}", phase=PHASE)

    # -- connection -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, negotiate TLS, log in and select the mailbox."""
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        use_ssl = ep.tls_context if ep.security == "tls" else None
        local = (ep.source_address, 0) if ep.source_address else None
        try:
            self._transport, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: self._protocol,
                    ep.host,
                    ep.port,
                    ssl=use_ssl,
                    server_hostname=ep.host if use_ssl else None,
                    local_addr=local,
                ),
                ep.timeout,
            )
        except TimeoutError as exc:
            raise ProbeTimeout(
                f"IMAP connect to {ep.host}:{ep.port} timed out", phase=PHASE
            ) from exc
        except socket.gaierror as exc:
            raise ResolveError(f"cannot resolve {ep.host}: {exc.strerror}", phase=PHASE) from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise TLSError(
                f"IMAP TLS with {ep.host}:{ep.port}: {describe_tls_error(exc)}", phase=PHASE
            ) from exc
        except OSError as exc:
            raise ConnectError(
                f"cannot connect to {ep.host}:{ep.port}: {exc}", phase=PHASE
            ) from exc
        except ValueError as exc:  # a host name no resolver takes (NUL byte, bad IDNA)
            raise ResolveError(f"cannot resolve {ep.host!r}: {exc}", phase=PHASE) from exc
        await self._call("greeting", self._protocol.wait("NONAUTH|AUTH"))
        if ep.security == "starttls":
            await self._starttls()
        if ep.security != "plain":
            self.cert_not_after = not_after(self._ssl_object())
        await self._login()
        await self._select()

    def _ssl_object(self) -> ssl.SSLObject | None:
        if self._transport is None:
            return None
        obj = self._transport.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    async def _starttls(self) -> None:
        if "STARTTLS" not in self.capabilities:
            raise TLSError("server does not offer STARTTLS", phase=PHASE)
        response = await self._command("STARTTLS")
        if response.result != "OK":
            raise TLSError(f"STARTTLS refused: {response.lines[-1:]}", phase=PHASE)
        loop = asyncio.get_running_loop()
        assert self._transport is not None  # noqa: S101 - set by open()
        try:
            new_transport = await asyncio.wait_for(
                loop.start_tls(
                    self._transport,  # type: ignore[arg-type]
                    self._protocol,
                    self.endpoint.tls_context,
                    server_hostname=self.endpoint.host,
                ),
                self.endpoint.timeout,
            )
        except TimeoutError as exc:
            raise ProbeTimeout("IMAP TLS handshake timed out", phase=PHASE) from exc
        except (ssl.SSLError, ssl.CertificateError, ConnectionError) as exc:
            raise TLSError(
                f"IMAP STARTTLS handshake: {describe_tls_error(exc)}", phase=PHASE
            ) from exc
        if new_transport is None:
            raise TLSError("STARTTLS upgrade returned no transport", phase=PHASE)
        self._transport = new_transport
        self._protocol.transport = new_transport
        self.commands += 1
        # Capabilities may differ after TLS (e.g. LOGINDISABLED goes away): re-read them.
        await self._call("CAPABILITY", self._protocol.capability())

    async def _login(self) -> None:
        ep = self.endpoint
        if ep.oauth2 is not None:
            await self._authenticate(ep.oauth2)
            return
        self.commands += 1
        response = await self._call("LOGIN", self._protocol.login(ep.username, ep.password))
        if response.result != "OK":
            raise AuthError(f"IMAP login refused for {ep.username}", phase=PHASE)

    async def _authenticate(self, login: OAuth2Login) -> None:
        """AUTHENTICATE with a bearer token, by the best mechanism the server offers."""
        ep = self.endpoint
        offered = [c[5:] for c in self.capabilities if c.startswith("AUTH=")]
        mechanism = sasl.choose(offered, login.mechanism)
        if mechanism is None:
            wanted = (
                "XOAUTH2 or OAUTHBEARER" if login.mechanism == "auto" else login.mechanism.upper()
            )
            raise AuthError(
                f"IMAP server offers no {wanted} sign-in (offers: "
                f"{' '.join(sorted(offered))[:200] or 'none'})",
                phase=PHASE,
            )
        token = await sasl.bearer_token(login, PHASE, ep.timeout)
        response = sasl.encode(
            sasl.initial_response(mechanism, ep.username, token, ep.host, ep.port)
        )
        self.commands += 1
        result = await self._call(
            "AUTHENTICATE",
            self._protocol.authenticate(
                mechanism.upper(), response, sasl_ir="SASL-IR" in self.capabilities,
                after_failure=sasl.encode(sasl.after_failure(mechanism)),
            ),
        )  # fmt: skip
        if result.result != "OK":
            login.rejected(token)
            said = _last_text(result.lines)
            challenge = self._protocol.sasl_challenge
            status = f"; {sasl.describe_challenge(challenge)}" if challenge is not None else ""
            raise AuthError(
                f"IMAP AUTHENTICATE {mechanism.upper()} refused for {ep.username}: "
                f"{result.result} {said}{status}",
                phase=PHASE,
            )

    async def _select(self) -> None:
        self.commands += 1
        response = await self._call("SELECT", self._protocol.select(self.endpoint.mailbox))
        if response.result != "OK":
            raise ProtocolError(f"cannot select {self.endpoint.mailbox}", phase=PHASE)
        blob = b" ".join(line for line in response.lines if isinstance(line, bytes))
        if m := _UIDVALIDITY.search(blob):
            self.uidvalidity = parse_number(m.group(1), "UIDVALIDITY")
        m = _UIDNEXT.search(blob)
        self.uidnext_at_select = parse_number(m.group(1), "UIDNEXT") if m else None

    def close(self) -> None:
        """Drop the connection at once (never reused after a timeout)."""
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]
        self._lost.set()

    async def logout(self) -> None:
        """Say goodbye politely, within a short bound, then close."""
        if self.alive:
            with contextlib.suppress(ProbeError):
                await self._call("LOGOUT", self._protocol.logout(), timeout=2.0)
        self.close()
