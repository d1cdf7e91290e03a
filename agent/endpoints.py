"""Config -> the protocol layer's endpoints, with one TLS context per distinct trust setting.

A TLS context that loads the system trust store costs megabytes and milliseconds; hundreds of
accounts on one provider share a handful of settings (system store or a CA file, verify or not),
so contexts are made once per setting and shared.

An endpoint with an `auth:` section signs in with a bearer token from the agent's `Tokens`: the
SMTP and IMAP side of an account (or every mailbox of one Microsoft app) share a token source.
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path

from mailprobe.agent.config import Endpoint, ImapEndpointConfig, SmtpEndpointConfig
from mailprobe.agent.token_sources import oauth2_login
from mailprobe.agent.tokens import Tokens
from mailprobe.probes.imap_session import ImapEndpoint
from mailprobe.probes.sasl import OAuth2Login
from mailprobe.probes.smtp import SmtpEndpoint
from mailprobe.probes.tls import client_context


@lru_cache(maxsize=64)
def tls_context(ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    """The shared client context of one trust setting."""
    return client_context(ca_file, verify=verify)


def _oauth2(ep: Endpoint, username: str, tokens: Tokens | None) -> OAuth2Login | None:
    if ep.auth is None:
        return None
    return oauth2_login(ep.auth, username, tokens if tokens is not None else Tokens())


def smtp_endpoint(
    ep: SmtpEndpointConfig, tokens: Tokens | None = None, address: str | None = None
) -> SmtpEndpoint:
    """Config -> protocol-layer SMTP endpoint (with auth: signing in as username or address)."""
    username = ep.username or (address if ep.auth is not None else None)
    return SmtpEndpoint(
        host=ep.host,
        port=ep.port,
        security=ep.security,
        username=username,
        password=ep.password(),
        oauth2=_oauth2(ep, username or "", tokens),
        tls_context=tls_context(ep.ca_file, ep.verify),
        timeout=ep.timeout,
        source_address=ep.source_address,
        helo_name=ep.helo_name,
    )


def imap_endpoint(
    ep: ImapEndpointConfig, address: str, tokens: Tokens | None = None
) -> ImapEndpoint:
    """Config -> protocol-layer IMAP endpoint."""
    return ImapEndpoint(
        host=ep.host,
        port=ep.port,
        security=ep.security,
        username=ep.username or address,
        password=ep.password() or "",
        oauth2=_oauth2(ep, ep.username or address, tokens),
        tls_context=tls_context(ep.ca_file, ep.verify),
        timeout=ep.timeout,
        mailbox=ep.mailbox,
        source_address=ep.source_address,
    )
