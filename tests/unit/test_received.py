"""Received header parsing: a corpus of real server formats, odd dates, and properties."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import json
from email.utils import format_datetime, mktime_tz, parsedate_tz
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.probes.received import (
    Hop,
    format_hop,
    format_received_date,
    parse_chain,
    parse_received,
    parse_received_date,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "received"
SAMPLES = sorted(CORPUS.glob("*.eml"))
FEB_3 = 1738577472.0  # 2025-02-03T10:11:12Z
FAMILIES = ("postfix", "exim", "sendmail", "qmail", "exchange", "gmail", "dovecot", "broken")


def received_values(sample: Path) -> list[str]:
    """Received values of a header block as a mail client hands them over, newest first."""
    message = email.message_from_bytes(sample.read_bytes(), policy=email.policy.compat32)
    return [str(value) for value in message.get_all("Received", [])]


def unix(iso: str | None) -> float | None:
    return None if iso is None else dt.datetime.fromisoformat(iso).timestamp()


def fields(hop: Hop) -> dict[str, Any]:
    return {name: value for name, value in dataclasses.asdict(hop).items() if name != "raw"}


def expected_fields(spec: dict[str, Any]) -> dict[str, Any]:
    names = [field.name for field in dataclasses.fields(Hop) if field.name != "raw"]
    unknown = set(spec) - set(names)
    assert not unknown, f"sidecar names unknown fields {unknown}"
    expected = {name: spec.get(name) for name in names}
    expected["date"] = unix(expected["date"])
    return expected


def test_corpus_has_a_sidecar_for_every_sample_and_covers_the_server_families() -> None:
    """Each .eml has its .json expectations, and the corpus is broad enough to mean something."""
    assert len(SAMPLES) >= 20
    assert {path.stem for path in CORPUS.glob("*.json")} == {path.stem for path in SAMPLES}
    names = " ".join(path.stem for path in SAMPLES)
    for family in FAMILIES:
        assert family in names


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_corpus_sample_parses_to_its_expected_hops(sample: Path) -> None:
    """Every field of every hop, oldest first, matches the sidecar (absent means None)."""
    spec = json.loads(sample.with_suffix(".json").read_text())
    values = received_values(sample)
    hops = parse_chain(values)
    assert [fields(hop) for hop in hops] == [expected_fields(hop) for hop in spec["hops"]]
    assert [hop.raw for hop in hops] == list(reversed(values))


def test_parse_chain_returns_hops_oldest_first() -> None:
    """Headers come newest first; the chain reads in the order the message travelled."""
    hops = parse_chain(
        ["from b by c; 3 Feb 2025 10:11:13 +0000", "from a by b; 3 Feb 2025 10:11:12 +0000"]
    )
    assert [(hop.from_host, hop.by_host) for hop in hops] == [("a", "b"), ("b", "c")]
    assert parse_chain([]) == ()


def test_exchange_online_hop_keeps_the_multiword_protocol_and_ipv6_peer() -> None:
    """Outlook.com: IPv6 in bare comments, "Microsoft SMTP Server" as the protocol, dotted id."""
    hop = parse_received(
        "from XX.namprd.prod.outlook.com (2603:10b6:a03:3a8::20) by YY.outlook.office365.com "
        "(2603:10b6:a03:3a8::21) with Microsoft SMTP Server (version=TLS1_2, "
        "cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.1234.5; Mon, 3 Feb 2025 10:11:12 +0000"
    )
    assert (hop.from_host, hop.from_ip) == ("XX.namprd.prod.outlook.com", "2603:10b6:a03:3a8::20")
    assert (hop.by_host, hop.with_proto, hop.id) == (
        "YY.outlook.office365.com",
        "Microsoft SMTP Server",
        "15.20.1234.5",
    )
    assert (hop.date, hop.tz_offset_minutes) == (FEB_3, 0)


def test_gmail_internal_hop_has_an_address_as_by_host_and_a_pst_date() -> None:
    """Gmail's "by 2002:a05:... with SMTP id ..." hop: no from, the (PST) comment is ignored."""
    hop = parse_received(
        "by 2002:a05:6a10:a44a:b0:3d1:8c4b:6d5e with SMTP id x12csp123456pxb;\r\n"
        "        Mon, 3 Feb 2025 02:11:12 -0800 (PST)"
    )
    assert hop == Hop(
        by_host="2002:a05:6a10:a44a:b0:3d1:8c4b:6d5e",
        with_proto="SMTP",
        id="x12csp123456pxb",
        date=FEB_3,
        tz_offset_minutes=-480,
        raw=hop.raw,
    )


def test_dovecot_lmtp_hop_reads_for_address_past_the_envelope_from_comment() -> None:
    """Dovecot LMTP: "(envelope-from <a@b>)" is a comment, "for <c@d>" is the recipient."""
    hop = parse_received(
        "from mail.test by mail.test with LMTP id kA3bC4dE5fG (envelope-from <a@b.test>) "
        "for <c@d.test>; Mon, 03 Feb 2025 11:11:12 +0100"
    )
    assert (hop.with_proto, hop.id, hop.for_addr) == ("LMTP", "kA3bC4dE5fG", "c@d.test")
    assert (hop.date, hop.tz_offset_minutes) == (FEB_3, 60)


def test_qmail_comment_only_hops_have_a_date_and_nothing_else() -> None:
    """qmail's "(qmail N invoked from network)" and "(... by uid 0)" hops name no hosts."""
    for text in ("(qmail 1234 invoked from network)", "(qmail 1234 invoked by uid 0)"):
        hop = parse_received(f"{text}; 22 Nov 2026 10:11:12 -0000")
        assert fields(hop) == fields(Hop(date=unix("2026-11-22T10:11:12Z")))


def test_field_name_and_folding_are_tolerated() -> None:
    """A value passed with its "Received:" name, CRLF folds and tabs parses like the clean one."""
    clean = parse_received(
        "from a.example by b.example with ESMTP id X1; Mon, 3 Feb 2025 10:11:12 +0000"
    )
    messy = parse_received(
        "Received:  from\r\n\ta.example\r\n  by b.example  with\tESMTP\r\n id X1\r\n ;\r\n"
        " Mon,\r\n 3 Feb 2025 10:11:12 +0000"
    )
    assert fields(messy) == fields(clean)


def test_first_use_of_a_keyword_wins() -> None:
    """A repeated clause keyword does not overwrite the first value."""
    hop = parse_received(
        "from a.example by b.example by c.example id 1 id 2; 3 Feb 2025 10:11:12 +0000"
    )
    assert (hop.by_host, hop.id) == ("b.example", "1")


def test_empty_and_keywordless_values_parse_to_an_empty_hop() -> None:
    """Nothing readable gives a hop of Nones that still carries the raw text."""
    for text in ("", "   ", ";", "garbage without keywords", "from", "from by with id for via ;"):
        hop = parse_received(text)
        assert fields(hop) == fields(Hop())
        assert hop.raw == text


@pytest.mark.parametrize(
    ("text", "date", "tz"),
    [
        ("Mon, 3 Feb 2025 10:11:12 +0000", "2025-02-03T10:11:12Z", 0),
        ("Mon,  3 Feb 2025 11:11:12 +0100 (CET)", "2025-02-03T10:11:12Z", 60),
        ("Mon, 3 Feb 2025 15:41:12 +0530", "2025-02-03T10:11:12Z", 330),
        ("Mon, 3 Feb 2025 15:41:12 +05:30", "2025-02-03T10:11:12Z", 330),
        ("Mon, 3 Feb 2025 00:41:12 -0930", "2025-02-03T10:11:12Z", -570),
        ("Mon, 3 Feb 2025 10:11:12 -0000", "2025-02-03T10:11:12Z", None),
        ("Mon, 3 Feb 2025 10:11:12", "2025-02-03T10:11:12Z", None),
        ("Mon, 3 Feb 2025 10:11:12 XYZ", "2025-02-03T10:11:12Z", None),
        ("3 Feb 2025 05:11:12 EST", "2025-02-03T10:11:12Z", -300),
        ("3 Feb 2025 06:11:12 EDT", "2025-02-03T10:11:12Z", -240),
        ("3 Feb 2025 02:11:12 pst", "2025-02-03T10:11:12Z", -480),
        ("3 Feb 2025 10:11:12 UT", "2025-02-03T10:11:12Z", 0),
        ("3 Feb 2025 12:11:12 CEST", "2025-02-03T10:11:12Z", 120),
        ("3 Feb 25 10:11:12 +0000", "2025-02-03T10:11:12Z", 0),
        ("3 Feb 49 10:11:12 +0000", "2049-02-03T10:11:12Z", 0),
        ("3 Feb 50 10:11:12 +0000", "1950-02-03T10:11:12Z", 0),
        ("3 Feb 125 10:11:12 +0000", "2025-02-03T10:11:12Z", 0),
        ("Feb 3 2025 10:11:12 +0000", "2025-02-03T10:11:12Z", 0),
        ("Mon Feb  3 10:11:12 2025", "2025-02-03T10:11:12Z", None),
        ("2025-02-03T10:11:12.5Z", "2025-02-03T10:11:12.500Z", 0),
        ("3 Feb 2025 10:11 +0000", "2025-02-03T10:11:00Z", 0),
        ("31 Dec 2016 23:59:60 +0000", "2017-01-01T00:00:00Z", 0),
        ("Sun, 29 Feb 2024 10:11:12 +0000", "2024-02-29T10:11:12Z", 0),
    ],
)
def test_dates_in_the_forms_servers_write(text: str, date: str, tz: int | None) -> None:
    """Numeric, named, missing and unknown zones; two- and three-digit years; other orders."""
    assert parse_received_date(text) == (unix(date), tz)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "1738577472",
        "Mon, 3 Feb 2025",
        "Mon, 29 Feb 2025 10:11:12 +0000",
        "Mon, 3 Foo 2025 10:11:12 +0000",
        "Mon, 3 Feb 2025 24:00:00 +0000",
        "Mon, 3 Feb 2025 10:60:00 +0000",
        "Mon, 3 Feb 2025 10:11:61 +0000",
        "Mon, 3 Feb 2025 1O:11:12 +0000",
        "Mon, 3 Feb 12025 10:11:12 +0000",
        "Mon, 3 Feb 1812 10:11:12 +0000",
        "Mon, 123 Feb 2025 10:11:12 +0000",
    ],
)
def test_unreadable_dates_are_none(text: str) -> None:
    """Impossible or incomplete dates give (None, None) rather than a wrong instant."""
    assert parse_received_date(text) == (None, None)


# --- properties ---------------------------------------------------------------------------

FRAGMENTS = (
    "from ", "by ", "with ", "id ", "for ", "via ", "FROM ", "(", ")", "((", "))", "<", ">", "[", "]",
    ";", ";", ":", ",", "\\", "\\(", "\r\n\t", " ", "  ", "=", "@", "IPv6:", "helo=", "HELO ",
    "unknown ", "localhost ", "mx.example.com ", "[192.0.2.1]", "[IPv6:2001:db8::1]", "2603:10b6::1",
    "Mon, ", "3 ", "Feb ", "February ", "2025 ", "25 ", "10:11:12 ", "10:11 ", "99:99:99 ", ".5",
    "+0000", "-0000", "+05:30", "+9999", "EST", "GMT+0100", "Z", "T", "-", "2025-02-03T", "\x00",
    "é", "\u2028", "0", "9" * 30,
)  # fmt: skip
header_like = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


@given(st.one_of(st.text(), header_like))
def test_parsing_never_raises_on_arbitrary_text(text: str) -> None:
    """Whatever a relay wrote, parsing returns a hop (and the date parser a pair) without raising."""
    hop = parse_received(text)
    assert hop.raw == text
    date, tz = parse_received_date(text)
    assert date is None or isinstance(date, float)
    assert tz is None or -24 * 60 < tz < 24 * 60


zones = st.one_of(st.none(), st.integers(-23 * 60 - 59, 23 * 60 + 59))
instants = st.integers(0, 2**33).map(float)


@given(instants, zones)
def test_formatted_dates_parse_back_in_every_zone(stamp: float, tz: int | None) -> None:
    """format_received_date -> parse_received_date is the identity on whole seconds and zones."""
    assert parse_received_date(format_received_date(stamp, tz)) == (stamp, tz)


@given(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9998, 12, 31)), zones)
def test_well_formed_dates_agree_with_parsedate_tz(moment: dt.datetime, tz: int | None) -> None:
    """On RFC 5322 dates with a four-digit year and a known zone the stdlib reads the same instant."""
    zone = dt.UTC if tz is None else dt.timezone(dt.timedelta(minutes=tz))
    text = format_datetime(moment.replace(tzinfo=zone, microsecond=0))
    parsed = parsedate_tz(text)
    assert parsed is not None
    assert parse_received_date(text)[0] == mktime_tz(parsed)


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(LABEL, min_size=1, max_size=3),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)
atoms = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,30}", fullmatch=True).filter(
    lambda word: word.lower() not in {"from", "by", "via", "with", "id", "for"}
)
hops = st.builds(
    Hop,
    from_host=st.none() | hostnames,
    from_ip=st.none() | st.ip_addresses().map(str),
    by_host=st.none() | hostnames,
    via=st.none() | st.sampled_from(["Frontend Transport", "mail-relay"]),
    with_proto=st.none() | st.sampled_from(["ESMTPSA", "LMTP", "SMTP", "Microsoft SMTP Server"]),
    id=st.none() | atoms,
    for_addr=st.none() | st.builds("{}@{}".format, LABEL, hostnames),
    date=st.none() | instants,
    tz_offset_minutes=zones,
)


@given(hops)
def test_hops_survive_format_then_parse(hop: Hop) -> None:
    """Build -> format_hop -> parse_received gives back every field (a zone needs a date to live in)."""
    if hop.date is None:
        hop = dataclasses.replace(hop, tz_offset_minutes=None)
    parsed = parse_received(format_hop(hop))
    assert fields(parsed) == fields(hop)
