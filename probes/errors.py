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
Both vocabularies are StrEnums: their members compare equal to, and format as, their label values.

The webmail probe has its own vocabulary, WEBMAIL_REASONS: dns, connect and tls as above (connect
also when the connection broke mid-exchange); timeout when a step or the whole load ran out of time
(in a browser: also when the ready selector never became visible); http_status when the final
response had the wrong status or the redirects looped or led nowhere; content when the expected
text was missing or the body exceeded its cap; login when the login form was absent or came back
after submitting; error for the unforeseen.
"""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    """Where a probe failed: a step of the submission, the mailbox, or the delivery itself."""

    SMTP_CONNECT = "smtp_connect"  # resolve, TCP, greeting, EHLO
    SMTP_TLS = "smtp_tls"  # STARTTLS or the implicit TLS handshake
    SMTP_AUTH = "smtp_auth"
    SMTP_SUBMIT = "smtp_submit"  # MAIL, RCPT, DATA up to the 250
    IMAP = "imap"  # the receiving mailbox could not be opened or watched
    DELIVERY = "delivery"  # accepted, never seen in the mailbox

    @property
    def submission(self) -> bool:
        """True for the phases of handing the probe to the sender's service."""
        return self in _SUBMISSION


_SUBMISSION = frozenset({Phase.SMTP_CONNECT, Phase.SMTP_TLS, Phase.SMTP_AUTH, Phase.SMTP_SUBMIT})


class Reason(enum.StrEnum):
    """Why a probe step failed."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    LOST = "lost"
    ERROR = "error"  # the unforeseen


class WebmailReason(enum.StrEnum):
    """Why a webmail load failed."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    CONTENT = "content"
    LOGIN = "login"
    TIMEOUT = "timeout"
    ERROR = "error"


REASONS = tuple(Reason)
PHASES = tuple(Phase)
WEBMAIL_REASONS = tuple(WebmailReason)


class ProbeError(Exception):
    """A probe step failed; `phase` says where, `reason` says why (fixed vocabulary)."""

    # A member of Reason (mail probes) or of WebmailReason (webmail loads); both are str.
    reason: str = Reason.ERROR

    def __init__(self, message: str, *, phase: str, reply_code: int | None = None) -> None:
        super().__init__(message)
        self.phase = phase  # a Phase for mail probes; the webmail probe names its own steps
        self.reply_code = reply_code


class ProbeTimeout(ProbeError, TimeoutError):
    """A network step did not finish within its configured timeout."""

    reason = Reason.TIMEOUT


class ResolveError(ProbeError, OSError):
    """The server's host name did not resolve."""

    reason = Reason.DNS


class ConnectError(ProbeError, ConnectionError):
    """The TCP connection was refused, reset or closed early."""

    reason = Reason.CONNECT


class TLSError(ProbeError, ConnectionError):
    """TLS negotiation or certificate verification failed."""

    reason = Reason.TLS


class AuthError(ProbeError, PermissionError):
    """The server refused the credentials."""

    reason = Reason.AUTH


class RejectedError(ProbeError):
    """The server refused the message (sender, recipient or content)."""

    reason = Reason.REJECTED


class ProtocolError(ProbeError):
    """The server said something the protocol does not allow, or not what we asked for."""

    reason = Reason.PROTOCOL


class HttpStatusError(ProbeError):
    """The final HTTP response had an unexpected status, or the redirects could not be followed."""

    reason = WebmailReason.HTTP_STATUS


class ContentError(ProbeError):
    """The page arrived but lacks what it must show, or is larger than the body cap."""

    reason = WebmailReason.CONTENT


class LoginError(ProbeError, PermissionError):
    """The login form was missing, or the service showed it again after the credentials."""

    reason = WebmailReason.LOGIN
