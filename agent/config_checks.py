"""Config checks beyond single fields, and pydantic's errors as `key.path: message` lines.

Cross-section checks run on the raw data, so they are reported together with field errors;
secret checks run on the validated config, since they read files and the environment.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mailprobe.agent.config_types import key_path, shown
from mailprobe.agent.durations import format_duration
from mailprobe.agent.presets import preset

if TYPE_CHECKING:
    from mailprobe.agent.config import Config

MIN_STEP = 0.1
"""Shortest scheduling step (probe interval, poll, retry): shorter ones make a loop spin."""
_KEYED = re.compile(r"^([a-z_]+): ")
_WINDOW_TAGS = frozenset({"one_off", "recurring"})


def validation_problems(exc: ValidationError) -> list[str]:
    """Each pydantic error as one `key.path: message` line."""
    problems = []
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
        elif str(err["type"]).endswith("_type"):
            msg += _type_hint(err.get("input"))
        elif (key := _KEYED.match(msg)) is not None:
            # A model-level check names the key it is about: attach it to the path.
            loc, msg = (*loc, key.group(1)), msg[key.end() :]
        problems.append(f"{key_path(loc)}: {' '.join(msg.split())}")
    return problems


def cross_problems(data: dict[str, Any]) -> list[str]:
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
                problems.append(f"{where}.name: duplicate route name {shown(name)}")
            seen.add(name)
        for key, proto in (("from", "smtp"), ("to", "imap")):
            ref = route.get(key)
            if not isinstance(ref, str):
                continue
            account = accounts.get(ref)
            if account is None:
                problems.append(f"{where}.{key}: no account named {shown(ref)}")
            elif isinstance(account, dict) and not _has_section(account, proto):
                problems.append(f"{where}.{key}: account {shown(ref)} has no {proto} section")
    return problems + _maintenance_problems(data.get("maintenance"), seen)


def _has_section(account: dict[str, Any], proto: str) -> bool:
    """The account has an smtp or imap section, written or filled by its provider's preset."""
    if proto in account:
        return account[proto] is not None
    provider = account.get("provider")
    return isinstance(provider, str) and preset(provider) is not None


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
            f"maintenance[{i}].routes: no route named {shown(name)}"
            for name in names
            if isinstance(name, str) and name not in routes
        ]
    return problems


def timing_problems(config: Config) -> list[str]:
    """The confirmation retry must land within confirm_within, or a glitch is never cleared;
    and it must not be so short that a failing route is probed in a tight loop."""
    problems: list[str] = []
    sla = config.sla
    if sla.confirm_retry < MIN_STEP:
        problems.append(f"sla.confirm_retry: must be at least {format_duration(MIN_STEP)}")
    for name, account in config.accounts.items():
        if account.smtp is None:
            continue
        if sla.confirm_within <= sla.confirm_retry + account.smtp.timeout:
            problems.append(
                f"sla.confirm_within: must be longer than confirm_retry + accounts.{name}.smtp"
                f".timeout ({format_duration(sla.confirm_retry + account.smtp.timeout)})"
            )
    return problems


def _type_hint(value: object) -> str:
    """What a strict field got instead, for the message (`port: true` is a YAML boolean)."""
    if isinstance(value, bool):
        return f" (got {str(value).lower()}, a YAML boolean: yes/no/on/off/true/false)"
    if isinstance(value, int | float):
        return f" (got the number {shown(value)})"
    if isinstance(value, str):
        return f" (got the text {shown(value)})"
    return f" (got {type(value).__name__})"


def secret_problems(config: Config) -> list[str]:
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
            if endpoint.auth is not None:
                where = f"accounts.{name}.{proto}.auth"
                problems += [f"{where}.{problem}" for problem in endpoint.auth.problems()]
            if endpoint.ca_file is not None:
                problem = _ca_problem(endpoint.ca_file)
                if problem is not None:
                    problems.append(f"accounts.{name}.{proto}.ca_file: {problem}")
    return problems


def _ca_problem(path: Path) -> str | None:
    """Why `path` cannot serve as a CA file, or None (the agent would fail at start otherwise)."""
    try:
        if not path.is_file():
            return f"{path} not found"
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        # OSError also covers a name too long for the file system.
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        return f"{path} is not a usable PEM certificate file ({reason})"
    return None
