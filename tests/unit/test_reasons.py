"""Failure mapping: every library or OS error becomes one reason from the fixed vocabulary."""

from __future__ import annotations

import ssl

import aiosmtplib
import pytest

from mailprobe.probes.errors import PHASES, REASONS, ProbeError, ProbeTimeout
from mailprobe.probes.smtp import _map_error

# (error, the phase it surfaced in, the phase it is reported in, reason, reply code)
CASES = [
    (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"), "smtp_auth", "smtp_auth",
     "auth", 535),
    (aiosmtplib.SMTPRecipientRefused(550, "5.1.1 unknown", "x@y"), "smtp_submit", "smtp_submit",
     "rejected", 550),
    (aiosmtplib.SMTPSenderRefused(553, "5.7.1 not yours", "x@y"), "smtp_submit", "smtp_submit",
     "rejected", 553),
    (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), "smtp_submit", "smtp_submit", "rejected",
     451),
    (aiosmtplib.SMTPConnectResponseError(554, "no service"), "smtp_connect", "smtp_connect",
     "connect", 554),
    (aiosmtplib.SMTPServerDisconnected("gone"), "smtp_submit", "smtp_submit", "connect", None),
    (ConnectionResetError("reset"), "smtp_tls", "smtp_tls", "connect", None),
    (aiosmtplib.SMTPReadTimeoutError("slow"), "smtp_submit", "smtp_submit", "timeout", None),
    (TimeoutError(), "smtp_auth", "smtp_auth", "timeout", None),
    (ssl.SSLCertVerificationError("certificate verify failed"), "smtp_tls", "smtp_tls", "tls",
     None),
    (aiosmtplib.SMTPResponseException(502, "5.5.2 what?"), "smtp_submit", "smtp_submit",
     "protocol", 502),
    (aiosmtplib.SMTPNotSupported("no AUTH"), "smtp_auth", "smtp_auth", "protocol", None),
    (RuntimeError("surprise"), "smtp_submit", "smtp_submit", "error", None),
    # Reported in the phase the failure belongs to, whichever step it surfaced in.
    (aiosmtplib.SMTPAuthenticationError(535, "no"), "smtp_submit", "smtp_auth", "auth", 535),
    (ssl.SSLCertVerificationError("bad certificate"), "smtp_connect", "smtp_tls", "tls", None),
    (aiosmtplib.SMTPConnectResponseError(554, "go away"), "smtp_tls", "smtp_connect", "connect",
     554),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "surfaced", "phase", "reason", "code"), CASES)
def test_errors_map_to_fixed_reasons_in_the_phase_they_belong_to(
    exc: BaseException, surfaced: str, phase: str, reason: str, code: int | None
) -> None:
    """Each error maps to its phase and reason and keeps the server's reply code, never its text,
    as label."""
    mapped = _map_error(exc, surfaced)
    assert isinstance(mapped, ProbeError)
    assert (mapped.phase, mapped.reason) == (phase, reason)
    assert mapped.reason in REASONS
    assert mapped.phase in PHASES
    assert mapped.reply_code == code


def test_tls_errors_are_reported_in_the_tls_phase() -> None:
    """A certificate problem is a TLS failure even when it surfaces during connect."""
    mapped = _map_error(ssl.SSLError("handshake failure"), "smtp_connect")
    assert (mapped.phase, mapped.reason) == ("smtp_tls", "tls")


def test_timeouts_are_also_builtin_timeouts() -> None:
    """ProbeTimeout is a TimeoutError, so generic handlers still recognise it."""
    mapped = _map_error(TimeoutError(), "smtp_connect")
    assert isinstance(mapped, ProbeTimeout)
    assert isinstance(mapped, TimeoutError)


def test_wrapped_certificate_failure_is_tls() -> None:
    """aiosmtplib wraps a failed handshake in SMTPConnectError: the cause makes it tls."""
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "certificate has expired"
    wrapped = aiosmtplib.SMTPConnectError("Error connecting to x on port 465")
    wrapped.__cause__ = cause  # what `raise ... from cause` inside aiosmtplib leaves
    mapped = _map_error(wrapped, "smtp_tls")
    assert (mapped.phase, mapped.reason) == ("smtp_tls", "tls")
    assert "certificate has expired" in str(mapped)
