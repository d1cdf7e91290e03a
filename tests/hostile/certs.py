"""Server certificates for the TLS failure matrix, made with trustme (no files to commit)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trustme

HOST = "127.0.0.1"
#: Which certificate the server shows, and what the client must then say.
CASES = ("expired", "wrong_host", "unknown_ca")


@dataclass(frozen=True)
class Certs:
    """A CA the client trusts (in `ca_file`) and server contexts for each case."""

    ca_file: Path
    good: ssl.SSLContext
    bad: dict[str, ssl.SSLContext]


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def make_certs(directory: Path) -> Certs:
    """Write the trusted CA to `directory` and build one server context per case."""
    trusted, stranger = trustme.CA(), trustme.CA()
    ca_file = directory / "ca.pem"
    trusted.cert_pem.write_to_path(str(ca_file))
    expired = trusted.issue_cert(
        HOST,
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2021, 1, 1, tzinfo=UTC),
    )
    return Certs(
        ca_file=ca_file,
        good=_server_context(trusted.issue_cert(HOST, "localhost")),
        bad={
            "expired": _server_context(expired),
            "wrong_host": _server_context(trusted.issue_cert("mail.elsewhere.test")),
            "unknown_ca": _server_context(stranger.issue_cert(HOST, "localhost")),
        },
    )


#: What the verification error says for each case (OpenSSL's wording).
VERIFY_TEXT = {
    "expired": "certificate has expired",
    "wrong_host": "IP address mismatch",
    "unknown_ca": "unable to get local issuer certificate",
}
