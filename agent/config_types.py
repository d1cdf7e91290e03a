"""Field types for config values: strict where YAML guesses, one line where a protocol reads them.

YAML 1.1 reads `yes`, `on` and `true` as booleans and pydantic's lax mode would then take `port:
true` as port 1; the types here accept exactly their own kind. Values that reach a protocol (host
names, user names, mailbox names, the EHLO name), a file system (paths, environment variable
names) or a log line are refused when they hold a control character: a NUL in a host or a CR/LF
in a mailbox name would otherwise break, or inject into, the conversation with a server.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictInt, StrictStr

# C0, DEL, C1, and the Unicode line and paragraph separators (str.splitlines breaks on them).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {0: "NUL", 9: "a tab", 10: "LF (line feed)", 13: "CR (carriage return)"}
_HOST_FORBIDDEN = re.compile(r"[\s/\\@?#\[\]<>\"',;]")
_HELO = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_MAX_PATH = 4096  # PATH_MAX on Linux
_SHOWN = 40


def shown(value: object) -> str:
    """`repr(value)`, cut to a length that fits in one message line."""
    text = repr(value)
    if len(text) <= _SHOWN:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[: _SHOWN - 4]}...{size}"


_KEY_SHOWN = 64  # a key name longer than this is shown cut, with its length


def key_path(parts: tuple[object, ...]) -> str:
    """`routes[1].interval` for a location in the config data, each key as it fits one line."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (the name)"  # pydantic's marker for a dict key that failed validation
        else:
            text = "from" if part == "from_" else str(part)
            # A key the user wrote may be anything: unprintable or too long to fit a line.
            plain = text.isprintable() and len(text) <= _KEY_SHOWN
            out += ("." if out else "") + (text if plain else shown(text))
    return out or "(top level)"


def control_character(text: str) -> str | None:
    """A description of the first control character in `text` and where it is, or None."""
    match = _CONTROL.search(text)
    if match is None:
        return None
    code = ord(match.group())
    name = _CONTROL_NAMES.get(code, f"U+{code:04X}")
    return f"{name} at position {match.start() + 1}"


def one_line(text: str) -> str:
    """Validator: text without control characters (no NUL, CR, LF, tab ...)."""
    found = control_character(text)
    if found is not None:
        raise ValueError(f"must not contain control characters (found {found})")
    return text


def _host(host: str) -> str:
    one_line(host)
    if _HOST_FORBIDDEN.search(host):
        raise ValueError(f"{shown(host)} is not a host name or IP address")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host.encode("idna")
        except UnicodeError:
            raise ValueError(
                f"{shown(host)} is not a valid host name (empty or over-long label)"
            ) from None
    return host


def _helo(name: str) -> str:
    one_line(name)
    if name.startswith("[") and name.endswith("]"):
        literal = name[1:-1].removeprefix("IPv6:")
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            raise ValueError(f"{shown(name)} is not an address literal like [192.0.2.1]") from None
        return name
    if not _HELO.fullmatch(name):
        raise ValueError(
            f"{shown(name)} is not a domain name (letters, digits, '-', '.') or [address]"
        )
    return name


def _ip(address: str) -> str:
    one_line(address)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{shown(address)} is not an IP address") from None
    return address


def _env_name(name: str) -> str:
    one_line(name)
    if "=" in name:
        raise ValueError(f"{shown(name)} is not an environment variable name (it has '=')")
    return name


def _path(value: object) -> object:
    # Before pydantic's own conversion: only text is a path (a YAML number or boolean is not).
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ValueError("a path is a string")
    if not value:
        raise ValueError("a path must not be empty")
    if len(value) > _MAX_PATH:
        raise ValueError(f"a path is at most {_MAX_PATH} characters ({len(value)} given)")
    return one_line(value)


Text = Annotated[StrictStr, Field(max_length=1024), AfterValidator(one_line)]
"""One line of text of reasonable length (user names, mailbox names)."""

Host = Annotated[StrictStr, Field(min_length=1, max_length=253), AfterValidator(_host)]
"""A host name (IDN allowed) or an IP address, as a client connects to it."""

HeloName = Annotated[StrictStr, Field(min_length=1, max_length=253), AfterValidator(_helo)]
"""The name given in EHLO: a domain name or an address literal ([192.0.2.1], [IPv6:::1])."""

IpAddress = Annotated[StrictStr, Field(max_length=64), AfterValidator(_ip)]
"""An IPv4 or IPv6 address (a local source address to bind)."""

EnvName = Annotated[StrictStr, Field(min_length=1, max_length=256), AfterValidator(_env_name)]
"""The name of an environment variable."""

ConfigPath = Annotated[Path, BeforeValidator(_path)]
"""A file system path: text, not empty, one line."""

Port = Annotated[StrictInt, Field(ge=1, le=65535)]
"""A TCP port; `true` is not port 1."""

Flag = StrictBool
"""A boolean that is a YAML boolean (true/false), not 1 or "yes" in quotes."""

Count = StrictInt
"""A whole number; `true` is not 1, `2.0` is not 2."""

Commands = Annotated[StrictInt, Field(ge=10, le=100_000)]
"""IMAP commands of a watcher's budget: fewer than 10 leave a probe's watch with almost no look."""

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite number (whole or not); `true` is not 1.0, `.inf` and `.nan` are refused."""
