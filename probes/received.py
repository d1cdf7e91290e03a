"""Parse Received header values (RFC 5321 section 4.4 trace fields) into hops.

Real servers bend the grammar: clauses come in any order, comments nest and carry the
peer's address, some relays drop the semicolon or the date, and dates come with named
zones, no zone, two-digit years or no day name. Parsing never raises: what cannot be
read becomes None.

Dates are read here rather than by email.utils.parsedate_tz, which reports "+05:30",
unknown names such as "CET" and a missing zone all as +0000, maps two-digit years 50-68
to 20xx (RFC 5322 section 4.3 says 19xx) and accepts 25:61 o'clock and 31 Feb; the
tests check that both agree on every well-formed RFC 5322 date. A date without a usable
zone is read as UTC with `tz_offset_minutes` None, and so is "-0000", which RFC 5322
defines as UTC written by a host that does not know its own zone.
"""

from __future__ import annotations

import calendar
import datetime as dt
import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from itertools import chain
from typing import Final

__all__ = [
    "Hop",
    "format_hop",
    "format_received_date",
    "parse_chain",
    "parse_received",
    "parse_received_date",
]


@dataclass(frozen=True, slots=True)
class Hop:
    """One Received header: who handed the message to whom, how, and when (Unix seconds)."""

    from_host: str | None = None
    from_ip: str | None = None
    by_host: str | None = None
    via: str | None = None
    with_proto: str | None = None
    id: str | None = None
    for_addr: str | None = None
    date: float | None = None
    tz_offset_minutes: int | None = None
    raw: str = ""


def parse_chain(values: Sequence[str]) -> tuple[Hop, ...]:
    """Parse Received values as they appear in a message (newest first); return hops oldest first."""
    return tuple(parse_received(value) for value in reversed(values))


def parse_received(value: str) -> Hop:
    """Parse one Received header value (folded or not, with or without the field name)."""
    text = _FIELD_NAME.sub("", " ".join(value.split()), count=1)
    clause_text, date_text = _split_date(text)
    clauses = _clauses(_tokens(clause_text))
    date, tz = parse_received_date(date_text) if date_text is not None else (None, None)
    from_host, from_ip = _from_side(clauses.get("from", ()))
    by_words = _words(clauses.get("by", ()))
    return Hop(
        from_host=from_host,
        from_ip=from_ip,
        by_host=_host_or_ip(by_words[0]) if by_words else None,
        via=_leading_words(clauses.get("via", ())),
        with_proto=_leading_words(clauses.get("with", ())),
        id=_first_word(clauses.get("id", ())),
        for_addr=_address(clauses.get("for", ())),
        date=date,
        tz_offset_minutes=tz,
        raw=value,
    )


# --- splitting off the date -------------------------------------------------------------

_FIELD_NAME: Final = re.compile(r"^received\s*:\s*", re.IGNORECASE)
_MONTH_RE: Final = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DAY_RE: Final = r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s*)?"
# Where a date starts when the semicolon before it is missing: RFC 5322, asctime or ISO order.
_DATE_START: Final = re.compile(
    rf"\b{_DAY_RE}(?:\d{{1,2}}[\s-]*{_MONTH_RE}[\s-]*\d{{2,4}}\s+\d{{1,2}}:\d\d"
    rf"|{_MONTH_RE}\s+\d{{1,2}}\s+\d{{1,2}}:\d\d"
    rf"|\d{{4}}-\d\d-\d\d[T ]\d{{1,2}}:\d\d)",
    re.IGNORECASE,
)


def _split_date(text: str) -> tuple[str, str | None]:
    """Cut at the last semicolon outside comments; without one, where a date starts."""
    depth = 0
    top_level = anywhere = -1
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and depth:
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == ";":
            anywhere = i
            if depth == 0:
                top_level = i
        i += 1
    # An unclosed comment hides every later semicolon; the last one anywhere is the best guess.
    cut = top_level if top_level >= 0 else anywhere
    if cut >= 0:
        return text[:cut], text[cut + 1 :]
    start = _DATE_START.search(text)
    if start is not None:
        return text[: start.start()], text[start.start() :]
    return text, None


# --- clauses ------------------------------------------------------------------------------

_WORD, _COMMENT, _ANGLE = "word", "comment", "angle"
_KEYWORDS: Final = frozenset({"from", "by", "via", "with", "id", "for"})
Token = tuple[str, str]


def _comment_spans(text: str) -> dict[int, int]:
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


def _tokens(text: str) -> list[Token]:
    """Split clause text into words, comments and <angle> addresses."""
    spans = _comment_spans(text)
    last_close = text.rfind(">")  # lets a run of unmatched '<' stay linear
    out: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace() or char == ")" or (char == "(" and i not in spans):
            # A stray ')' is noise; an unclosed '(' is read past so the text after it survives.
            i += 1
        elif char == "(":
            out.append((_COMMENT, text[i + 1 : spans[i]]))
            i = spans[i] + 1
        elif char == "<" and i < last_close:
            end = text.index(">", i)
            out.append((_ANGLE, text[i + 1 : end].strip()))
            i = end + 1
        else:
            end = i + 1
            while end < len(text) and not text[end].isspace() and text[end] not in "()<":
                end += 1
            out.append((_WORD, text[i:end]))
            i = end
    return out


def _clauses(tokens: list[Token]) -> dict[str, list[Token]]:
    """Group tokens under the keyword before them; the first use of a keyword wins."""
    clauses: dict[str, list[Token]] = {}
    current: list[Token] = []  # tokens before any keyword, or under a repeated one, are dropped
    for kind, text in tokens:
        keyword = text.lower() if kind == _WORD else ""
        if keyword in _KEYWORDS:
            current = []
            clauses.setdefault(keyword, current)
        else:
            current.append((kind, text))
    return clauses


def _words(tokens: Sequence[Token]) -> list[str]:
    return [text for kind, text in tokens if kind == _WORD]


def _first_word(tokens: Sequence[Token]) -> str | None:
    words = _words(tokens)
    return words[0] if words else None


def _leading_words(tokens: Sequence[Token]) -> str | None:
    """Words up to the first comment: "ESMTPS", "Microsoft SMTP Server", not Exim's TLS details."""
    words: list[str] = []
    for kind, text in tokens:
        if kind != _WORD:
            break
        words.append(text)
    return " ".join(words) or None


def _address(tokens: Sequence[Token]) -> str | None:
    for kind, text in tokens:
        if kind == _ANGLE:
            return text or None
        if kind == _WORD and "@" in text:
            return text.strip("<>") or None
    return None


# --- hosts and addresses ------------------------------------------------------------------

_BRACKETED: Final = re.compile(r"\[(?:ipv6:)?([^\]\s]*)\]", re.IGNORECASE)
# Exim appends the port: "[192.0.2.1]:54321"; a few relays write "192.0.2.1:25".
_LITERAL: Final = re.compile(
    r"^(?:\[(?:ipv6:)?(?P<bracketed>[^\]\s]*)\]|(?P<v4>\d{1,3}(?:\.\d{1,3}){3}))(?::\d+)?$",
    re.IGNORECASE,
)
_HOSTNAME: Final = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+\.?$")
_HELO: Final = re.compile(r"\b(?:helo|ehlo)(?:=|\s+)(\[[^\]\s]*\]|[^\s()\[\]]+)", re.IGNORECASE)
_SEPARATORS: Final = re.compile(r"[\s()\[\]=,;@]+")
_UNNAMED: Final = frozenset({"unknown"})


def _ip(text: str) -> str | None:
    """Canonical text of an IP address written bare, as [a.b.c.d], [IPv6:...] or with a port."""
    literal = _LITERAL.match(text)
    inner = text if literal is None else literal.group("bracketed") or literal.group("v4") or ""
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def _host_or_ip(word: str) -> str | None:
    """A host name with its trailing dot dropped, or an IP literal in canonical form."""
    ip = _ip(word)
    if ip is not None:
        return ip
    name = word.strip("[]").rstrip(".")
    return name or None


def _from_side(tokens: Sequence[Token]) -> tuple[str | None, str | None]:
    """The sending host's name and IP from "from NAME (rdns [ip] helo=...)" in its many forms."""
    words = _words(tokens)
    comments = [text for kind, text in tokens if kind == _COMMENT]
    first_ip = _ip(words[0]) if words else None
    host = None
    if words and first_ip is None and words[0].lower() not in _UNNAMED:
        host = _host_or_ip(words[0])
    if host is None:
        host = next(_names_in(comments), None)
    # The address the receiving MTA saw is the bracketed one in the comment (Postfix, Sendmail,
    # Exim with reverse DNS); a literal first word is Postfix's HELO argument or Exim's peer.
    # Words after an unclosed '(' come next, then bare addresses (qmail, Exchange).
    unhelo = [_HELO.sub(" ", comment) for comment in comments]
    bracketed = (_ip(m.group(0)) for comment in unhelo for m in _BRACKETED.finditer(comment))
    loose = (_ip(word) for word in words[1:])
    bare = (_ip(piece) for comment in unhelo for piece in _SEPARATORS.split(comment) if piece)
    found = (ip for ip in chain(bracketed, [first_ip], loose, bare) if ip is not None)
    return host, next(found, None)


def _names_in(comments: Sequence[str]) -> Iterator[str]:
    for comment in comments:
        for match in _HELO.finditer(comment):
            if _ip(match.group(1)) is None:
                yield match.group(1).rstrip(".")
    for comment in comments:
        for piece in _SEPARATORS.split(comment):
            if _HOSTNAME.match(piece) and _ip(piece) is None:
                yield piece.rstrip(".")


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
    spans = _comment_spans(text)
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


# --- writing ------------------------------------------------------------------------------


def format_received_date(stamp: float, tz_offset_minutes: int | None) -> str:
    """RFC 5322 date in the given zone, whole seconds as servers write them; None gives -0000."""
    whole = dt.datetime.fromtimestamp(int(stamp // 1), dt.UTC)
    if tz_offset_minutes is None:
        return format_datetime(whole.replace(tzinfo=None))
    zone = dt.timezone(dt.timedelta(minutes=tz_offset_minutes))
    return format_datetime(whole.astimezone(zone))


def format_hop(hop: Hop) -> str:
    """Write a hop as a Postfix-style Received value (used for fixtures and round-trip tests)."""
    parts: list[str] = []
    if hop.from_host is not None or hop.from_ip is not None:
        name = hop.from_host or f"[{hop.from_ip}]"
        peer = f" ({hop.from_host or 'unknown'} [{hop.from_ip}])" if hop.from_ip else ""
        parts.append(f"from {name}{peer}")
    clauses = (
        ("by", hop.by_host),
        ("via", hop.via),
        ("with", hop.with_proto),
        ("id", hop.id),
        ("for", f"<{hop.for_addr}>" if hop.for_addr else None),
    )
    parts.extend(f"{keyword} {value}" for keyword, value in clauses if value)
    text = " ".join(parts)
    if hop.date is not None:
        text += f"; {format_received_date(hop.date, hop.tz_offset_minutes)}"
    return text
