"""Human-readable durations (`90s`, `5m`, `1h30m`, `2d`) as a pydantic-validated type.

Every duration is finite and bounded: a number like 10^400 would otherwise parse as infinity and
a route would probe in a hot loop, so anything past a year is refused with a message that says so
(the ledger's retention, which must reach past a year, has its own bound). A non-zero duration is
at least a millisecond, the finest unit there is.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

MAX_DURATION = 365 * 86400.0
"""A year: the longest duration a config may give (except the ledger's retention)."""
MAX_RETENTION = 10 * 365 * 86400.0
"""Ten years: the longest ledger retention."""
MIN_DURATION = 0.001
"""One millisecond: the shortest non-zero duration."""


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 24 else f"{text[:20]!r}... ({len(text)} characters)"


def parse_duration(text: str, *, maximum: float = MAX_DURATION) -> float:
    """Parse `1h30m`, `90s`, `250ms` into seconds; raise ValueError naming the bad text.

    The result is 0 or between 1 ms and `maximum` (a year unless given).
    """
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
        raise ValueError(
            f"invalid duration {_shown(text)}: use a number and a unit, e.g. 90s, 5m, 1h30m"
        )
    if not math.isfinite(total) or total > maximum:
        raise ValueError(
            f"duration {_shown(text)} is too long: durations are finite and at most "
            f"{_spelled(maximum)}"
        )
    if 0 < total < MIN_DURATION:
        raise ValueError(f"duration {_shown(text)} is shorter than 1ms, the smallest step")
    return total


def _spelled(seconds: float) -> str:
    if seconds == MAX_DURATION:
        return "a year (365d)"
    return format_duration(seconds)


def format_duration(seconds: float) -> str:
    """Render seconds the way a config would spell them (`1h30m`, `90s`, `250ms`)."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def _coerce(value: object, maximum: float = MAX_DURATION) -> float:
    # pydantic reports only ValueError as a validation error (a TypeError would escape as a
    # traceback), so every wrong type is a ValueError here.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a duration is a string like 90s or 5m")
    if not isinstance(value, str):
        # A bare number is ambiguous (seconds? minutes?): refuse it rather than guess.
        if len(repr(value)) > 24:
            raise ValueError("bare number (a very large one): give a unit, e.g. 90s or 5m")
        raise ValueError(f"bare number {value!r}: give a unit, e.g. {value}s or {value}m")
    return parse_duration(value, maximum=maximum)


def _coerce_retention(value: object) -> float:
    return _coerce(value, MAX_RETENTION)


Duration = Annotated[float, BeforeValidator(_coerce), PlainSerializer(format_duration)]
"""A duration in seconds, written in config as `90s`, `5m`, `1h`; at most a year."""

RetentionDuration = Annotated[
    float, BeforeValidator(_coerce_retention), PlainSerializer(format_duration)
]
"""A duration of up to ten years (the ledger's retention)."""


def positive(seconds: float) -> float:
    """Validator helper: a duration that must be > 0."""
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds
