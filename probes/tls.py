"""TLS contexts for probe connections and certificate expiry from a live connection."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca_file: Path | None, *, verify: bool = True) -> ssl.SSLContext:
    """A client context: system trust (or `ca_file`), hostname checks unless verify is off."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def not_after(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> float | None:
    """The peer certificate's notAfter as Unix seconds, when the certificate was verified."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert or "notAfter" not in cert:
        return None
    return float(ssl.cert_time_to_seconds(str(cert["notAfter"])))


def tls_cause(exc: BaseException) -> ssl.SSLError | ssl.CertificateError | None:
    """The TLS error behind `exc`, following its cause and context (libraries wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_tls_error(exc: BaseException) -> str:
    """What went wrong in TLS, with the certificate verification error when there is one."""
    cause = tls_cause(exc) or exc
    verify = getattr(cause, "verify_message", None)
    if verify:
        return f"certificate verify failed: {verify}"
    return str(cause) or type(cause).__name__
