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

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Final

from mailprobe.probes.received_dates import (
    comment_spans,
    format_received_date,
    parse_received_date,
)

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


def _tokens(text: str) -> list[Token]:
    """Split clause text into words, comments and <angle> addresses."""
    spans = comment_spans(text)
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


# --- writing ------------------------------------------------------------------------------


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
