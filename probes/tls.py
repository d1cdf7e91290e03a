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
