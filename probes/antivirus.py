"""The anti-virus test: the EICAR test file, a probe that carries it, and what a delivery shows.

EICAR's anti-virus test file is 68 harmless printable bytes that every scanner is built to
detect as if it were a virus, so that detection can be tested without risk. It is assembled
here at run time from two halves, so that this source file (and the package) is not itself
taken for an infected file by a scanner on the machine that installs it.

`build_eicar_probe` is the signed probe of `mailprobe.probes.message` with the file attached as
`eicar.com`; `inspect_delivery` tells, from a delivered message, whether the attachment is still
there (`intact`), was taken out (`stripped`), or was replaced by something else (`replaced`, e.g.
a notice of the provider's scanner).
"""

from __future__ import annotations

import email
import enum
from collections.abc import Mapping
from email.message import EmailMessage, Message
from email.policy import SMTP, default

from mailprobe.probes.message import ProbeStamp, build_probe

ATTACHMENT_NAME = "eicar.com"
_HALVES = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")


def eicar() -> bytes:
    """The EICAR anti-virus test file (68 bytes)."""
    return "".join(_HALVES).encode("ascii")


class Delivery(enum.StrEnum):
    """What a delivered test probe shows of its attachment."""

    INTACT = "intact"
    STRIPPED = "stripped"
    REPLACED = "replaced"


def build_eicar_probe(
    *,
    secret: bytes,
    route: str,
    sender: str,
    recipient: str,
    sent_at: float,
    probe_id: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    agent: str | None = None,
) -> tuple[ProbeStamp, bytes]:
    """A signed probe (as `build_probe` makes it) with the EICAR test file attached."""
    stamp, raw = build_probe(secret=secret, route=route, sender=sender, recipient=recipient,
                             sent_at=sent_at, probe_id=probe_id, extra_headers=extra_headers,
                             agent=agent)  # fmt: skip
    msg = email.message_from_bytes(raw, _class=EmailMessage, policy=default)
    assert isinstance(msg, EmailMessage)  # noqa: S101 - the policy's class
    msg.set_content(
        str(msg.get_content()).rstrip("\n")
        + "\nIt carries the EICAR anti-virus test file, a harmless test string every scanner "
        "detects, to test the provider's virus scanning.\n"
    )
    msg.add_attachment(eicar(), maintype="application", subtype="octet-stream",
                       filename=ATTACHMENT_NAME)  # fmt: skip
    return stamp, msg.as_bytes(policy=SMTP)


def _attachments(msg: Message) -> list[Message]:
    found = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_filename() is not None or part.get_content_disposition() == "attachment":
            found.append(part)
    return found


def inspect_delivery(raw: bytes) -> Delivery:
    """Whether the EICAR file is in this message as delivered (any part, any encoding)."""
    try:
        msg = email.message_from_bytes(raw, policy=default)
        parts = list(msg.walk())
        payloads = [p.get_payload(decode=True) for p in parts if not p.is_multipart()]
    except Exception:  # noqa: BLE001 - a mangled message is whatever it shows: not intact
        return Delivery.REPLACED
    marker = _HALVES[1].encode("ascii")
    if any(isinstance(data, bytes) and marker in data for data in payloads) or marker in raw:
        return Delivery.INTACT
    return Delivery.REPLACED if _attachments(msg) else Delivery.STRIPPED
