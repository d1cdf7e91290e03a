"""Human-readable durations (`90s`, `5m`, `1h30m`, `2d`) as a pydantic-validated type."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Parse `1h30m`, `90s`, `250ms` into seconds; raise ValueError naming the bad text."""
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    for match in _PART.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(compact):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, e.g. 90s, 5m, 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds the way a config would spell them (`1h30m`, `90s`, `250ms`)."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def _coerce(value: object) -> float:
    # pydantic reports only ValueError as a validation error (a TypeError would escape as a
    # traceback), so every wrong type is a ValueError here.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a duration is a string like 90s or 5m")
    if not isinstance(value, str):
        # A bare number is ambiguous (seconds? minutes?): refuse it rather than guess.
        raise ValueError(f"bare number {value!r}: give a unit, e.g. {value}s or {value}m")
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_coerce), PlainSerializer(format_duration)]
"""A duration in seconds, written in config as `90s`, `5m`, `1h`."""


def positive(seconds: float) -> float:
    """Validator helper: a duration that must be > 0."""
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds
