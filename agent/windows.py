"""Time spans: interval arithmetic, calendar periods in a time zone, and maintenance windows.

A span is a half-open interval ``[start, end)`` in unix seconds (floats, so sub-second exact).
Span lists handled here are *normalized*: sorted, non-empty, non-overlapping, non-touching.

Maintenance windows come from config in two shapes:

- one-off: ``{name, start, end}``; datetimes carry an offset, or are read in the window's
  ``timezone`` (default UTC).
- recurring: ``{name, weekly: [mon, ...] | daily: true | monthly: [1, 15], start: "02:00",
  duration: 2h, timezone: Europe/Berlin}``.

Decisions, so the report can state them:

- A recurring window starts at the local wall-clock time on each matching local date and lasts
  ``duration`` of *elapsed* time, so a 2 h window on the night clocks go back still lasts 2 h.
- A start time that does not exist that day (inside the spring-forward gap) is read with the
  offset in force before the gap (PEP 495, fold=0): 02:30 on 2026-03-29 in Europe/Berlin opens at
  03:30 CEST. An ambiguous start (the repeated hour in autumn) is its first occurrence.
- A monthly day that a month lacks (31 in April) is skipped that month, not moved.
- ``routes`` limits a window to the named routes; empty means every route.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from mailprobe.agent.config_types import Count, Flag, Text, shown
from mailprobe.agent.durations import Duration, positive

Span = tuple[float, float]
# Longest IANA names are about 30 characters (America/Argentina/ComodRivadavia).
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]{1,32}(?:/[A-Za-z0-9_+-]{1,32}){0,2}")
# A window's name is a metric label value (mailprobe_maintenance_active{window}).
WindowName = Annotated[Text, Field(min_length=1, max_length=64)]

# ---------------------------------------------------------------- span arithmetic


def normalize(spans: Iterable[Span]) -> list[Span]:
    """Sort spans, drop empty ones and merge overlapping or touching ones."""
    out: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def union(*groups: Iterable[Span]) -> list[Span]:
    """Spans covered by any of the groups."""
    return normalize(s for group in groups for s in group)


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Spans covered by both normalized lists."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][1], b[j][1])
        if end > start:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Spans of normalized ``a`` not covered by normalized ``b``."""
    out: list[Span] = []
    j = 0
    for start, end in a:
        cursor = start
        while j < len(b) and b[j][1] <= cursor:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cursor:
                out.append((cursor, b[k][0]))
            cursor = max(cursor, b[k][1])
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


def clip(spans: Sequence[Span], start: float, end: float) -> list[Span]:
    """Normalized spans cut to ``[start, end)``."""
    return intersect(spans, [(start, end)]) if end > start else []


def total(spans: Iterable[Span]) -> float:
    """Seconds covered by normalized spans."""
    return sum(end - start for start, end in spans)


# ---------------------------------------------------------------- calendar periods


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError when unknown."""
    # The name becomes a file path inside the tz database: a 5000-character name raised
    # OSError (name too long), so only what an IANA name can look like gets that far.
    if not _ZONE_NAME.fullmatch(name):
        raise ValueError(f"unknown time zone {shown(name)}: use an IANA name like Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name like Europe/Berlin"
        ) from exc


def _check_zone(name: str) -> str:
    zone(name)
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]
"""An IANA time zone name, checked against the system's tz database."""

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(month: str) -> tuple[int, int]:
    """``"2026-10"`` -> ``(2026, 10)``; ValueError otherwise."""
    match = _MONTH.match(month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"invalid month {month!r}: use YYYY-MM")
    return int(match.group(1)), int(match.group(2))


def shift_month(month: str, delta: int) -> str:
    """The month ``delta`` calendar months after ``month`` (negative goes back)."""
    year, mon = parse_month(month)
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def local_midnight(day: date, tz: ZoneInfo) -> float:
    """Unix seconds of the start of ``day`` in ``tz``."""
    return datetime.combine(day, time(0), tzinfo=tz).timestamp()


def month_bounds(month: str, tz: str | ZoneInfo) -> Span:
    """``[start, end)`` of calendar ``month`` in time zone ``tz``, as unix seconds."""
    zi = zone(tz) if isinstance(tz, str) else tz
    year, mon = parse_month(month)
    days = calendar.monthrange(year, mon)[1]
    first = date(year, mon, 1)
    return local_midnight(first, zi), local_midnight(first + timedelta(days=days), zi)


def month_of(at: float, tz: str | ZoneInfo) -> str:
    """The calendar month (``YYYY-MM``) containing instant ``at`` in ``tz``."""
    zi = zone(tz) if isinstance(tz, str) else tz
    local = datetime.fromtimestamp(at, zi)
    return f"{local.year:04d}-{local.month:02d}"


def days_between(start: float, end: float, tz: str | ZoneInfo) -> list[tuple[date, Span]]:
    """Local calendar days overlapping ``[start, end)``, each with its span cut to the range."""
    zi = zone(tz) if isinstance(tz, str) else tz
    out: list[tuple[date, Span]] = []
    day = datetime.fromtimestamp(start, zi).date()
    while True:
        lo = local_midnight(day, zi)
        hi = local_midnight(day + timedelta(days=1), zi)
        if lo >= end:
            return out
        out.append((day, (max(lo, start), min(hi, end))))
        day += timedelta(days=1)


# ---------------------------------------------------------------- maintenance windows

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _wall_time(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 2:00 as the base-60 integer 120. ValueError, not
        # TypeError: pydantic turns only ValueError into a validation error with a key path.
        raise ValueError('write the time in quotes, e.g. start: "02:00"')
    return value


WallTime = Annotated[time, BeforeValidator(_wall_time)]


class OneOffWindow(BaseModel):
    """A single agreed maintenance period."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: WindowName
    start: datetime
    end: datetime
    timezone: TimeZoneName = "UTC"
    routes: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> OneOffWindow:
        if self.start_ts >= self.end_ts:
            raise ValueError("end must be after start")
        return self

    def _ts(self, value: datetime) -> float:
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone(self.timezone))
        return value.timestamp()

    @property
    def start_ts(self) -> float:
        """Start as unix seconds."""
        return self._ts(self.start)

    @property
    def end_ts(self) -> float:
        """End as unix seconds."""
        return self._ts(self.end)

    def spans(self, start: float, end: float) -> list[Span]:
        """The window cut to ``[start, end)``."""
        return clip([(self.start_ts, self.end_ts)], start, end)


class RecurringWindow(BaseModel):
    """A maintenance window repeating daily, on weekdays or on days of the month."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: WindowName
    weekly: tuple[Weekday, ...] = ()
    daily: Flag = False
    monthly: tuple[Annotated[Count, Field(ge=1, le=31)], ...] = ()
    start: WallTime
    duration: Annotated[Duration, AfterValidator(positive)]
    timezone: TimeZoneName = "UTC"
    routes: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _one_rule(self) -> RecurringWindow:
        rules = sum((bool(self.weekly), self.daily, bool(self.monthly)))
        if rules != 1:
            raise ValueError("give exactly one of weekly, daily, monthly")
        return self

    def _matches(self, day: date) -> bool:
        if self.daily:
            return True
        if self.weekly:
            return _WEEKDAYS[day.weekday()] in self.weekly
        return day.day in self.monthly

    def spans(self, start: float, end: float) -> list[Span]:
        """Occurrences overlapping ``[start, end)``, cut to it."""
        if end <= start:
            return []
        tz = zone(self.timezone)
        day = datetime.fromtimestamp(start - self.duration, tz).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, tz).date() + timedelta(days=1)
        found: list[Span] = []
        while day <= last:
            if self._matches(day):
                opens = datetime.combine(day, self.start, tzinfo=tz).timestamp()
                found.append((opens, opens + self.duration))
            day += timedelta(days=1)
        return clip(normalize(found), start, end)


def _window_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "one_off" if "end" in value else "recurring"
    return "one_off" if isinstance(value, OneOffWindow) else "recurring"


MaintenanceWindow = Annotated[
    Annotated[OneOffWindow, Tag("one_off")] | Annotated[RecurringWindow, Tag("recurring")],
    Discriminator(_window_kind),
]
"""A maintenance window from config: one-off when it has ``end``, recurring otherwise."""


def applies(window: OneOffWindow | RecurringWindow, route: str | None) -> bool:
    """Whether ``window`` covers ``route`` (None: a window for every route)."""
    return not window.routes or (route is not None and route in window.routes)


def window_spans(
    windows: Sequence[OneOffWindow | RecurringWindow],
    start: float,
    end: float,
    route: str | None = None,
) -> list[Span]:
    """Union of the windows covering ``route`` within ``[start, end)``."""
    return union(*(w.spans(start, end) for w in windows if applies(w, route)))


def window_occurrences(
    windows: Sequence[OneOffWindow | RecurringWindow], start: float, end: float
) -> list[tuple[str, Span]]:
    """Each window occurrence overlapping ``[start, end)`` with its name, in time order."""
    found = [(w.name, span) for w in windows for span in w.spans(start, end)]
    return sorted(found, key=lambda item: item[1])


def active_windows(windows: Sequence[OneOffWindow | RecurringWindow], at: float) -> dict[str, bool]:
    """Window name -> whether it is open at instant ``at``."""
    state = dict.fromkeys((w.name for w in windows), False)
    for w in windows:
        if w.spans(at, at + 1e-6):
            state[w.name] = True
    return state


def _unique_names(
    windows: tuple[OneOffWindow | RecurringWindow, ...],
) -> tuple[OneOffWindow | RecurringWindow, ...]:
    seen: set[str] = set()
    for w in windows:
        if w.name in seen:
            raise ValueError(f"duplicate maintenance window name {w.name!r}")
        seen.add(w.name)
    return windows


MaintenanceWindows = Annotated[tuple[MaintenanceWindow, ...], AfterValidator(_unique_names)]
"""The top-level ``maintenance:`` list: windows with unique names."""
