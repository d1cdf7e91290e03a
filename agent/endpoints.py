"""Config -> the protocol layer's endpoints, with one TLS context per distinct trust setting.

A TLS context that loads the system trust store costs megabytes and milliseconds; hundreds of
accounts on one provider share a handful of settings (system store or a CA file, verify or not),
so contexts are made once per setting and shared.
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path

from mailprobe.agent.config import ImapEndpointConfig, SmtpEndpointConfig
from mailprobe.probes.imap_session import ImapEndpoint
from mailprobe.probes.smtp import SmtpEndpoint
from mailprobe.probes.tls import client_context


@lru_cache(maxsize=64)
def tls_context(ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    """The shared client context of one trust setting."""
    return client_context(ca_file, verify=verify)


def smtp_endpoint(ep: SmtpEndpointConfig) -> SmtpEndpoint:
    """Config -> protocol-layer SMTP endpoint."""
    return SmtpEndpoint(
        host=ep.host,
        port=ep.port,
        security=ep.security,
        username=ep.username,
        password=ep.password(),
        tls_context=tls_context(ep.ca_file, ep.verify),
        timeout=ep.timeout,
        source_address=ep.source_address,
        helo_name=ep.helo_name,
    )


def imap_endpoint(ep: ImapEndpointConfig, address: str) -> ImapEndpoint:
    """Config -> protocol-layer IMAP endpoint."""
    return ImapEndpoint(
        host=ep.host,
        port=ep.port,
        security=ep.security,
        username=ep.username or address,
        password=ep.password() or "",
        tls_context=tls_context(ep.ca_file, ep.verify),
        timeout=ep.timeout,
        mailbox=ep.mailbox,
        source_address=ep.source_address,
    )
