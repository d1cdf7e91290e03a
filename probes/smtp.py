"""Submit one probe over SMTP, timing each phase and mapping every failure to a fixed reason.

Phases: smtp_connect (resolve, TCP, greeting, EHLO), smtp_tls (STARTTLS or the implicit TLS
handshake), smtp_auth (AUTH), smtp_submit (MAIL, RCPT, DATA up to the server's 250). Every phase runs
under its own timeout; a connection that timed out is closed and never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import aiosmtplib

from mailprobe.probes import sasl
from mailprobe.probes.errors import (
    AuthError,
    ConnectError,
    ProbeError,
    ProbeTimeout,
    ProtocolError,
    RejectedError,
    ResolveError,
    TLSError,
)
from mailprobe.probes.sasl import OAuth2Login
from mailprobe.probes.tls import describe_tls_error, not_after, tls_cause

Security = Literal["starttls", "tls", "plain"]
T = TypeVar("T")
_QUEUED = re.compile(r"queued as ([0-9A-Za-z]+)")
#: RFC 4954 section 4: an AUTH command line may be 12288 octets; a longer initial response
#: goes after the server's empty 334 instead.
_MAX_AUTH_LINE = 12288


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """Where and how to submit."""

    host: str
    port: int
    security: Security
    username: str | None
    password: str | None
    tls_context: ssl.SSLContext
    timeout: float = 30.0
    source_address: str | None = None
    helo_name: str | None = None  # EHLO name; default: this machine's host name
    oauth2: OAuth2Login | None = None  # AUTH with a bearer token instead of the password


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """A successful submission: when the server took the message, and how long each phase took."""

    accepted_at: float
    reply_code: int
    reply: str
    queue_id: str | None
    phases: dict[str, float] = field(default_factory=dict)
    cert_not_after: float | None = None


async def _timed(phase: str, timeout: float, step: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(step, timeout)
    except TimeoutError as exc:
        raise ProbeTimeout(f"{phase} timed out after {timeout:g}s", phase=phase) from exc


async def _resolve(host: str, port: int, timeout: float) -> list[tuple[int, tuple[str, int]]]:
    loop = asyncio.get_running_loop()
    try:
        infos = await _timed(
            "smtp_connect",
            timeout,
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
        )
    except socket.gaierror as exc:
        raise ResolveError(f"cannot resolve {host}: {exc.strerror}", phase="smtp_connect") from exc
    return [(family, addr[:2]) for family, _, _, _, addr in infos]  # type: ignore[misc]


async def _open_socket(endpoint: SmtpEndpoint, deadline_s: float) -> socket.socket:
    """Resolve and connect a TCP socket, trying each address in turn."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for family, addr in await _resolve(endpoint.host, endpoint.port, deadline_s):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if endpoint.source_address:
                sock.bind((endpoint.source_address, 0))
            await _timed("smtp_connect", deadline_s, loop.sock_connect(sock, addr))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise ConnectError(
        f"cannot connect to {endpoint.host}:{endpoint.port}: {last}", phase="smtp_connect"
    ) from last


def _map_error(exc: BaseException, phase: str) -> ProbeError:
    """Map a library or OS error raised during `phase` to the probe vocabulary."""
    code = getattr(exc, "code", None)
    code = code if isinstance(code, int) and code > 0 else None
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ProbeError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return ProbeTimeout(f"{phase}: {text}", phase=phase)
    if tls_cause(exc) is not None:
        # aiosmtplib wraps a failed handshake (expired, wrong host, unknown CA) in
        # SMTPConnectError: the cause decides the reason, not the wrapper.
        return TLSError(f"{phase}: TLS: {describe_tls_error(exc)}", phase="smtp_tls")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return AuthError(f"{phase}: {text}", phase="smtp_auth", reply_code=code)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0] if exc.recipients else None
        return RejectedError(
            f"recipient refused: {text}", phase=phase, reply_code=first.code if first else None
        )
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        # The greeting was a refusal (e.g. 554): the server is reachable but not serving us.
        return ConnectError(f"{phase}: {text}", phase="smtp_connect", reply_code=code)
    if isinstance(
        exc,
        aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError,
    ):
        return RejectedError(f"{phase}: {text}", phase=phase, reply_code=code)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return ConnectError(f"{phase}: connection lost: {text}", phase=phase)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        reason_phase = "smtp_tls" if phase == "smtp_tls" else phase
        return ProtocolError(f"{phase}: not supported: {text}", phase=reason_phase)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return ProtocolError(f"{phase}: unexpected reply: {text}", phase=phase, reply_code=code)
    if isinstance(exc, aiosmtplib.SMTPException | OSError | ValueError):
        return ProtocolError(f"{phase}: {text}", phase=phase)
    return ProbeError(f"{phase}: {type(exc).__name__}: {text}", phase=phase)


async def _phase(
    phase: str, timeout: float, phases: dict[str, float], step: Callable[[], Awaitable[T]]
) -> T:
    start = time.perf_counter()
    try:
        result = await _timed(phase, timeout, step())
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise _map_error(exc, phase) from exc
    phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - start
    return result


async def _starttls(
    client: aiosmtplib.SMTP, endpoint: SmtpEndpoint, phases: dict[str, float]
) -> None:
    """STARTTLS; a refusal (454) or a connection that does not speak TLS after 220 is `tls`."""
    try:
        await _phase(
            "smtp_tls",
            endpoint.timeout,
            phases,
            lambda: client.starttls(tls_context=endpoint.tls_context),
        )
    except (ProbeTimeout, TLSError):
        raise
    except ProbeError as exc:
        raise TLSError(
            f"STARTTLS failed: {exc}", phase="smtp_tls", reply_code=exc.reply_code
        ) from exc


async def _oauth2(
    client: aiosmtplib.SMTP, endpoint: SmtpEndpoint, login: OAuth2Login, phases: dict[str, float]
) -> None:
    """AUTH with a bearer token; the token is fetched before the phase's clock starts."""
    phase = "smtp_auth"
    if client.is_ehlo_or_helo_needed:  # after STARTTLS: what the server offers now
        await _phase(phase, endpoint.timeout, phases, client.ehlo)
    offered = client.server_auth_methods if client.supports_extension("auth") else []
    mechanism = sasl.choose(offered, login.mechanism)
    if mechanism is None:
        wanted = "XOAUTH2 or OAUTHBEARER" if login.mechanism == "auto" else login.mechanism.upper()
        raise AuthError(
            f"SMTP server offers no {wanted} AUTH (offers: "
            f"{' '.join(offered).upper()[:200] or 'none'})",
            phase=phase,
        )
    username = endpoint.username or ""
    token = await sasl.bearer_token(login, phase, endpoint.timeout)
    raw = sasl.initial_response(mechanism, username, token, endpoint.host, endpoint.port)
    code, reply, status = await _phase(
        phase, endpoint.timeout, phases, lambda: _auth_exchange(client, mechanism, raw)
    )
    if code != 235:
        login.rejected(token)
        said = f"; {status}" if status else ""
        raise AuthError(
            f"SMTP AUTH {mechanism.upper()} refused for {username}: {code} {reply}{said}",
            phase=phase,
            reply_code=code,
        )


async def _auth_exchange(
    client: aiosmtplib.SMTP, mechanism: sasl.Mechanism, raw: bytes
) -> tuple[int, str, str | None]:
    """Run AUTH; the final reply code and text, and the server's error status if it sent one."""
    name = mechanism.upper().encode()
    encoded = sasl.encode(raw).encode()
    if len(encoded) + len(name) + 7 <= _MAX_AUTH_LINE:
        response = await client.execute_command(b"AUTH", name, encoded)
    else:
        response = await client.execute_command(b"AUTH", name)
        if response.code == 334 and not response.message.strip():
            response = await client.execute_command(encoded)
    status = None
    if response.code == 334:
        # The error challenge (RFC 7628 section 3.2.2): answer it so the server says no.
        status = sasl.describe_challenge(response.message.encode("ascii", "replace"))
        response = await client.execute_command(sasl.encode(sasl.after_failure(mechanism)).encode())
    text = "".join(c if c.isprintable() else "?" for c in response.message)[:200]
    return response.code, text, status


async def submit(
    endpoint: SmtpEndpoint,
    sender: str,
    recipient: str,
    message: bytes,
    *,
    clock: Callable[[], float] = time.time,
) -> SubmitResult:
    """Submit `message` once; return when the server accepted it or raise a ProbeError."""
    phases: dict[str, float] = {}
    timeout = endpoint.timeout
    start = time.perf_counter()
    sock = await _open_socket(endpoint, timeout)
    connected = False
    client = aiosmtplib.SMTP(
        hostname=endpoint.host,
        # aiosmtplib would otherwise ask getfqdn() in a thread, which stalls without DNS.
        local_hostname=endpoint.helo_name or socket.gethostname(),
        timeout=timeout,
        use_tls=endpoint.security == "tls",
        start_tls=False,
        tls_context=endpoint.tls_context,
        sock=sock,
    )
    try:
        if endpoint.security == "tls":
            phases["smtp_connect"] = time.perf_counter() - start
            # aiosmtplib does the implicit TLS handshake and reads the greeting in connect().
            await _phase("smtp_tls", timeout, phases, client.connect)
            connected = True
            await _phase("smtp_tls", timeout, phases, client.ehlo)
        else:
            await _phase("smtp_connect", timeout, phases, client.connect)
            connected = True
            await _phase("smtp_connect", timeout, phases, client.ehlo)
            phases["smtp_connect"] = time.perf_counter() - start
        if endpoint.security == "starttls":
            if not client.supports_extension("starttls"):
                raise TLSError("server does not offer STARTTLS", phase="smtp_tls")
            await _starttls(client, endpoint, phases)
        ssl_obj = client.get_transport_info("ssl_object")
        expiry = not_after(ssl_obj) if endpoint.security != "plain" else None
        if endpoint.oauth2 is not None:
            await _oauth2(client, endpoint, endpoint.oauth2, phases)
        elif endpoint.username:
            password = endpoint.password or ""
            username = endpoint.username
            await _phase("smtp_auth", timeout, phases, lambda: client.login(username, password))
        errors, reply = await _phase(
            "smtp_submit", timeout, phases, lambda: client.sendmail(sender, [recipient], message)
        )
        accepted_at = clock()
        if errors:
            code = next(iter(errors.values())).code
            raise RejectedError(
                f"recipient refused: {errors}", phase="smtp_submit", reply_code=code
            )
        queued = _QUEUED.search(reply)
        # The message is accepted; a rude goodbye does not change that.
        with contextlib.suppress(TimeoutError, aiosmtplib.SMTPException, OSError):
            await asyncio.wait_for(client.quit(), min(timeout, 5.0))
        return SubmitResult(
            accepted_at=accepted_at,
            reply_code=250,
            reply=reply,
            queue_id=queued.group(1) if queued else None,
            phases=phases,
            cert_not_after=expiry,
        )
    finally:
        client.close()
        if not connected:
            # Once connected the transport owns the socket and closes it after the TLS goodbye.
            sock.close()
