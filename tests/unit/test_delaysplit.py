"""Send/transit/receive split of a probe's delay: corpus chains, ownership, skew, properties."""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.probes.delaysplit import DelaySplit, ServicePatterns, split_delay
from mailprobe.probes.received import Hop, parse_chain
from tests.unit.test_received import CORPUS, received_values, unix

A = ServicePatterns.parse(["*.a.example"])
B = ServicePatterns.parse(["*.b.example"])
T0 = 1738577472.0  # 2025-02-03T10:11:12Z, a whole second


def patterns(spec: list[str] | dict[str, Any]) -> ServicePatterns:
    if isinstance(spec, dict):
        return ServicePatterns.default_for(spec["domain"], spec["hosts"])
    return ServicePatterns.parse(spec)


def corpus_splits() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for sidecar in sorted(CORPUS.glob("*.json")):
        for number, case in enumerate(json.loads(sidecar.read_text()).get("splits", [])):
            cases.append((f"{sidecar.stem}-{number}", case))
    return cases


def hop(
    by: str | None, date: float | None, *, sender: str | None = None, proto: str = "ESMTP"
) -> Hop:
    return Hop(from_host=sender, by_host=by, with_proto=proto, date=date)


def split(hops: list[Hop], accepted: float, arrived: float, **kwargs: Any) -> DelaySplit:
    options: dict[str, Any] = {"sent_at": accepted - 0.1, "sender": A, "recipient": B}
    options.update(kwargs)
    return split_delay(hops, accepted_at=accepted, arrived_at=arrived, **options)


def assert_consistent(result: DelaySplit) -> None:
    """Parts are never negative and, when all known, add up to the end-to-end delay."""
    parts = (result.send_delay, result.transit, result.receive_delay)
    assert all(part is None or part >= 0 for part in parts)
    assert result.skew >= 0
    assert result.end_to_end >= 0
    if None not in parts:
        total = math.fsum(part for part in parts if part is not None)
        assert math.isclose(total, result.end_to_end, rel_tol=0, abs_tol=1e-9)


@pytest.mark.parametrize(
    ("name", "case"), corpus_splits(), ids=[name for name, _ in corpus_splits()]
)
def test_corpus_chain_splits_as_expected(name: str, case: dict[str, Any]) -> None:
    """Real header chains between (and within) services split into the hand-computed parts."""
    sample = CORPUS / f"{name.rsplit('-', 1)[0]}.eml"
    accepted, arrived = unix(case["accepted_at"]), unix(case["arrived_at"])
    sent = unix(case["sent_at"])
    assert accepted is not None
    assert arrived is not None
    assert sent is not None
    result = split_delay(
        parse_chain(received_values(sample)),
        sent_at=sent,
        accepted_at=accepted,
        arrived_at=arrived,
        sender=patterns(case["sender"]),
        recipient=patterns(case["recipient"]),
    )
    expect = case["expect"]
    got = {key: getattr(result, key) for key in expect}
    assert got == {
        key: None if value is None else pytest.approx(value, abs=1e-6)
        for key, value in expect.items()
    }
    assert result.end_to_end == pytest.approx(arrived - accepted, abs=1e-9)
    assert_consistent(result)


def test_corpus_has_splits_for_two_services_one_service_relays_and_skew() -> None:
    """The split is exercised on enough real chains to cover each branch of the definition."""
    names = {name.rsplit("-", 1)[0] for name, _ in corpus_splits()}
    assert {"postfix_two_services", "postfix_dovecot_same_service", "relay_transit"} <= names
    assert {"skewed_recipient_clock", "broken_missing_date", "qmail_two_services"} <= names


# --- ownership ----------------------------------------------------------------------------


def test_patterns_parse_globs_names_addresses_and_networks() -> None:
    """Config strings become name globs (lower-cased, no trailing dot) and IP networks."""
    parsed = ServicePatterns.parse(
        ["*.Example.COM.", "mx?.example.com", "[192.0.2.1]", "2001:db8::/32"]
    )
    assert parsed.hosts == ("*.example.com", "mx?.example.com")
    assert parsed.networks == (
        ipaddress.ip_network("192.0.2.1/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )


def test_patterns_reject_an_empty_entry() -> None:
    """An empty pattern is a config mistake, not a pattern that matches nothing."""
    with pytest.raises(ValueError, match="empty"):
        ServicePatterns.parse(["*.example.com", " "])


@pytest.mark.parametrize(
    ("name", "owned"),
    [
        ("smtp.example.com", True),
        ("a.b.example.com", True),
        ("SMTP.EXAMPLE.COM.", True),
        ("example.com", False),
        ("badexample.com", False),
        ("mx1.example.net", True),
        ("mx12.example.net", False),
        ("relay.example.org", True),
        ("relay2.example.org", False),
        ("192.0.2.77", True),
        ("[192.0.2.77]", True),
        ("192.0.3.1", False),
        ("2001:db8:5::1", True),
        ("::ffff:192.0.2.77", False),
    ],
)
def test_matches_host_by_glob_exact_name_and_network(name: str, owned: bool) -> None:
    """Globs need a label before "*.", "?" is one character, names are exact, IPs match CIDRs."""
    service = ServicePatterns.parse(
        ["*.example.com", "mx?.example.net", "relay.example.org", "192.0.2.0/24", "2001:db8::/32"]
    )
    assert service.matches_host(name) is owned


def test_default_patterns_cover_the_domain_and_the_server_hosts() -> None:
    """Defaults: domain, its subdomains, each host, its parent's subdomains; never a bare TLD."""
    service = ServicePatterns.default_for(
        "probe@Example.com", ["smtp.mail.example.net", "mail.test", "192.0.2.5"]
    )
    assert service.hosts == (
        "example.com",
        "*.example.com",
        "smtp.mail.example.net",
        "*.mail.example.net",
        "mail.test",
    )
    assert service.networks == (ipaddress.ip_network("192.0.2.5/32"),)
    assert not service.matches_host("other.test")
    assert ServicePatterns.default_for("") == ServicePatterns()


def test_a_hop_belongs_to_the_service_that_wrote_it() -> None:
    """by decides; an anonymous by (localhost, none) falls back to the sending side of the hop."""
    assert A.matches(hop("mx.a.example", None, sender="out.b.example"))
    assert not A.matches(hop("mx.b.example", None, sender="out.a.example"))
    assert A.matches(hop("localhost", None, sender="mx.a.example"))
    assert A.matches(Hop(from_ip="192.0.2.1", by_host=None, from_host="filter.a.example"))
    assert not A.matches(hop(None, None))
    assert ServicePatterns.parse(["127.0.0.1"]).matches(hop("127.0.0.1", None))


# --- split rules --------------------------------------------------------------------------


def test_two_services_split_at_the_first_hop_the_recipient_wrote() -> None:
    """Send ends and receive starts at the MX hop; its date is the middle of its second."""
    hops = [hop("smtp.a.example", T0), hop("mx.b.example", T0 + 3), hop("imap.b.example", T0 + 4)]
    result = split(hops, T0 + 0.25, T0 + 5.0)
    assert result == DelaySplit(3.25, 0.0, 1.5, 0.0, 4.75)


def test_delivery_within_the_same_second_is_not_skew() -> None:
    """Hops dated 10:00:05 next to an acceptance at 05.7 happened in [05, 06): no skew, parts >= 0."""
    hops = [hop("smtp.a.example", T0), hop("mx.b.example", T0), hop("imap.b.example", T0)]
    result = split(hops, T0 + 0.7, T0 + 0.9)
    assert result.skew == 0
    assert result.send_delay == pytest.approx(0.1, abs=1e-6)
    assert result.receive_delay == pytest.approx(0.1, abs=1e-6)
    assert_consistent(result)


def test_submission_hop_dated_before_the_reply_is_not_skew() -> None:
    """The submission server dates its hop at MAIL FROM; a slow end-of-DATA filter is not skew."""
    hops = [hop("smtp.a.example", T0 - 4), hop("mx.b.example", T0 + 2)]
    result = split(hops, T0 + 0.5, T0 + 3.5, sent_at=T0 - 4.2)
    assert result.skew == 0
    assert result.send_delay == pytest.approx(2.0)


def test_recipient_hop_before_acceptance_is_skew_and_clamped() -> None:
    """A hop after the send point dated whole seconds before accepted_at shows that many seconds."""
    hops = [hop("smtp.a.example", T0), hop("mx.b.example", T0 - 3)]
    result = split(hops, T0 + 0.5, T0 + 2.0)
    assert result.skew == 3
    assert (result.send_delay, result.transit, result.receive_delay) == (0.0, 0.0, 1.5)


def test_hop_dated_after_arrival_is_skew_and_clamped() -> None:
    """A recipient clock ahead of the agent shows as skew and the receive delay becomes 0."""
    hops = [hop("smtp.a.example", T0), hop("mx.b.example", T0 + 9)]
    result = split(hops, T0 + 0.5, T0 + 2.5)
    assert result.skew == 7
    assert (result.send_delay, result.receive_delay) == (2.0, 0.0)


def test_same_service_splits_at_the_mailbox_store_hand_off() -> None:
    """One service end to end: send ends at the LMTP hop, not at the first hop after submission."""
    hops = [
        hop("smtp.a.example", T0),
        hop("out.a.example", T0 + 1),
        hop("store.a.example", T0 + 5, proto="LMTP"),
        hop("store.a.example", T0 + 6, proto="sieve-forward"),
    ]
    result = split(hops, T0 + 0.5, T0 + 8.0, recipient=A)
    assert result == DelaySplit(5.0, 0.0, 2.5, 0.0, 7.5)


def test_same_service_without_lmtp_uses_the_last_recipient_hop() -> None:
    """Gmail-style internal delivery has no LMTP hop; the recipient's last hop stands in for it."""
    google = ServicePatterns.parse(["*.a.example", "2002:a05::/32"])
    hops = [hop("smtp.a.example", T0), hop("mx.a.example", T0 + 1), hop("2002:a05::1", T0 + 2)]
    result = split(hops, T0 + 0.5, T0 + 4.0, sender=google, recipient=google)
    assert result == DelaySplit(2.0, 0.0, 1.5, 0.0, 3.5)


def test_chain_that_never_leaves_the_sender_and_never_reaches_the_recipient_has_no_parts() -> None:
    """Patterns that do not fit the chain give None parts rather than a guess."""
    hops = [hop("smtp.a.example", T0), hop("mx.a.example", T0 + 1)]
    result = split(hops, T0 + 0.5, T0 + 4.0)
    assert (result.send_delay, result.transit, result.receive_delay) == (None, None, None)
    assert result.end_to_end == 3.5


def test_unknown_sender_still_gives_the_receive_delay() -> None:
    """Without a hop the sender wrote, only the recipient's part is placed."""
    hops = [hop("smtp.x.example", T0), hop("mx.b.example", T0 + 2)]
    result = split(hops, T0 + 0.5, T0 + 4.0)
    assert (result.send_delay, result.transit, result.receive_delay) == (None, None, 1.5)


def test_unknown_recipient_still_gives_the_send_delay() -> None:
    """Without a hop the recipient wrote, only the sender's part is placed."""
    hops = [hop("smtp.a.example", T0), hop("mx.x.example", T0 + 2)]
    result = split(hops, T0 + 0.5, T0 + 4.0)
    assert (result.send_delay, result.transit, result.receive_delay) == (2.0, None, None)


def test_anonymous_hop_inside_the_sender_does_not_end_the_send_delay() -> None:
    """A "by localhost" content-filter hop is the sender's when the next hop comes from the sender."""
    hops = [
        hop("smtp.a.example", T0),
        hop("localhost", T0 + 1, sender="smtp.a.example"),
        Hop(from_host="localhost", from_ip="127.0.0.1", by_host="smtp.a.example", date=T0 + 2),
        hop("mx.b.example", T0 + 5, sender="smtp.a.example"),
    ]
    assert split(hops, T0 + 0.5, T0 + 6.0).send_delay == pytest.approx(5.0)


def test_store_named_by_a_bare_hostname_is_the_hand_off_of_its_sender() -> None:
    """Dovecot says "by <machine hostname>" unless configured; the LMTP hop stays in the service."""
    hops = [
        Hop(from_host="localhost", by_host="mail.test", with_proto="ESMTPSA", date=T0),
        Hop(from_host="mail.test", by_host="c0ffee42", with_proto="LMTP", date=T0 + 1),
    ]
    service = ServicePatterns.default_for("mail.test", ["127.0.0.1"])
    result = split(hops, T0 + 0.25, T0 + 1.75, sender=service, recipient=service)
    assert result == DelaySplit(1.125, 0.0, 0.375, 0.0, 1.5)


def test_no_hops_or_no_dates_keep_only_end_to_end() -> None:
    """Nothing to place: parts are None, skew 0, end_to_end is the agent's measurement."""
    for hops in ([], [hop("smtp.a.example", None), hop("mx.b.example", None)]):
        assert split(hops, T0 + 0.25, T0 + 9.5) == DelaySplit(None, None, None, 0.0, 9.25)


def test_without_acceptance_time_the_split_starts_at_sent_at() -> None:
    """If the 250 reply was never seen, sent_at is the start of the send delay."""
    hops = [hop("smtp.a.example", T0), hop("mx.b.example", T0 + 2)]
    result = split_delay(
        hops, sent_at=T0 + 0.5, accepted_at=None, arrived_at=T0 + 4.0, sender=A, recipient=B
    )
    assert result == DelaySplit(2.0, 0.0, 1.5, 0.0, 3.5)


def test_arrival_seen_before_the_reply_counts_as_zero_delay() -> None:
    """The watcher can see a message before the 250 reaches the client; no part goes negative."""
    hops = [hop("smtp.a.example", T0), hop("mx.b.example", T0)]
    result = split(hops, T0 + 0.6, T0 + 0.4)
    assert result == DelaySplit(0.0, 0.0, 0.0, 0.0, 0.0)


# --- properties ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    """A generated delivery: true event times, the hops they produced, and the agent's times."""

    hops: tuple[Hop, ...]
    times: tuple[float, ...]
    sent_at: float
    accepted_at: float
    arrived_at: float
    leave: int
    reach: int


@st.composite
def journeys(draw: st.DrawFn) -> Journey:
    accepted = draw(st.floats(1.6e9, 1.9e9))
    sent = accepted - draw(st.floats(0, 5))
    owners = (
        ["a"] * draw(st.integers(1, 3))
        + ["c"] * draw(st.integers(0, 2))
        + ["b"] * draw(st.integers(1, 3))
    )
    # The submission hop is written before the 250 reply; every later hop after it.
    times = [draw(st.floats(sent, accepted))]
    moment = accepted
    for _ in owners[1:]:
        moment += draw(st.floats(0, 900))
        times.append(moment)
    arrived = moment + draw(st.floats(0, 900))
    hops = tuple(
        Hop(by_host=f"h{i}.{owner}.example", with_proto="ESMTP", date=float(math.floor(t)))
        for i, (owner, t) in enumerate(zip(owners, times, strict=True))
    )
    return Journey(
        hops,
        tuple(times),
        sent,
        accepted,
        arrived,
        owners.index("c" if "c" in owners else "b"),
        owners.index("b"),
    )


def split_journey(journey: Journey, hops: tuple[Hop, ...] | None = None) -> DelaySplit:
    return split_delay(
        journey.hops if hops is None else hops,
        sent_at=journey.sent_at,
        accepted_at=journey.accepted_at,
        arrived_at=journey.arrived_at,
        sender=A,
        recipient=B,
    )


@given(journeys())
def test_generated_chains_split_into_nonnegative_parts_that_add_up(journey: Journey) -> None:
    """Parts are >= 0, sum to end_to_end, show no skew, and are within a second of the truth."""
    result = split_journey(journey)
    assert_consistent(result)
    assert None not in (result.send_delay, result.transit, result.receive_delay)
    assert result.skew == 0
    assert result.end_to_end == journey.arrived_at - journey.accepted_at
    true_send = journey.times[journey.leave] - journey.accepted_at
    true_receive = journey.arrived_at - journey.times[journey.reach]
    assert result.send_delay is not None
    assert result.receive_delay is not None
    assert abs(result.send_delay - true_send) <= 1
    assert abs(result.receive_delay - true_receive) <= 1


@given(journeys(), st.data(), st.integers(1, 3600))
def test_injected_backwards_step_is_reported_as_skew(
    journey: Journey, data: st.DataObject, step: int
) -> None:
    """A hop dated `step` seconds before everything it follows shows skew == step; parts stay sane."""
    at = data.draw(st.integers(journey.leave, len(journey.hops) - 1))
    before = [math.floor(journey.accepted_at), *(hop.date or 0 for hop in journey.hops[:at])]
    hops = list(journey.hops)
    hops[at] = replace(hops[at], date=float(max(before) - step))
    result = split_journey(journey, tuple(hops))
    assert result.skew == step
    assert_consistent(result)


@given(journeys(), st.integers(1, 3600))
def test_last_hop_ahead_of_arrival_is_reported_as_skew(journey: Journey, step: int) -> None:
    """A final hop dated `step` seconds after the second the watcher saw the message shows that skew."""
    hops = list(journey.hops)
    hops[-1] = replace(hops[-1], date=float(math.floor(journey.arrived_at) + step))
    result = split_journey(journey, tuple(hops))
    assert result.skew == step
    assert_consistent(result)


@given(
    journeys(),
    st.lists(st.none() | st.floats(1.5e9, 2.0e9), min_size=1, max_size=8),
    st.floats(-10, 10),
)
def test_any_dates_at_all_keep_the_parts_consistent(
    journey: Journey, dates: list[float | None], late: float
) -> None:
    """Random, missing or wildly skewed dates never produce a negative part or a broken sum."""
    hops = tuple(
        replace(hop, date=date)
        for hop, date in zip(journey.hops, dates * len(journey.hops), strict=False)
    )
    result = split_delay(
        hops,
        sent_at=journey.sent_at,
        accepted_at=journey.accepted_at,
        arrived_at=journey.accepted_at + late,
        sender=A,
        recipient=B,
    )
    assert_consistent(result)
    assert math.isclose(result.end_to_end, max(late, 0), abs_tol=1e-6)
