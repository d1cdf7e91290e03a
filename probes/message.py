"""Build and verify signed probe messages.

A probe carries its id, route, send time, the sending agent's instance identity and the vantage
point it was sent from in headers, and an HMAC-SHA256 over them keyed with the agent's secret.
Only a message whose signature verifies is ever counted, moved or deleted.

Signatures: `v3=` covers id, send time, route, `X-Mailprobe-Agent` and `X-Mailprobe-Vantage`;
`v2=` the same without a vantage. Probes from before the agent identity (`v1=`, no agent header)
still verify; their stamp has `agent=None`, and watchers treat them as their own, so probes in
flight across an upgrade are still matched. Each version vouches for exactly its own headers: a
vantage header added to a v2 probe, or removed from a v3 one, makes it no probe at all.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

HEADER_ID = "X-Mailprobe-Id"
HEADER_ROUTE = "X-Mailprobe-Route"
HEADER_SENT = "X-Mailprobe-Sent"
HEADER_SIGNATURE = "X-Mailprobe-Signature"
HEADER_AGENT = "X-Mailprobe-Agent"
HEADER_VANTAGE = "X-Mailprobe-Vantage"
#: Every header the agent sets on a probe (extra_headers may not name them).
SIGNED_HEADERS = (HEADER_ID, HEADER_ROUTE, HEADER_SENT, HEADER_SIGNATURE, HEADER_AGENT,
                  HEADER_VANTAGE)  # fmt: skip
_REQUIRED = (HEADER_ID, HEADER_ROUTE, HEADER_SENT, HEADER_SIGNATURE)

_ID = re.compile(r"[0-9a-f]{32}")
_ROUTE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
AGENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
VANTAGE_NAME = AGENT_ID
"""A vantage point's name: the same safe token (a header value and a label value)."""
_SENT = re.compile(r"\d{1,12}\.\d{6}")
_SIG = re.compile(r"v([123])=([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class ProbeStamp:
    """What a verified probe says about itself."""

    probe_id: str
    route: str
    sent_at: float
    agent: str | None = None  # the sending agent's instance identity; None for a v1 probe
    vantage: str | None = None  # the vantage point it was sent from; None before v3


def new_probe_id() -> str:
    """A fresh random probe id (128 bits, hex)."""
    return secrets.token_hex(16)


def _format_sent(sent_at: float) -> str:
    return f"{sent_at:.6f}"


def sign(
    secret: bytes,
    probe_id: str,
    route: str,
    sent: str,
    agent: str | None = None,
    vantage: str | None = None,
) -> str:
    """The signature header value for these fields (v3 with an agent identity and a vantage, v2
    with an identity alone, else v1)."""
    if agent is None:
        if vantage is not None:
            raise ValueError("a vantage is signed together with an agent identity")
        payload = f"v1\n{probe_id}\n{sent}\n{route}".encode()
        return "v1=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()
    if vantage is None:
        payload = f"v2\n{probe_id}\n{sent}\n{route}\n{agent}".encode()
        return "v2=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()
    payload = f"v3\n{probe_id}\n{sent}\n{route}\n{agent}\n{vantage}".encode()
    return "v3=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()


def build_probe(
    *,
    secret: bytes,
    route: str,
    sender: str,
    recipient: str,
    sent_at: float,
    probe_id: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    agent: str | None = None,
    vantage: str | None = None,
) -> tuple[ProbeStamp, bytes]:
    """Return the stamp and the wire bytes (CRLF line ends) of a new signed probe message.

    `agent` is the sending agent's instance identity (agent/identity.py); without it the probe
    is a v1 probe that every watcher with the secret takes as its own. `vantage` is the name of
    the vantage point the agent probes from (it needs `agent`).
    """
    if not _ROUTE.fullmatch(route):
        raise ValueError(f"route name {route!r} is not a probe-safe token")
    if agent is not None and not AGENT_ID.fullmatch(agent):
        raise ValueError(f"agent identity {agent!r} is not a probe-safe token")
    if vantage is not None and (agent is None or not VANTAGE_NAME.fullmatch(vantage)):
        raise ValueError(f"vantage {vantage!r} is not a probe-safe token with an agent identity")
    pid = probe_id or new_probe_id()
    if not _ID.fullmatch(pid):
        raise ValueError("probe id must be 32 lowercase hex digits")
    sent = _format_sent(sent_at)
    when = datetime.fromtimestamp(sent_at, tz=UTC)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"mailprobe {route} {pid[:8]} {when.isoformat(timespec='milliseconds')}"
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(idstring=pid[:16], domain=sender.rpartition("@")[2] or None)
    msg[HEADER_ID] = pid
    msg[HEADER_ROUTE] = route
    msg[HEADER_SENT] = sent
    if agent is not None:
        msg[HEADER_AGENT] = agent
    if vantage is not None:
        msg[HEADER_VANTAGE] = vantage
    msg[HEADER_SIGNATURE] = sign(secret, pid, route, sent, agent, vantage)
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        "This is an automated delivery probe sent by mailprobe.\n"
        f"Route: {route}\nProbe: {pid}\nSent: {when.isoformat()}\n"
        "It is removed automatically once measured; it needs no action.\n"
    )
    return ProbeStamp(pid, route, float(sent), agent, vantage), msg.as_bytes(policy=SMTP)


def verify_probe(raw: bytes, secret: bytes) -> ProbeStamp | None:
    """Return the stamp of a genuine probe, or None for anything else (never raises on input)."""
    try:
        headers = BytesHeaderParser().parsebytes(raw)
    except Exception:  # noqa: BLE001 - hostile input must never escape as an error
        return None
    return verify_headers(headers, secret)


def verify_headers(headers: Message, secret: bytes) -> ProbeStamp | None:
    """Verify an already parsed header block."""
    values: dict[str, str] = {}
    for name in _REQUIRED:
        found = headers.get_all(name)
        # A probe has each header exactly once; duplicates are a forgery attempt.
        if not found or len(found) != 1:
            return None
        values[name] = str(found[0]).strip()
    pid, route, sent, sig = (values[h] for h in _REQUIRED)
    agents, vantages = headers.get_all(HEADER_AGENT) or [], headers.get_all(HEADER_VANTAGE) or []
    if len(agents) > 1 or len(vantages) > 1:
        return None
    agent = str(agents[0]).strip() if agents else None
    vantage = str(vantages[0]).strip() if vantages else None
    if not (_ID.fullmatch(pid) and _ROUTE.fullmatch(route) and _SENT.fullmatch(sent)):
        return None
    if agent is not None and not AGENT_ID.fullmatch(agent):
        return None
    if vantage is not None and not VANTAGE_NAME.fullmatch(vantage):
        return None
    # The version must match the headers: a v1 signature never vouches for an agent header,
    # a v2 one never for a vantage header.
    version = "3" if vantage is not None else "2" if agent is not None else "1"
    signed = _SIG.fullmatch(sig)
    if signed is None or signed.group(1) != version or (vantage is not None and agent is None):
        return None  # a vantage is only ever signed together with an agent identity
    if not hmac.compare_digest(sig, sign(secret, pid, route, sent, agent, vantage)):
        return None
    return ProbeStamp(pid, route, float(sent), agent, vantage)
