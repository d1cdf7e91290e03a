"""A throwaway certificate authority and server certificate for the embedded mail service."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

import trustme

__all__ = ["ThrowawayCA"]


class ThrowawayCA:
    """A fresh CA, a server certificate it signed, and the CA certificate as a PEM file.

    The CA lives only as long as the object: `cleanup()` removes the directory holding
    `ca_file`. Nothing here is fit for anything but tests and demos.
    """

    def __init__(self, hostnames: Iterable[str]) -> None:
        names = list(dict.fromkeys(hostnames))
        if not names:
            raise ValueError("a server certificate needs at least one host name")
        self._ca = trustme.CA(organization_name="mailprobe embedded test CA")
        self._server_cert = self._ca.issue_cert(*names)
        self._dir = Path(tempfile.mkdtemp(prefix="mailprobe-embedded-"))
        self.ca_file = self._dir / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        """An SSL context that serves the certificate; it asks nothing of clients."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this CA and checks the host name."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def cleanup(self) -> None:
        """Remove the directory holding the CA file."""
        shutil.rmtree(self._dir, ignore_errors=True)
