"""Probe errors: one base, each subclass also the builtin it resembles, each with a fixed reason.

    ProbeError
     +-- ProbeTimeout (TimeoutError)        reason "timeout"
     +-- ResolveError (OSError)             reason "dns"
     +-- ConnectError (ConnectionError)     reason "connect"
     +-- TLSError (ConnectionError)         reason "tls"
     +-- AuthError (PermissionError)        reason "auth"
     +-- RejectedError                      reason "rejected"
     +-- ProtocolError                      reason "protocol"

`reason` is a label value from a small fixed vocabulary; exception text never becomes a label.
"""

from __future__ import annotations

REASONS = ("dns", "connect", "tls", "auth", "rejected", "timeout", "protocol", "lost", "error")
PHASES = ("smtp_connect", "smtp_tls", "smtp_auth", "smtp_submit", "imap", "delivery")


class ProbeError(Exception):
    """A probe step failed; `phase` says where, `reason` says why (fixed vocabulary)."""

    reason = "error"

    def __init__(self, message: str, *, phase: str, reply_code: int | None = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.reply_code = reply_code


class ProbeTimeout(ProbeError, TimeoutError):
    """A network step did not finish within its configured timeout."""

    reason = "timeout"


class ResolveError(ProbeError, OSError):
    """The server's host name did not resolve."""

    reason = "dns"


class ConnectError(ProbeError, ConnectionError):
    """The TCP connection was refused, reset or closed early."""

    reason = "connect"


class TLSError(ProbeError, ConnectionError):
    """TLS negotiation or certificate verification failed."""

    reason = "tls"


class AuthError(ProbeError, PermissionError):
    """The server refused the credentials."""

    reason = "auth"


class RejectedError(ProbeError):
    """The server refused the message (sender, recipient or content)."""

    reason = "rejected"


class ProtocolError(ProbeError):
    """The server said something the protocol does not allow, or not what we asked for."""

    reason = "protocol"
