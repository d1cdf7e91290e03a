"""The `auth:` section of an SMTP or IMAP endpoint: sign in with an OAuth2 bearer token.

Without it an endpoint signs in with its password. With it, exactly one token source:

- `command`: a program that prints a token (bare, or JSON with `access_token` and `expires_in`).
  A list is the program and its arguments; text is split into them the way a shell splits
  words, but no shell ever runs it (give `[sh, -c, "..."]` for a pipeline).
- `file`: a file holding the token, read again whenever it changes.
- `microsoft`: the Microsoft identity platform's client-credentials grant (an app registration
  with a client secret or a certificate), through msal (`mailprobe[microsoft]`).
- `google`: a service account with domain-wide delegation, or an installed app's refresh
  token, through google-auth (`mailprobe[google]`).

Secrets (a client secret, a refresh token, a private key, a service account's key file) are
never written inline: each comes from `*_env` or `*_file`, like passwords. Whether they can be
read, and whether the library a flow needs is installed, is checked with the other secrets
(`problems()`), so check-config names both.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from mailprobe.agent.config_types import ConfigPath, EnvName, Text, shown
from mailprobe.agent.config_yaml import read_secret
from mailprobe.agent.durations import Duration, positive

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/"
GOOGLE_SCOPE = "https://mail.google.com/"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
#: The modules each built-in flow imports; the extra of the same name installs them.
EXTRAS = {"microsoft": ("msal", "requests"), "google": ("google.auth", "requests")}
#: Keys a secret would be written under inline, and where it goes instead.
_INLINE = {
    "client_secret": "client_secret_env or client_secret_file",
    "refresh_token": "refresh_token_env or refresh_token_file",
    "private_key": "private_key_env or private_key_file",
    "service_account": "service_account_file or service_account_env",
    "token": "the token's file, or a command that prints it",
}

PositiveDuration = Annotated[Duration, AfterValidator(positive)]


def _https(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{shown(url)} is not an https:// URL with a host")
    return url


HttpsUrl = Annotated[Text, AfterValidator(_https)]
NonEmpty = Annotated[Text, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, instead in _INLINE.items():
                if key in data and key not in cls.model_fields:
                    raise ValueError(f"{key}: secrets are never written inline: give {instead}")
        return data


def _pem_lines(text: str | None) -> list[str]:
    """The body lines of a PEM key: each is a secret on its own (a log line holds one at most)."""
    if not text:
        return []
    return [line.strip() for line in text.splitlines() if len(line.strip()) >= 16 and
            not line.startswith("-----")]  # fmt: skip


class MicrosoftFlow(_Model):
    """Client credentials at the Microsoft identity platform (Entra ID app registration)."""

    tenant: NonEmpty  # the directory (tenant) id or a verified domain, contoso.onmicrosoft.com
    client_id: NonEmpty
    client_secret_env: EnvName | None = None
    client_secret_file: ConfigPath | None = None
    # Or a certificate uploaded to the app registration, and its private key.
    certificate_file: ConfigPath | None = None
    private_key_env: EnvName | None = None
    private_key_file: ConfigPath | None = None
    authority: HttpsUrl | None = None  # default: https://login.microsoftonline.com/TENANT
    scope: NonEmpty = MICROSOFT_SCOPE
    ca_file: ConfigPath | None = None  # to verify the authority; default: the system store

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        secret = self.client_secret_env or self.client_secret_file
        key = self.private_key_env or self.private_key_file
        if self.client_secret_env and self.client_secret_file:
            raise ValueError("client_secret_file: give client_secret_env or _file, not both")
        if self.private_key_env and self.private_key_file:
            raise ValueError("private_key_file: give private_key_env or _file, not both")
        if secret and (key or self.certificate_file):
            raise ValueError("certificate_file: give a client secret or a certificate, not both")
        if not secret and not (key and self.certificate_file):
            what = "private_key_file" if self.certificate_file else "client_secret_file"
            raise ValueError(
                f"{what}: give client_secret_env/_file, or certificate_file with "
                "private_key_env/_file"
            )
        return self

    @property
    def authority_url(self) -> str:
        """The authority msal asks for tokens."""
        return self.authority or MICROSOFT_AUTHORITY + self.tenant

    def client_secret(self) -> str | None:
        """The client secret, if the app signs in with one."""
        return read_secret(self.client_secret_env, self.client_secret_file)

    def private_key(self) -> str | None:
        """The certificate's private key (PEM), if the app signs in with a certificate."""
        return read_secret(self.private_key_env, self.private_key_file, whole=True)

    def secrets(self) -> list[str]:
        """Every secret value, for the log scrubber."""
        return [s for s in (self.client_secret(),) if s] + _pem_lines(self.private_key())


class GoogleFlow(_Model):
    """A Google service account with domain-wide delegation, or an installed app's refresh token."""

    service_account_file: ConfigPath | None = None  # the JSON key (it holds the private key)
    service_account_env: EnvName | None = None  # or the JSON key's text
    client_id: NonEmpty | None = None
    client_secret_env: EnvName | None = None
    client_secret_file: ConfigPath | None = None
    refresh_token_env: EnvName | None = None
    refresh_token_file: ConfigPath | None = None
    token_uri: HttpsUrl | None = None  # default: the key file's, else Google's
    scope: NonEmpty = GOOGLE_SCOPE
    ca_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _one_flow(self) -> Self:
        account = self.service_account_file or self.service_account_env
        app = [self.client_id, self.client_secret_env or self.client_secret_file,
               self.refresh_token_env or self.refresh_token_file]  # fmt: skip
        pairs = (("service_account", self.service_account_env, self.service_account_file),
                 ("client_secret", self.client_secret_env, self.client_secret_file),
                 ("refresh_token", self.refresh_token_env, self.refresh_token_file))  # fmt: skip
        for name, env, file in pairs:
            if env and file:
                raise ValueError(f"{name}_file: give {name}_env or {name}_file, not both")
        if account and any(app):
            raise ValueError(
                "client_id: give a service account or an installed app's client_id, "
                "client secret and refresh token, not both"
            )
        if not account and not all(app):
            missing = ("client_id", "client_secret_file", "refresh_token_file")
            first = next(m for m, v in zip(missing, app, strict=True) if not v)
            raise ValueError(
                f"{first}: give service_account_file (or _env), or client_id with "
                "client_secret_env/_file and refresh_token_env/_file"
            )
        return self

    @property
    def service_account(self) -> bool:
        """True for a service account (domain-wide delegation), False for an installed app."""
        return bool(self.service_account_file or self.service_account_env)

    def key_text(self) -> str | None:
        """The service account's JSON key."""
        return read_secret(self.service_account_env, self.service_account_file, whole=True)

    def client_secret(self) -> str | None:
        """The installed app's client secret."""
        return read_secret(self.client_secret_env, self.client_secret_file)

    def refresh_token(self) -> str | None:
        """The installed app's refresh token."""
        return read_secret(self.refresh_token_env, self.refresh_token_file)

    def secrets(self) -> list[str]:
        """Every secret value, for the log scrubber."""
        if self.service_account:
            return _pem_lines(_json_private_key(self.key_text()))
        return [s for s in (self.client_secret(), self.refresh_token()) if s]


def _json_private_key(text: str | None) -> str | None:
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    key = data.get("private_key") if isinstance(data, dict) else None
    return key.replace("\\n", "\n") if isinstance(key, str) else None


def _command(value: object) -> object:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split into words: {exc}") from None
    if isinstance(value, list | tuple) and not value:
        raise ValueError("the command is empty")
    return value


class Auth(_Model):
    """How an endpoint gets the bearer token it signs in with."""

    command: Annotated[tuple[Text, ...], Field(max_length=256)] | None = None
    file: ConfigPath | None = None
    microsoft: MicrosoftFlow | None = None
    google: GoogleFlow | None = None
    # SASL mechanism: auto takes OAUTHBEARER when the server offers it, else XOAUTH2.
    mechanism: Literal["auto", "oauthbearer", "xoauth2"] = "auto"
    timeout: PositiveDuration = 20.0  # for the command to finish, or the issuer to answer
    # How long a token whose expiry its source does not tell is reused (command only).
    max_age: PositiveDuration | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_command(cls, data: Any) -> Any:
        if isinstance(data, dict) and "command" in data:
            data = {**data, "command": _command(data["command"])}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [k for k in ("command", "file", "microsoft", "google") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "command: give one token source: command, file, microsoft or google"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.max_age is not None and self.command is None:
            raise ValueError("max_age: only for a command (other sources say when tokens expire)")
        return self

    @property
    def kind(self) -> str:
        """Which source: command, file, microsoft or google."""
        return next(k for k in ("command", "file", "microsoft", "google") if getattr(self, k))

    def secrets(self) -> list[str]:
        """Every secret the source reads, for the log scrubber ([] when one cannot be read)."""
        flow = self.microsoft or self.google
        if flow is None:
            return []
        try:
            return flow.secrets()
        except LookupError:
            return []

    def problems(self) -> list[str]:
        """What keeps the source from working here: `key: message` lines (secrets, extras)."""
        problems: list[str] = []
        if self.command is not None and shutil.which(self.command[0]) is None:
            problems.append(f"command: program {shown(self.command[0])} not found")
        if self.microsoft or self.google:
            missing = [m for m in EXTRAS[self.kind] if not installed(m)]
            if missing:
                problems.append(f"{self.kind}: needs {', '.join(missing)}, not installed: "
                                f"pip install 'mailprobe[{self.kind}]'")  # fmt: skip
        try:
            problems += self._secret_problems()
        except LookupError as exc:
            problems.append(f"{self.kind}: {exc}")
        return problems

    def _secret_problems(self) -> list[str]:
        problems = []
        if self.microsoft is not None:
            ms = self.microsoft
            if ms.client_secret_env or ms.client_secret_file:
                if not ms.client_secret():
                    problems.append("microsoft.client_secret: empty")
            elif "PRIVATE KEY-----" not in (ms.private_key() or ""):
                problems.append("microsoft.private_key: not a PEM private key")
            problems += _file_problems("microsoft", ms.certificate_file, ms.ca_file)
        if self.google is not None:
            g = self.google
            if g.service_account and _json_private_key(g.key_text()) is None:
                problems.append("google.service_account: not a service account JSON key")
            if not g.service_account and not (g.client_secret() and g.refresh_token()):
                problems.append("google: the client secret or the refresh token is empty")
            problems += _file_problems("google", None, g.ca_file)
        return problems


def installed(module: str) -> bool:
    """True when `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _file_problems(where: str, certificate: Path | None, ca_file: Path | None) -> list[str]:
    problems = []
    if certificate is not None and not certificate.is_file():
        problems.append(f"{where}.certificate_file: {certificate} not found")
    if ca_file is not None and not ca_file.is_file():
        problems.append(f"{where}.ca_file: {ca_file} not found")
    return problems
