"""The `webmail:` config section: typed, frozen webmail checks, validated at one boundary.

`Config.webmail` holds the entries; parse_config adds the problems found here (duplicate names,
a timeout not past the contract's limit, and with secrets checked: passwords, CA files, the
browser) to its own, so every problem is reported at once with its key path
(`webmail[0].login: ...`). `parse_webmail` validates the list on its own the same way.
`WebmailCheck.target()` turns an entry into the probe's input, reading the password;
`failure_screenshot(state_dir)` is where a browser check keeps its last failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailprobe.agent.config_base import ConfigError, PositiveDuration
from mailprobe.agent.config_types import shown
from mailprobe.agent.config_yaml import read_secret
from mailprobe.agent.durations import format_duration
from mailprobe.agent.sla import SlaConfig
from mailprobe.probes.webmail import (
    BROWSER_EXTRA_HINT,
    DEFAULT_CHROMIUM,
    DEFAULT_MAX_BODY,
    BrowserLogin,
    BrowserTarget,
    FormLogin,
    HttpTarget,
)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEYED = re.compile(r"^([a-z_]+): ")
_HTTP_ONLY = ("max_redirects", "max_body_bytes")
_BROWSER_ONLY = ("ready_selector", "chromium")
_FIELDS = ("username_field", "password_field")
_SELECTORS = ("username_selector", "password_selector", "submit_selector")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WebmailLogin(_Model):
    """How to log in: the account, and the form's field names (http) or selectors (browser)."""

    username: str = Field(min_length=1)
    password_env: str | None = None
    password_file: Path | None = None
    username_field: str | None = Field(default=None, min_length=1)
    password_field: str | None = Field(default=None, min_length=1)
    username_selector: str | None = Field(default=None, min_length=1)
    password_selector: str | None = Field(default=None, min_length=1)
    submit_selector: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        if self.password_env and self.password_file:
            raise ValueError("password_file: give password_env or password_file, not both")
        if not (self.password_env or self.password_file):
            raise ValueError("password_env: give password_env or password_file")
        return self

    def password(self) -> str:
        """The password from its environment variable or file."""
        return read_secret(self.password_env, self.password_file) or ""


class WebmailCheck(_Model):
    """One webmail page to load now and then, and what it must show."""

    name: str
    url: str
    mode: Literal["http", "browser"] = "http"
    interval: PositiveDuration = 300.0
    timeout: PositiveDuration = 30.0
    limit: PositiveDuration = 10.0  # the contract: webmail opens within 10 s
    expected_status: int | None = Field(default=None, ge=100, le=599)
    expected_text: str | None = Field(default=None, min_length=1)
    ready_selector: str | None = Field(default=None, min_length=1)
    login: WebmailLogin | None = None
    verify: bool = True
    ca_file: Path | None = None
    max_redirects: int = Field(default=10, ge=0, le=50)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, ge=1024)
    chromium: Path = Path(DEFAULT_CHROMIUM)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError("use letters, digits, '_', '-', '.' (at most 64)")
        return name

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
        return url

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.timeout <= self.limit:
            raise ValueError(
                f"timeout: must be longer than limit ({format_duration(self.limit)}), or a slow "
                "load is cut off before it can count as over the limit"
            )
        if self.mode == "http":
            self._http_only()
        else:
            self._browser_only()
        return self

    def _http_only(self) -> None:
        for key in _BROWSER_ONLY:
            if key in self.model_fields_set:
                raise ValueError(f"{key}: only for mode browser")
        if self.login is not None:
            given = [key for key in _SELECTORS if getattr(self.login, key) is not None]
            if given:
                raise ValueError(
                    f"login: {', '.join(given)} only for mode browser; mode http posts the "
                    "login form by its field names (username_field, password_field)"
                )

    def _browser_only(self) -> None:
        for key in _HTTP_ONLY:
            if key in self.model_fields_set:
                raise ValueError(f"{key}: only for mode http")
        if self.login is None:
            return
        given = [key for key in _FIELDS if getattr(self.login, key) is not None]
        if given:
            raise ValueError(
                f"login: {', '.join(given)} only for mode http; mode browser fills the form by "
                "username_selector, password_selector (and submit_selector)"
            )
        if self.login.username_selector is None or self.login.password_selector is None:
            raise ValueError("login: mode browser needs username_selector and password_selector")
        if self.ready_selector is None:
            raise ValueError(
                "ready_selector: a browser login needs the selector of an element the inbox "
                "shows (e.g. the message list)"
            )

    def target(self) -> HttpTarget | BrowserTarget:
        """The probe's input for this check (reads the login password)."""
        login = self.login
        password = login.password() if login is not None else ""
        if self.mode == "http":
            return HttpTarget(
                url=self.url,
                timeout=self.timeout,
                limit=self.limit,
                expected_status=self.expected_status,
                expected_text=self.expected_text,
                login=None
                if login is None
                else FormLogin(
                    username=login.username,
                    password=password,
                    username_field=login.username_field or "username",
                    password_field=login.password_field or "password",
                ),
                max_redirects=self.max_redirects,
                max_body_bytes=self.max_body_bytes,
                verify=self.verify,
                ca_file=self.ca_file,
            )
        browser_login = None
        if login is not None and login.username_selector and login.password_selector:
            browser_login = BrowserLogin(
                username=login.username,
                password=password,
                username_selector=login.username_selector,
                password_selector=login.password_selector,
                submit_selector=login.submit_selector,
            )
        return BrowserTarget(
            url=self.url,
            timeout=self.timeout,
            limit=self.limit,
            expected_status=self.expected_status,
            expected_text=self.expected_text,
            ready_selector=self.ready_selector,
            login=browser_login,
            verify=self.verify,
            ca_file=self.ca_file,
            chromium=str(self.chromium),
        )

    def failure_screenshot(self, state_dir: Path) -> Path | None:
        """Where a browser check keeps the screenshot of its last failure (None in http mode)."""
        return (
            state_dir / "webmail" / f"{self.name}-last-failure.png"
            if self.mode == "browser"
            else None
        )


class _Section(_Model):
    webmail: tuple[WebmailCheck, ...] = ()


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def name_problems(data: Any) -> list[str]:
    """Duplicate names in the raw `webmail:` list (a name is a label value: it must be unique)."""
    problems: list[str] = []
    names: set[str] = set()
    for i, entry in enumerate(data if isinstance(data, list) else []):
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in names:
                problems.append(f"webmail[{i}].name: duplicate webmail name {shown(name)}")
            names.add(name)
    return problems


def limit_problems(checks: tuple[WebmailCheck, ...], sla: SlaConfig) -> list[str]:
    """A timeout that does not reach past the contract's limit would cut slow loads off unjudged."""
    bound = sla.webmail.limit
    return [
        f"webmail[{i}].timeout: must be longer than sla.webmail.limit ({format_duration(bound)})"
        for i, check in enumerate(checks)
        if check.timeout <= bound
    ]


def machine_problems(checks: tuple[WebmailCheck, ...]) -> list[str]:
    """Secrets, files and the browser: what must hold on this machine, checked now."""
    problems: list[str] = []
    for i, check in enumerate(checks):
        where = f"webmail[{i}]"
        if check.login is not None:
            try:
                check.login.password()
            except LookupError as exc:
                problems.append(f"{where}.login.password: {exc}")
        if check.ca_file is not None and not check.ca_file.is_file():
            problems.append(f"{where}.ca_file: {check.ca_file} not found")
        if check.mode != "browser":
            continue
        if importlib.util.find_spec("playwright") is None:
            problems.append(f"{where}.mode: {BROWSER_EXTRA_HINT}")
        if not (check.chromium.is_file() and os.access(check.chromium, os.X_OK)):
            problems.append(
                f"{where}.chromium: {check.chromium} is not an executable "
                "(Debian: apt-get install chromium)"
            )
        if check.ca_file is not None and shutil.which("certutil") is None:
            problems.append(
                f"{where}.ca_file: mode browser needs certutil to trust it "
                "(Debian: apt-get install libnss3-tools)"
            )
    return problems


def parse_webmail(data: Any, *, check_secrets: bool = True) -> tuple[WebmailCheck, ...]:
    """Validate the `webmail:` list (None: no checks); raise ConfigError listing every problem."""
    if data is None:
        return ()
    problems: list[str] = []
    checks: tuple[WebmailCheck, ...] = ()
    try:
        checks = _Section.model_validate({"webmail": data}).webmail
    except ValidationError as exc:
        for err in exc.errors():
            loc, msg = tuple(err["loc"]), str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif (key := _KEYED.match(msg)) is not None:
                loc, msg = (*loc, key.group(1)), msg[key.end() :]
            problems.append(f"{_loc(loc)}: {msg}")
    problems += name_problems(data)
    if not problems and check_secrets:
        problems = machine_problems(checks)
    if problems:
        raise ConfigError(problems)
    return checks
