"""Probe errors: one base, each subclass also the builtin it resembles, each with a fixed reason.

    ProbeError
     +-- ProbeTimeout (TimeoutError)        reason "timeout"
     +-- ResolveError (OSError)             reason "dns"
     +-- ConnectError (ConnectionError)     reason "connect"
     +-- TLSError (ConnectionError)         reason "tls"
     +-- AuthError (PermissionError)        reason "auth"
     +-- RejectedError                      reason "rejected"
     +-- ProtocolError                      reason "protocol"
     +-- HttpStatusError                    reason "http_status"   (webmail)
     +-- ContentError                       reason "content"       (webmail)
     +-- LoginError (PermissionError)       reason "login"         (webmail)

`reason` is a label value from a small fixed vocabulary; exception text never becomes a label.
The webmail probe has its own vocabulary, WEBMAIL_REASONS: dns, connect and tls as above (connect
also when the connection broke mid-exchange); timeout when a step or the whole load ran out of time
(in a browser: also when the ready selector never became visible); http_status when the final
response had the wrong status or the redirects looped or led nowhere; content when the expected
text was missing or the body exceeded its cap; login when the login form was absent or came back
after submitting; error for the unforeseen.
"""

from __future__ import annotations

REASONS = ("dns", "connect", "tls", "auth", "rejected", "timeout", "protocol", "lost", "error")
PHASES = ("smtp_connect", "smtp_tls", "smtp_auth", "smtp_submit", "imap", "delivery")
WEBMAIL_REASONS = ("dns", "connect", "tls", "http_status", "content", "login", "timeout", "error")


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


class HttpStatusError(ProbeError):
    """The final HTTP response had an unexpected status, or the redirects could not be followed."""

    reason = "http_status"


class ContentError(ProbeError):
    """The page arrived but lacks what it must show, or is larger than the body cap."""

    reason = "content"


class LoginError(ProbeError, PermissionError):
    """The login form was missing, or the service showed it again after the credentials."""

    reason = "login"
