"""Dates in Received headers: read the way real servers write them, and written back.

Dates are read here rather than by email.utils.parsedate_tz, which reports "+05:30", unknown
names such as "CET" and a missing zone all as +0000, maps two-digit years 50-68 to 20xx (RFC 5322
section 4.3 says 19xx) and accepts 25:61 o'clock and 31 Feb; the tests check that both agree on
every well-formed RFC 5322 date. A date without a usable zone is read as UTC with
`tz_offset_minutes` None, and so is "-0000", which RFC 5322 defines as UTC written by a host that
does not know its own zone. Reading never raises: what cannot be read becomes None.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from email.utils import format_datetime
from typing import Final

__all__ = ["comment_spans", "format_received_date", "parse_received_date"]


def comment_spans(text: str) -> dict[int, int]:
    """Map each '(' that is closed to its ')', honouring nesting and backslash escapes."""
    spans: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and stack:
            i += 2
            continue
        if char == "(":
            stack.append(i)
        elif char == ")" and stack:
            spans[stack.pop()] = i
        i += 1
    return spans


# --- dates --------------------------------------------------------------------------------

_MONTH_NAMES: Final = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_MONTHS: Final[Mapping[str, int]] = {
    **{name: number for number, name in enumerate(_MONTH_NAMES, start=1)},
    **{name[:3]: number for number, name in enumerate(_MONTH_NAMES, start=1)},
    "sept": 9,
}
# RFC 5322 names, then ones real servers write; ambiguous ones (IST) are left out on purpose.
_ZONES: Final[Mapping[str, int]] = {
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0,
    "EST": -300, "EDT": -240, "CST": -360, "CDT": -300,
    "MST": -420, "MDT": -360, "PST": -480, "PDT": -420,
    "AKST": -540, "AKDT": -480, "HST": -600,
    "WET": 0, "WEST": 60, "BST": 60, "CET": 60, "CEST": 120, "MET": 60, "MEST": 120,
    "EET": 120, "EEST": 180, "MSK": 180,
    "HKT": 480, "SGT": 480, "AWST": 480, "JST": 540, "KST": 540, "ACST": 570,
    "AEST": 600, "AEDT": 660, "NZST": 720, "NZDT": 780,
}  # fmt: skip
_TIME: Final = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?![\d:])")
_ZONE_AFTER_TIME: Final = re.compile(
    r"\s*(?P<name>[A-Za-z]{1,5}(?![A-Za-z]))?\s*(?:(?P<sign>[+-])(?P<hh>\d\d):?(?P<mm>\d\d)(?!\d))?"
)
_NUMERIC_ZONE: Final = re.compile(r"(?<![\w+-])(?P<sign>[+-])(?P<hh>\d\d):?(?P<mm>\d\d)(?!\d)")
_ISO_DAY: Final = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_FIELD: Final = re.compile(r"[A-Za-z]+|\d+")
_MIN_YEAR, _MAX_YEAR = 1900, 9999


def parse_received_date(text: str) -> tuple[float | None, int | None]:
    """Read a Received date; return (Unix seconds, zone offset in minutes), None where unreadable."""
    text = _strip_comments(text)
    time = _TIME.search(text)
    if time is None:
        return None, None
    hour, minute = int(time.group(1)), int(time.group(2))
    second = int(time.group(3) or 0)
    fraction = time.group(4) or ""
    offset, zone_span = _zone(text, time.end())
    rest = text[: time.start()] + " " + text[time.end() : zone_span[0]] + " " + text[zone_span[1] :]
    day = _calendar_day(rest)
    if day is None or hour > 23 or minute > 59 or second > 60:
        return None, None
    # timegm is plain arithmetic, so a leap second (:60) lands on the next second.
    stamp = float(calendar.timegm((day.year, day.month, day.day, hour, minute, second, 0, 0, 0)))
    if fraction:
        stamp += int(fraction) / 10 ** len(fraction)
    return stamp - (offset or 0) * 60, offset


def _strip_comments(text: str) -> str:
    """Drop comments such as "(PST)": the numeric zone before them is the authoritative one."""
    spans = comment_spans(text)
    kept: list[str] = []
    i = 0
    while i < len(text):
        if i in spans:
            kept.append(" ")
            i = spans[i] + 1
        else:
            kept.append(text[i])
            i += 1
    return "".join(kept)


def _zone(text: str, after: int) -> tuple[int | None, tuple[int, int]]:
    """Zone offset in minutes (None when unknown or "-0000") and where it was written."""
    # "GMT+0100" and "+0100" right after the time, then a name such as "EST", then a numeric
    # zone further on ("Mon Feb  3 10:11:12 2025 +0000").
    match = _ZONE_AFTER_TIME.match(text, after)
    if match is not None and match.group("sign") is not None:
        return _numeric_offset(match), match.span()
    name = match.group("name") if match is not None else None
    if match is not None and name is not None and name.upper() in _ZONES:
        return _ZONES[name.upper()], match.span("name")
    numeric = _NUMERIC_ZONE.search(text, after)
    if numeric is not None:
        return _numeric_offset(numeric), numeric.span()
    return None, (after, after)


def _numeric_offset(match: re.Match[str]) -> int | None:
    hours, minutes = int(match.group("hh")), int(match.group("mm"))
    if hours > 23 or minutes > 59 or (match.group("sign") == "-" and hours == minutes == 0):
        return None
    return (-1 if match.group("sign") == "-" else 1) * (hours * 60 + minutes)


def _calendar_day(text: str) -> dt.date | None:
    """Day, month and year in RFC 5322, asctime or ISO order."""
    iso = _ISO_DAY.search(text)
    if iso is not None:
        return _date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    month: int | None = None
    numbers: list[str] = []
    for field in _FIELD.findall(text):
        if field.isdigit():
            numbers.append(field)
        elif month is None:
            month = _MONTHS.get(field.lower())
    if month is None or len(numbers) < 2:
        return None
    year_at = next((i for i, n in enumerate(numbers) if len(n) in (3, 4)), None)
    if year_at is None:
        day_text, year_text = numbers[0], numbers[1]
    else:
        year_text = numbers[year_at]
        day_text = next((n for i, n in enumerate(numbers) if i != year_at), "")
    if not day_text or len(day_text) > 2:
        return None
    year = int(year_text)
    if len(year_text) <= 2:
        year += 2000 if year < 50 else 1900  # RFC 5322 section 4.3
    elif len(year_text) == 3:
        year += 1900
    return _date(year, month, int(day_text))


def _date(year: int, month: int, day: int) -> dt.date | None:
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def format_received_date(stamp: float, tz_offset_minutes: int | None) -> str:
    """RFC 5322 date in the given zone, whole seconds as servers write them; None gives -0000."""
    whole = dt.datetime.fromtimestamp(int(stamp // 1), dt.UTC)
    if tz_offset_minutes is None:
        return format_datetime(whole.replace(tzinfo=None))
    zone = dt.timezone(dt.timedelta(minutes=tz_offset_minutes))
    return format_datetime(whole.astimezone(zone))
