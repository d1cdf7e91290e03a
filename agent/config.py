"""YAML config -> typed, frozen config objects, validated at one boundary.

Every problem is collected and reported at once with its key path (`routes[1].interval: ...`);
the CLI prints them and exits 2. Secrets are never inline: passwords and the probe-signing secret
come from an environment variable or a file, read here so a missing one is a config error too.

Whatever the file holds, loading it raises ConfigError and nothing else: the text is checked
before YAML builds it (agent/config_yaml.py), fields are strict and bounded (agent/config_types.py:
`port: true` is not port 1, a duration is at most a year), and values that reach a protocol hold
no control characters.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from mailprobe.agent.budgets import DEFAULT as DEFAULT_BUDGET
from mailprobe.agent.config_auth import Auth
from mailprobe.agent.config_base import ConfigError, PositiveDuration
from mailprobe.agent.config_checks import (
    MIN_STEP,
    cross_problems,
    secret_problems,
    timing_problems,
    validation_problems,
)
from mailprobe.agent.config_fleet import FleetSettings, VantageSettings
from mailprobe.agent.config_types import (
    Commands,
    ConfigPath,
    Count,
    EnvName,
    Flag,
    HeloName,
    Host,
    IpAddress,
    Port,
    Text,
    shown,
)
from mailprobe.agent.config_yaml import check_values, parse_yaml, read_secret, read_text
from mailprobe.agent.durations import (
    Duration,
    RetentionDuration,
    format_duration,
)
from mailprobe.agent.logformat import LogFormat
from mailprobe.agent.presets import PROVIDERS, MissingSignIn, fill_account
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.webmail_config import (
    WebmailCheck,
    limit_problems,
    machine_problems,
    name_problems,
)
from mailprobe.agent.windows import MaintenanceWindows
from mailprobe.probes.delaysplit import ServicePatterns
from mailprobe.probes.message import SIGNED_HEADERS

RESERVED_ROUTE = "all"  # the label value of service-wide series
MIN_RETENTION = 400 * 86400.0
"""Ledger rows are kept at least this long: the report month and the rolling year before it."""
_ROUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
_HEADER_NAME = re.compile(r"X-[A-Za-z0-9-]{1,64}")
_PROBE_HEADERS = frozenset(h.lower() for h in SIGNED_HEADERS)
MIN_ANTIVIRUS_EVERY = 60.0
"""Test viruses at most once a minute: a provider's security team sees every one."""
_MAX_HEADER_VALUE = 900  # a header line stays under SMTP's 998-character limit
_LISTEN_HOST: TypeAdapter[str] = TypeAdapter(Host)
StrictName = Annotated[StrictStr, Field(max_length=64)]


def _step(seconds: float) -> float:
    if seconds < MIN_STEP:
        raise ValueError(f"must be at least {format_duration(MIN_STEP)}")
    return seconds


StepDuration = Annotated[Duration, AfterValidator(_step)]


def check_listen(listen: str) -> str:
    """`HOST:PORT` to serve HTTP on (port 0: any free port); ValueError saying what is wrong."""
    host, sep, port = listen.rpartition(":")
    ok = sep and host and port.isascii() and port.isdigit() and len(port) <= 5
    if not ok or not 0 <= int(port) <= 65535:
        raise ValueError(f"{shown(listen)} is not HOST:PORT")
    try:
        _LISTEN_HOST.validate_python(host.strip("[]"))
    except ValidationError:
        raise ValueError(f"{shown(listen)}: {shown(host)} is not a host name or IP") from None
    return listen


def _account_name(name: str) -> str:
    if not _ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            "an account name uses letters, digits, '_', '-', '.', '@', '+' (at most 64)"
        )
    return name


def _sign_in_needed(value: object) -> object:
    """A preset account's endpoint without auth or password: say what its provider takes."""
    if isinstance(value, MissingSignIn):
        raise ValueError(value.message())
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Endpoint(_Model):
    """An SMTP or IMAP server and how to log in."""

    host: Host
    port: Port
    security: Literal["starttls", "tls", "plain"] = "tls"
    username: Text | None = None
    password_env: EnvName | None = None
    password_file: ConfigPath | None = None
    ca_file: ConfigPath | None = None
    verify: Flag = True
    timeout: PositiveDuration = 30.0
    source_address: IpAddress | None = None
    # Sign in with an OAuth2 bearer token instead of the password (agent/config_auth.py).
    auth: Annotated[Auth | None, BeforeValidator(_sign_in_needed)] = None

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        if self.password_env and self.password_file:
            raise ValueError("password_file: give password_env or password_file, not both")
        if self.auth is not None and (self.password_env or self.password_file):
            raise ValueError("auth: give a password or an auth section, not both")
        if self.username and not (self.password_env or self.password_file or self.auth):
            raise ValueError("password_env: username needs password_env, password_file or auth")
        return self

    def password(self) -> str | None:
        """Read the password from its environment variable or file."""
        value = read_secret(self.password_env, self.password_file)
        if value is not None and any(c in value for c in "\0\r\n"):
            # They end an SMTP/IMAP command line; never say where (it is a secret).
            raise LookupError("the password contains a NUL, CR or LF character")
        return value


class SmtpEndpointConfig(Endpoint):
    """SMTP adds the name the agent gives itself in EHLO."""

    helo_name: HeloName | None = None  # default: this machine's host name


class ImapEndpointConfig(Endpoint):
    """IMAP adds the mailbox to watch, how to clean up after measuring, and the command budget."""

    mailbox: Annotated[Text, Field(min_length=1)] = "INBOX"
    idle: Flag = True
    poll_interval: StepDuration = 30.0
    # Move verified probes here instead of deleting them.
    move_to: Annotated[Text, Field(min_length=1)] | None = None
    # IMAP commands the watcher may spend on one awaited probe, and in any minute.
    max_commands_per_probe: Commands = DEFAULT_BUDGET.per_probe
    max_commands_per_minute: Commands = DEFAULT_BUDGET.per_minute
    # Probes filed as spam land here; default: the folder LIST marks \Junk. Presets fill it.
    junk_folder: Annotated[Text, Field(min_length=1)] | None = None
    watch_junk: Flag = True

    @model_validator(mode="after")
    def _junk_apart(self) -> Self:
        if self.junk_folder is not None and self.junk_folder in (self.mailbox, self.move_to):
            raise ValueError("junk_folder: must be another folder than mailbox and move_to")
        return self


class Account(_Model):
    """A mailbox the agent sends from and/or receives at."""

    address: Annotated[Text, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
    # A provider's preset fills smtp and imap (agent/presets.py); what is given here wins.
    provider: StrictStr | None = None
    smtp: SmtpEndpointConfig | None = None
    imap: ImapEndpointConfig | None = None
    # Hosts of this account's mail service in Received headers (globs, IPs, CIDRs); default:
    # the address's domain and its subdomains, plus the SMTP and IMAP hosts.
    service_hosts: tuple[Text, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return fill_account(data) if isinstance(data, dict) else data

    @field_validator("provider")
    @classmethod
    def _provider(cls, name: str | None) -> str | None:
        if name is not None and name not in PROVIDERS:
            raise ValueError(f"{shown(name)} is not one of: {', '.join(PROVIDERS)}")
        return name

    @field_validator("service_hosts")
    @classmethod
    def _service_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        ServicePatterns.parse(value)  # raises ValueError naming the bad entry
        return value


def _antivirus_every(seconds: float) -> float:
    if seconds < MIN_ANTIVIRUS_EVERY:
        raise ValueError(f"must be at least {format_duration(MIN_ANTIVIRUS_EVERY)}")
    return seconds


class AntivirusTest(_Model):
    """Now and then a probe with the EICAR test file attached (off unless a route sets it)."""

    every: Annotated[Duration, AfterValidator(_antivirus_every)] = 86400.0
    # Not delivered by then (refused later, quarantined, dropped): its own outcome, not_seen.
    deadline: PositiveDuration = 1800.0


RouteKind = Literal["internal", "external"]


class Route(_Model):
    """Probes from one account to another (the same account is a valid route)."""

    name: StrictName
    from_: StrictName = Field(alias="from")
    to: StrictName
    interval: StepDuration = 60.0
    jitter: Duration | None = None  # default: 10 % of the interval
    overdue_after: PositiveDuration = 3600.0
    lost_after: PositiveDuration = 86400.0
    # internal: both ends at the monitored provider; default: derived from the addresses' domains.
    kind: RouteKind | None = None
    antivirus: AntivirusTest | None = None

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
        if self.jitter is not None and self.jitter >= self.interval:
            # A spread as large as the interval would schedule probes back to back.
            raise ValueError("jitter: must be shorter than interval")
        return self

    @property
    def jitter_seconds(self) -> float:
        """Random spread added to each interval so routes do not march in step."""
        return self.interval * 0.1 if self.jitter is None else self.jitter


class AgentSettings(_Model):
    """The daemon itself."""

    listen: StrictStr = "127.0.0.1:9478"
    state_dir: ConfigPath = Path("/var/lib/mailprobe")
    secret_env: EnvName | None = None
    secret_file: ConfigPath | None = None
    max_concurrency: Count = Field(default=4, ge=1, le=256)
    shutdown_grace: PositiveDuration = 5.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "text"
    # TLS and basic auth for /metrics (exporter-toolkit format); `run --web.config.file` wins.
    web_config_file: Path | None = None
    # Ledger rows older than this are folded into totals; the report needs 13 months of rows.
    ledger_retention: RetentionDuration = 400 * 86400.0
    # Added to every probe, e.g. for a provider's filter rule, or a test server's hold rule.
    extra_headers: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    # Another agent's probe (same secret, other identity) is removed once older than this.
    foreign_probe_max_age: PositiveDuration = 6 * 3600.0
    # Where this agent probes from (agent/config_fleet.py); `run --vantage NAME` wins.
    vantage: VantageSettings = VantageSettings()

    @field_validator("extra_headers")
    @classmethod
    def _extra_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(
                    f"{shown(name)}: a header name is X- followed by letters, digits, '-'"
                )
            if name.lower() in _PROBE_HEADERS:
                raise ValueError(f"{name!r} is set by the agent itself")
            if not value.isprintable() or len(value) > _MAX_HEADER_VALUE:
                raise ValueError(
                    f"{name!r}: the value must be one printable line of at most "
                    f"{_MAX_HEADER_VALUE} characters"
                )
        return headers

    @field_validator("listen")
    @classmethod
    def _listen(cls, listen: str) -> str:
        return check_listen(listen)

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
    accounts: dict[Annotated[StrictStr, AfterValidator(_account_name)], Account]
    routes: list[Route] = Field(min_length=1)
    sla: SlaConfig = SlaConfig()
    maintenance: MaintenanceWindows = ()
    webmail: tuple[WebmailCheck, ...] = ()
    fleet: FleetSettings = FleetSettings()

    def route_kind(self, route: Route) -> RouteKind:
        """``internal`` or ``external``: as declared, else internal when both addresses share a
        mail domain (one provider at both ends)."""
        if route.kind is not None:
            return route.kind
        sender = self.accounts[route.from_].address.rpartition("@")[2].lower()
        recipient = self.accounts[route.to].address.rpartition("@")[2].lower()
        return "internal" if sender == recipient else "external"

    def route(self, name: str) -> Route:
        """The route called `name` (KeyError if none)."""
        for route in self.routes:
            if route.name == name:
                return route
        raise KeyError(name)


def parse_config(data: Any, *, check_secrets: bool = True) -> Config:
    """Validate already-loaded YAML data; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping with agent, accounts and routes"])
    try:
        check_values(data)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    problems: list[str] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += validation_problems(exc)
    problems += cross_problems(data) + name_problems(data.get("webmail"))
    if config is not None:
        problems += timing_problems(config) + limit_problems(config.webmail, config.sla)
    if problems or config is None:
        raise ConfigError(problems)
    if check_secrets:
        problems = secret_problems(config) + machine_problems(config.webmail)
        if problems:
            raise ConfigError(problems)
    return config


def load_config(path: Path, *, check_secrets: bool = True) -> Config:
    """Read and validate a YAML config file; ConfigError (and only that) when it is unusable."""
    try:
        data = parse_yaml(read_text(path))
    except ValueError as exc:
        raise ConfigError([str(exc)], path=path) from None
    try:
        return parse_config(data, check_secrets=check_secrets)
    except ConfigError as exc:
        raise ConfigError(exc.problems, path=path) from None
