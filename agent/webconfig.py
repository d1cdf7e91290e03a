"""The web config file (`--web.config.file`): TLS and basic auth for /metrics and /healthz.

The format is the Prometheus exporter-toolkit's, so one file serves the agent and the exporters
beside it:

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hash: htpasswd -nBC 12 "" | tr -d ':\\n'

Keys of the toolkit that Python's ssl module cannot honour the same way (cipher_suites,
curve_preferences, client_allowed_sans, inline cert/key, RequestClientCert and
RequireAnyClientCert) are refused by name rather than silently ignored. The certificate and key
are read again when either file changes, as the toolkit does, so a renewed certificate needs no
restart; a renewal that does not load keeps the previous pair and is logged.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

ClientAuth = Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]
TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_VERIFY = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit keys with no faithful equivalent here, and why.
_UNSUPPORTED = {
    "tls_server_config.cipher_suites": "Python's ssl module picks the TLS 1.3 suites itself",
    "tls_server_config.curve_preferences": "Python's ssl module picks the curves itself",
    "tls_server_config.prefer_server_cipher_suites": "the server's order always applies",
    "tls_server_config.client_allowed_sans": "use a client CA that signs only allowed clients",
    "tls_server_config.cert": "give the certificate as cert_file",
    "tls_server_config.key": "give the key as key_file",
}
_CLIENT_AUTH_UNSUPPORTED = ("RequestClientCert", "RequireAnyClientCert")
# The response headers exporter-toolkit lets a web config set.
_HEADERS = frozenset(
    {
        "Content-Security-Policy",
        "X-Frame-Options",
        "X-Content-Type-Options",
        "X-XSS-Protection",
        "Strict-Transport-Security",
    }
)
_BCRYPT = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")


class WebConfigError(Exception):
    """The web config cannot be used; `problems` lists each as `key.path: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsServerConfig(_Model):
    """tls_server_config: the server certificate and who may connect."""

    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"


class HttpServerConfig(_Model):
    """http_server_config: extra response headers; http2 is accepted and ignored (HTTP/1.1)."""

    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name not in _HEADERS:
                raise ValueError(f"{name!r}: may be one of {', '.join(sorted(_HEADERS))}")
            if not value.isprintable():
                raise ValueError(f"{name!r}: the value must be one printable line")
        return headers


class _WebConfigFile(_Model):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig | None = None
    basic_auth_users: dict[str, str] | None = None

    @field_validator("basic_auth_users")
    @classmethod
    def _users(cls, users: dict[str, str] | None) -> dict[str, str] | None:
        for name, hashed in (users or {}).items():
            if not name or ":" in name:
                raise ValueError(f"{name!r}: a user name is not empty and has no ':'")
            if not _BCRYPT.fullmatch(hashed):
                raise ValueError(f"{name}: not a bcrypt hash ($2y$10$ followed by 53 characters)")
        return users


@dataclass(frozen=True)
class WebConfig:
    """A loaded, checked web config."""

    path: Path
    tls: TlsServerConfig | None
    users: Mapping[str, bytes]  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    _reloader: _CertReloader | None = field(default=None, repr=False, compare=False)

    @property
    def scheme(self) -> str:
        """https with TLS, http without."""
        return "https" if self.tls else "http"

    def server_context(self) -> ssl.SSLContext | None:
        """The SSLContext to serve with (None without TLS); it picks up renewed certificates."""
        return self._reloader.context if self._reloader is not None else None


def _tls_context(tls: TlsServerConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.maximum_version = _VERSIONS[tls.max_version]
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(tls.client_ca_file)
    ctx.verify_mode = _VERIFY[tls.client_auth_type]
    return ctx


class _CertReloader:
    """Serves with a context that is rebuilt when the certificate or key file changes.

    The check runs in the handshake (the SNI callback, called for every client hello): a stat
    of two files, and a new context for this and later connections only when one changed.
    """

    def __init__(self, tls: TlsServerConfig) -> None:
        self._tls = tls
        self._stamp = self._stat()
        self._current = _tls_context(tls)
        self.context = _tls_context(tls)
        self.context.sni_callback = self._on_hello

    def _stat(self) -> tuple[float, ...]:
        try:
            stats = [os.stat(p) for p in (self._tls.cert_file, self._tls.key_file)]
        except OSError:
            return ()
        return tuple(x for s in stats for x in (s.st_mtime_ns, s.st_ino, s.st_size))

    def _on_hello(self, conn: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        stamp = self._stat()
        if stamp and stamp != self._stamp:
            self._stamp = stamp
            try:
                self._current = _tls_context(self._tls)
                log.info("web config: loaded the renewed certificate %s", self._tls.cert_file)
            except (OSError, ValueError) as exc:
                log.warning("web config: keeping the previous certificate: %s", exc)
        conn.context = self._current


def _unsupported(data: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    tls = data.get("tls_server_config")
    if isinstance(tls, dict):
        for key in list(tls):
            why = _UNSUPPORTED.get(f"tls_server_config.{key}")
            if why is not None:
                problems.append(f"tls_server_config.{key}: not supported by mailprobe ({why})")
                del tls[key]
        if tls.get("client_auth_type") in _CLIENT_AUTH_UNSUPPORTED:
            problems.append(
                f"tls_server_config.client_auth_type: {tls['client_auth_type']} is not supported"
                " (a client certificate is verified or not asked for: use"
                " VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file)"
            )
            del tls["client_auth_type"]
    return problems


def _loc(parts: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _file_problems(tls: TlsServerConfig) -> list[str]:
    problems: list[str] = []
    wants = {"cert_file": "CERTIFICATE-----", "key_file": "PRIVATE KEY-----"}
    for key, marker in wants.items():
        path: Path = getattr(tls, key)
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            problems.append(f"tls_server_config.{key}: cannot read {path}: {exc.strerror}")
            continue
        if marker not in text:
            problems.append(f"tls_server_config.{key}: {path} holds no PEM {marker[:-5].lower()}")
    if tls.client_ca_file is not None and not tls.client_ca_file.is_file():
        problems.append(f"tls_server_config.client_ca_file: {tls.client_ca_file} not found")
    needs_ca = tls.client_auth_type != "NoClientCert"
    if needs_ca and tls.client_ca_file is None:
        problems.append(
            f"tls_server_config.client_ca_file: {tls.client_auth_type} needs client_ca_file"
        )
    if tls.client_ca_file is not None and not needs_ca:
        problems.append(
            "tls_server_config.client_auth_type: client_ca_file is set but client certificates"
            " are not asked for (set VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
        )
    if _VERSIONS[tls.min_version] > _VERSIONS[tls.max_version]:
        problems.append("tls_server_config.min_version: is above max_version")
    return problems


def _relative_to(tls: dict[str, Any], base: Path) -> None:
    for key in ("cert_file", "key_file", "client_ca_file"):
        if isinstance(tls.get(key), str) and tls[key]:
            tls[key] = str(base / tls[key])  # an absolute path stays as it is


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(f"{_loc(tuple(err['loc']))}: {msg}")
    return problems


def _load_tls(tls: TlsServerConfig) -> tuple[_CertReloader | None, list[str]]:
    try:
        return _CertReloader(tls), []
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return None, ["tls_server_config.key_file: is not the key of cert_file"]
        return None, [f"tls_server_config: cannot load the certificate: {exc.reason or exc}"]


def parse_web_config(data: Any, path: Path) -> WebConfig:
    """Validate loaded YAML; raise WebConfigError listing every problem."""
    if data is None:
        data = {}  # an empty file: plain HTTP, no auth, as with the toolkit
    if not isinstance(data, dict):
        raise WebConfigError(["(top level): expected a mapping"])
    tls_data = data.get("tls_server_config")
    if isinstance(tls_data, dict):
        _relative_to(tls_data, path.parent)
    problems = _unsupported(data)
    try:
        parsed = _WebConfigFile.model_validate(data)
    except ValidationError as exc:
        raise WebConfigError(problems + _validation_problems(exc)) from None
    reloader = None
    if parsed.tls_server_config is not None:
        problems += _file_problems(parsed.tls_server_config)
        if not problems:
            reloader, problems = _load_tls(parsed.tls_server_config)
    if problems:
        raise WebConfigError(problems)
    headers = parsed.http_server_config.headers if parsed.http_server_config else {}
    return WebConfig(
        path=path,
        tls=parsed.tls_server_config,
        users={u: h.encode() for u, h in (parsed.basic_auth_users or {}).items()},
        headers=tuple(headers.items()),
        _reloader=reloader,
    )


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web config file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise WebConfigError([f"cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise WebConfigError([f"not valid YAML at {where}"]) from None
    return parse_web_config(data, path)
