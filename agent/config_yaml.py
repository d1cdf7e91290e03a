"""A config file -> plain YAML data, refusing what would crash or stall the loader.

Every refusal is a message naming the file (and the line, or the key path) for ConfigError:
a file that is not UTF-8 or too large to be a config, nesting deeper than a config has (the YAML
composer recurses and would hit Python's recursion limit), aliases that expand into more values
than a config holds (a "billion laughs" document is small as text and huge once walked), numbers
the YAML constructor cannot build (a 5000-digit integer, the date 2026-13-45), infinite or NaN
numbers, and mapping keys that are not strings.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml

from mailprobe.agent.config_types import key_path, shown

MAX_BYTES = 1 << 20
"""A config larger than 1 MiB is not a config (and /dev/zero must not be read for ever)."""
MAX_DEPTH = 32
"""Nesting levels: a config needs about six."""
MAX_VALUES = 100_000
"""Values once aliases are expanded: a config with thousands of routes stays far below."""


class _Loader(yaml.SafeLoader):
    """SafeLoader whose constructor errors carry the position, like parse errors."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            # int() of a 5000-digit number, datetime() of month 13: a marked error, not a crash.
            raise yaml.constructor.ConstructorError(
                # The int-digits message goes on about sys.set_int_max_str_digits: keep its gist.
                None,
                None,
                f"cannot read this value: {str(exc).split(';')[0]}",
                node.start_mark,
            ) from None


def read_text(path: Path, what: str = "config") -> str:
    """The UTF-8 text of `path`; ValueError with a one-line reason otherwise."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    except ValueError as exc:  # a path with a NUL byte
        raise ValueError(f"cannot read: {exc}") from None
    if len(raw) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES // 1024} KiB: not a {what} file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}): save it as UTF-8"
        ) from None


def read_secret(env: str | None, file: Path | None, *, whole: bool = False) -> str | None:
    """A secret from an environment variable or a file: its first line, or all of it (`whole`,
    for a PEM key or a JSON key file); LookupError saying why it cannot be read."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise LookupError(f"environment variable {env} is not set")
        return value
    if file:
        try:
            text = read_text(file, what="secret")
        except ValueError as exc:
            raise LookupError(f"{file}: {exc}") from None
        if whole:
            return text
        lines = text.splitlines()
        return lines[0].strip() if lines else ""
    return None


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"


def _check_depth(text: str) -> None:
    """Refuse deep nesting before the (recursive) composer sees it."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(
                    f"nested more than {MAX_DEPTH} levels deep at {_where(event.start_mark)}"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_yaml(text: str) -> Any:
    """YAML text -> data; ValueError with a one-line reason (and position) otherwise."""
    try:
        _check_depth(text)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        problem = " ".join(str(problem).split())
        raise ValueError(f"not valid YAML at {_where(mark)}: {problem}") from None
    except RecursionError:
        # Depth is checked above; this is a last line against a constructor that recurses.
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    return data


def check_values(data: Any) -> None:
    """Walk the data as pydantic will: bounded size and depth, finite numbers, string keys.

    ValueError names the first problem with its key path.
    """
    stack: list[tuple[Any, tuple[object, ...]]] = [(data, ())]
    seen = 0
    while stack:
        value, path = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ValueError(
                f"more than {MAX_VALUES} values once aliases are expanded: not a config"
            )
        if len(path) > MAX_DEPTH:
            # Only aliases get here (text nesting was checked): e.g. `a: &a [*a]`.
            raise ValueError(f"{key_path(path[:3])}: aliases nest more than {MAX_DEPTH} deep")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key_path(path)}: {value} is not a finite number")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValueError(
                        f"{key_path((*path, shown(key)))}: a key must be text, not "
                        f"{type(key).__name__} (quote it)"
                    )
                stack.append((item, (*path, key)))
        elif isinstance(value, list | tuple | set):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
