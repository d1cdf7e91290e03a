"""Bearer-token sign-in over SASL: which mechanism to use and the bytes of each step.

Two mechanisms carry an OAuth2 access token; IMAP (AUTHENTICATE) and SMTP (AUTH) send the same
bytes, base64-encoded, each in its own way:

    XOAUTH2      user=U ^A auth=Bearer T ^A ^A                  (Google's, also Microsoft's)
    OAUTHBEARER  n,a=U, ^A host=H ^A port=P ^A auth=Bearer T ^A ^A     (RFC 7628)

A server that refuses the token does not say so at once: it sends a challenge, base64 of a JSON
status (`{"status":"invalid_token"}`, or Google's `{"status":"401","schemes":"bearer",...}`), and
the client answers with one more response so the server can finish with its failure: a single
^A for OAUTHBEARER (RFC 7628 section 3.2.3), an empty one for XOAUTH2. The status goes into the
error message; the token never does.

The protocol layer gets the token from a callable (`OAuth2Login.token`): where tokens come from,
how long they are kept and when they are refreshed is the agent's business.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from mailprobe.probes.errors import AuthError, Phase

Mechanism = Literal["oauthbearer", "xoauth2"]
Choice = Literal["auto", "oauthbearer", "xoauth2"]
#: Preferred first when the server offers both: OAUTHBEARER is the standard one.
PREFERENCE: tuple[Mechanism, ...] = ("oauthbearer", "xoauth2")
MAX_TOKEN = 16 * 1024  # Microsoft's are ~2 KiB; a larger "token" is not one
_MAX_STATUS = 300  # characters of a server's status kept for the message


class TokenError(AuthError):
    """No token to sign in with: the token source failed (issuer down, command failed ...).

    The message says why in words safe for a log; it never holds the token or a secret. Token
    sources raise it without knowing the protocol step; `bearer_token` sets the step that
    needed the token.
    """

    def __init__(
        self, message: str, *, phase: str = Phase.SMTP_AUTH, reply_code: int | None = None
    ) -> None:
        super().__init__(message, phase=phase, reply_code=reply_code)


def _ignore(_token: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class OAuth2Login:
    """How an endpoint signs in with a bearer token instead of a password.

    `token` returns a current access token or raises TokenError; `rejected` is told the token
    a server refused, so the next sign-in does not offer it again.
    """

    token: Callable[[], Awaitable[str]]
    mechanism: Choice = "auto"
    rejected: Callable[[str], None] = field(default=_ignore)


def choose(offered: Iterable[str], wanted: Choice) -> Mechanism | None:
    """The mechanism to use among those the server offers (names in any case), or None."""
    names = {name.lower() for name in offered}
    for mechanism in PREFERENCE:
        if mechanism in names and wanted in ("auto", mechanism):
            return mechanism
    return None


def _saslname(name: str) -> str:
    # RFC 5801 section 4: ',' and '=' in the authorization identity are escaped.
    return name.replace("=", "=3D").replace(",", "=2C")


def initial_response(
    mechanism: Mechanism, username: str, token: str, host: str, port: int
) -> bytes:
    """The client's first (and, on success, only) message, before base64."""
    if mechanism == "xoauth2":
        text = f"user={username}\x01auth=Bearer {token}\x01\x01"
    else:
        text = f"n,a={_saslname(username)},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    return text.encode()


def encode(data: bytes) -> str:
    """Base64 as SASL sends it."""
    return base64.b64encode(data).decode("ascii")


def after_failure(mechanism: Mechanism) -> bytes:
    """What the client sends after the server's error challenge, before base64."""
    return b"\x01" if mechanism == "oauthbearer" else b""


def describe_challenge(data: bytes) -> str:
    """The server's error challenge (base64 of a JSON status) as text for a log line.

    Server bytes are untrusted: anything undecodable is shown cut and escaped, never raised.
    """
    raw = data.strip()
    if not raw:
        return "no status"
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return f"undecodable status {_printable(repr(raw[:60]))}"
    try:
        status = json.loads(decoded)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return f"status {_printable(decoded.decode('utf-8', 'replace'))}"
    if not isinstance(status, dict):
        return f"status {_printable(json.dumps(status)[:_MAX_STATUS])}"
    parts = [f"{_printable(str(k))}={_printable(str(v))}" for k, v in list(status.items())[:8]]
    return _printable("status " + ", ".join(parts))


def _printable(text: str) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= _MAX_STATUS else clean[: _MAX_STATUS - 3] + "..."


async def bearer_token(login: OAuth2Login, phase: str, timeout: float) -> str:
    """A token from `login`, within `timeout`; TokenError (reason auth) when there is none."""
    try:
        token = await asyncio.wait_for(login.token(), timeout)
    except TokenError as exc:
        raise TokenError(str(exc), phase=phase) from exc
    except TimeoutError as exc:
        raise TokenError(
            f"the token source gave no token within {timeout:g}s", phase=phase
        ) from exc
    # A CR or LF would end the command line early and let a token source inject commands.
    if not token or len(token) > MAX_TOKEN or not token.isascii() or not token.isprintable():
        raise TokenError(
            "the token source gave no usable token (empty, too long, or not printable ASCII)",
            phase=phase,
        )
    if any(c.isspace() for c in token):
        raise TokenError("the token source gave a token with spaces in it", phase=phase)
    return token
