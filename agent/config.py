"""YAML config -> typed, frozen config objects, validated at one boundary.

Every problem is collected and reported at once with its key path (`routes[1].interval: ...`);
the CLI prints them and exits 2. Secrets are never inline: passwords and the probe-signing secret
come from an environment variable or a file, read here so a missing one is a config error too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mailprobe.agent.durations import Duration, format_duration, positive
from mailprobe.agent.logformat import LogFormat
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import MaintenanceWindows
from mailprobe.probes.delaysplit import ServicePatterns
from mailprobe.probes.message import SIGNED_HEADERS

RESERVED_ROUTE = "all"  # the label value of service-wide series
MIN_RETENTION = 400 * 86400.0
"""Ledger rows are kept at least this long: the report month and the rolling year before it."""
_KEYED = re.compile(r"^([a-z_]+): ")
_ROUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_WINDOW_TAGS = frozenset({"one_off", "recurring"})
_HEADER_NAME = re.compile(r"X-[A-Za-z0-9-]{1,64}")
_PROBE_HEADERS = frozenset(h.lower() for h in SIGNED_HEADERS)

PositiveDuration = Annotated[Duration, AfterValidator(positive)]


class ConfigError(Exception):
    """The config cannot be used; `problems` lists each as `key.path: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretRef(_Model):
    """Where a secret lives: an environment variable or a file (first line, stripped)."""

    env: str | None = None
    file: Path | None = None


class Endpoint(_Model):
    """An SMTP or IMAP server and how to log in."""

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    security: Literal["starttls", "tls", "plain"] = "tls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    verify: bool = True
    timeout: PositiveDuration = 30.0
    source_address: str | None = None

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        if self.password_env and self.password_file:
            raise ValueError("password_file: give password_env or password_file, not both")
        if self.username and not (self.password_env or self.password_file):
            raise ValueError("password_env: username needs password_env or password_file")
        return self

    def password(self) -> str | None:
        """Read the password from its environment variable or file."""
        return read_secret(self.password_env, self.password_file)


class ImapEndpointConfig(Endpoint):
    """IMAP adds the mailbox to watch and how to clean up after measuring."""

    mailbox: str = "INBOX"
    idle: bool = True
    poll_interval: PositiveDuration = 30.0
    move_to: str | None = None  # move verified probes here instead of deleting them


class Account(_Model):
    """A mailbox the agent sends from and/or receives at."""

    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    smtp: Endpoint | None = None
    imap: ImapEndpointConfig | None = None
    # Hosts of this account's mail service in Received headers (globs, IPs, CIDRs); default:
    # the address's domain and its subdomains, plus the SMTP and IMAP hosts.
    service_hosts: tuple[str, ...] = ()

    @field_validator("service_hosts")
    @classmethod
    def _service_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        ServicePatterns.parse(value)  # raises ValueError naming the bad entry
        return value


class Route(_Model):
    """Probes from one account to another (the same account is a valid route)."""

    name: str
    from_: str = Field(alias="from")
    to: str
    interval: PositiveDuration = 60.0
    jitter: Duration | None = None  # default: 10 % of the interval
    overdue_after: PositiveDuration = 3600.0
    lost_after: PositiveDuration = 86400.0

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _ROUTE_NAME.fullmatch(name):
            raise ValueError("use letters, digits, '_', '-', '.' (at most 64)")
        if name == RESERVED_ROUTE:
            raise ValueError(f"{RESERVED_ROUTE!r} is reserved for service-wide series")
        return name

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.lost_after < self.overdue_after:
            raise ValueError("lost_after: must not be shorter than overdue_after")
        return self

    @property
    def jitter_seconds(self) -> float:
        """Random spread added to each interval so routes do not march in step."""
        return self.interval * 0.1 if self.jitter is None else self.jitter


class AgentSettings(_Model):
    """The daemon itself."""

    listen: str = "127.0.0.1:9478"
    state_dir: Path = Path("/var/lib/mailprobe")
    secret_env: str | None = None
    secret_file: Path | None = None
    max_concurrency: int = Field(default=4, ge=1, le=256)
    shutdown_grace: PositiveDuration = 5.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "text"
    # TLS and basic auth for /metrics (exporter-toolkit format); `run --web.config.file` wins.
    web_config_file: Path | None = None
    # Ledger rows older than this are folded into totals; the report needs 13 months of rows.
    ledger_retention: PositiveDuration = 400 * 86400.0
    # Added to every probe, e.g. for a provider's filter rule, or a test server's hold rule.
    extra_headers: dict[str, str] = Field(default_factory=dict)
    # Another agent's probe (same secret, other identity) is removed once older than this.
    foreign_probe_max_age: PositiveDuration = 6 * 3600.0

    @field_validator("extra_headers")
    @classmethod
    def _extra_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r}: a header name is X- followed by letters, digits, '-'")
            if name.lower() in _PROBE_HEADERS:
                raise ValueError(f"{name!r} is set by the agent itself")
            if not value.isprintable():
                raise ValueError(f"{name!r}: the value must be one printable line")
        return headers

    @field_validator("listen")
    @classmethod
    def _listen(cls, listen: str) -> str:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{listen!r} is not HOST:PORT")
        return listen

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not (self.secret_env or self.secret_file):
            raise ValueError(
                "secret_file: set secret_file or secret_env (the probe-signing secret)"
            )
        if self.secret_env and self.secret_file:
            raise ValueError("secret_file: give secret_env or secret_file, not both")
        if self.ledger_retention < MIN_RETENTION:
            raise ValueError(
                f"ledger_retention: must be at least {format_duration(MIN_RETENTION)} "
                "(the report month and the rolling year before it)"
            )
        return self

    @property
    def listen_host(self) -> str:
        """Host part of `listen`, brackets stripped for IPv6."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        """Port part of `listen`."""
        return int(self.listen.rpartition(":")[2])

    def secret(self) -> bytes:
        """The probe-signing secret."""
        value = read_secret(self.secret_env, self.secret_file)
        assert value is not None  # noqa: S101 - guaranteed by _check and load_config
        return value.encode()


class Config(_Model):
    """The whole config file."""

    agent: AgentSettings
    accounts: dict[str, Account]
    routes: list[Route] = Field(min_length=1)
    sla: SlaConfig = SlaConfig()
    maintenance: MaintenanceWindows = ()

    def route(self, name: str) -> Route:
        """The route called `name` (KeyError if none)."""
        for route in self.routes:
            if route.name == name:
                return route
        raise KeyError(name)


def _cross_problems(data: dict[str, Any]) -> list[str]:
    """Checks across sections, run on the raw data so they are reported with field errors."""
    accounts = data.get("accounts")
    routes = data.get("routes")
    if not isinstance(accounts, dict) or not isinstance(routes, list):
        return []
    problems: list[str] = []
    seen: set[str] = set()
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        where = f"routes[{i}]"
        name = route.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{where}.name: duplicate route name {name!r}")
            seen.add(name)
        for key, proto in (("from", "smtp"), ("to", "imap")):
            ref = route.get(key)
            if not isinstance(ref, str):
                continue
            account = accounts.get(ref)
            if account is None:
                problems.append(f"{where}.{key}: no account named {ref!r}")
            elif isinstance(account, dict) and account.get(proto) is None:
                problems.append(f"{where}.{key}: account {ref!r} has no {proto} section")
    return problems + _maintenance_problems(data.get("maintenance"), seen)


def _maintenance_problems(windows: Any, routes: set[str]) -> list[str]:
    """A window limited to a route that does not exist would silently never apply."""
    if not isinstance(windows, list):
        return []
    problems: list[str] = []
    for i, window in enumerate(windows):
        names = window.get("routes") if isinstance(window, dict) else None
        if not isinstance(names, list):
            continue
        problems += [
            f"maintenance[{i}].routes: no route named {name!r}"
            for name in names
            if isinstance(name, str) and name not in routes
        ]
    return problems


def _timing_problems(config: Config) -> list[str]:
    """The confirmation retry must land within confirm_within, or a glitch is never cleared."""
    problems: list[str] = []
    sla = config.sla
    for name, account in config.accounts.items():
        if account.smtp is None:
            continue
        if sla.confirm_within <= sla.confirm_retry + account.smtp.timeout:
            problems.append(
                f"sla.confirm_within: must be longer than confirm_retry + accounts.{name}.smtp"
                f".timeout ({format_duration(sla.confirm_retry + account.smtp.timeout)})"
            )
    return problems


def read_secret(env: str | None, file: Path | None) -> str | None:
    """A secret from an environment variable or the first line of a file."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise LookupError(f"environment variable {env} is not set")
        return value
    if file:
        try:
            lines = file.read_text().splitlines()
            return lines[0].strip() if lines else ""
        except OSError as exc:
            raise LookupError(f"cannot read {file}: {exc.strerror}") from exc
    return None


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("from" if part == "from_" else str(part))
    return out or "(top level)"


def _secret_problems(config: Config) -> list[str]:
    """Check every secret reference resolves now, not at the first probe."""
    problems: list[str] = []
    try:
        if not config.agent.secret():
            problems.append("agent.secret: the probe-signing secret is empty")
    except LookupError as exc:
        problems.append(f"agent.secret: {exc}")
    for name, account in config.accounts.items():
        for proto in ("smtp", "imap"):
            endpoint = getattr(account, proto)
            if endpoint is None:
                continue
            try:
                endpoint.password()
            except LookupError as exc:
                problems.append(f"accounts.{name}.{proto}.password: {exc}")
            if endpoint.ca_file is not None and not endpoint.ca_file.is_file():
                problems.append(f"accounts.{name}.{proto}.ca_file: {endpoint.ca_file} not found")
    return problems


def parse_config(data: Any, *, check_secrets: bool = True) -> Config:
    """Validate already-loaded YAML data; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping with agent, accounts and routes"])
    problems: list[str] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            # A maintenance window's kind is a union tag, not a key the user wrote.
            loc = tuple(err["loc"])
            if loc[:1] == ("maintenance",) and len(loc) > 2 and loc[2] in _WINDOW_TAGS:
                loc = loc[:2] + loc[3:]
            if err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif (key := _KEYED.match(msg)) is not None:
                # A model-level check names the key it is about: attach it to the path.
                loc, msg = (*loc, key.group(1)), msg[key.end() :]
            problems.append(f"{_loc(loc)}: {msg}")
    problems += _cross_problems(data)
    if config is not None:
        problems += _timing_problems(config)
    if problems or config is None:
        raise ConfigError(problems)
    if check_secrets:
        problems = _secret_problems(config)
        if problems:
            raise ConfigError(problems)
    return config


def load_config(path: Path, *, check_secrets: bool = True) -> Config:
    """Read and validate a YAML config file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(
            [f"{path}: not valid YAML at {where}: {getattr(exc, 'problem', exc)}"]
        ) from None
    return parse_config(data, check_secrets=check_secrets)
