"""How `mailprobe report --prometheus` gets into a query API that is not open to all.

Long-term stores sit behind authentication more often than not: Prometheus with its
``--web.config.file`` (TLS, basic auth), Thanos or VictoriaMetrics behind a proxy that wants a
bearer token, Mimir with its tenant header ``X-Scope-OrgID``. Secrets come from files only (a
command line is visible to every user of the machine in ``ps``); other headers are given as they
are.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailprobe.agent.config_yaml import read_secret

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110)
_RESERVED = frozenset({"authorization", "host", "content-length"})


class AccessError(ValueError):
    """An access option cannot be used; the message names the option."""


@dataclass(frozen=True, slots=True)
class PrometheusAccess:
    """Headers, credentials and trust for the query API."""

    headers: dict[str, str] = field(default_factory=dict)
    basic: tuple[str, str] | None = None
    ca_file: Path | None = None

    def tls_context(self) -> ssl.SSLContext | bool:
        """What httpx verifies the server with: the system's trust store, or the given CA."""
        if self.ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise AccessError(f"--prometheus-ca-file {self.ca_file}: {exc}") from None


def _secret(option: str, path: Path) -> str:
    try:
        value = read_secret(None, path)
    except LookupError as exc:
        raise AccessError(f"{option}: {exc}") from None
    if not value:
        raise AccessError(f"{option} {path}: the file is empty")
    return value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _TOKEN.fullmatch(name):
        raise AccessError(f"--prometheus-header {text!r}: give it as 'Name: value'")
    if name.lower() in _RESERVED:
        hint = " (use --prometheus-bearer-file or --prometheus-user)" if name.lower() == (
            "authorization") else ""  # fmt: skip
        raise AccessError(f"--prometheus-header {name}: not settable this way{hint}")
    if any(c in value for c in "\r\n\0"):
        raise AccessError(f"--prometheus-header {name}: the value holds a line break")
    return name, value


def prometheus_access(
    headers: Sequence[str] = (),
    bearer_file: Path | None = None,
    user: str | None = None,
    password_file: Path | None = None,
    ca_file: Path | None = None,
) -> PrometheusAccess:
    """The access the options describe; AccessError naming the option that cannot be used."""
    fields = dict(_header(h) for h in headers)
    if bearer_file is not None and (user is not None or password_file is not None):
        raise AccessError("give --prometheus-bearer-file or --prometheus-user, not both")
    if (user is None) != (password_file is None):
        raise AccessError("--prometheus-user and --prometheus-password-file go together")
    basic = None
    if user is not None and password_file is not None:
        basic = (user, _secret("--prometheus-password-file", password_file))
    if bearer_file is not None:
        fields["Authorization"] = f"Bearer {_secret('--prometheus-bearer-file', bearer_file)}"
    if ca_file is not None and not ca_file.is_file():
        raise AccessError(f"--prometheus-ca-file {ca_file}: no such file")
    return PrometheusAccess(fields, basic, ca_file)


__all__ = ["AccessError", "PrometheusAccess", "prometheus_access"]
