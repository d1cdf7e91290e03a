"""Probe messages: build -> verify round trips, and everything else is rejected."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.probes.message import (
    HEADER_AGENT,
    HEADER_SENT,
    HEADER_SIGNATURE,
    HEADER_VANTAGE,
    build_probe,
    new_probe_id,
    verify_probe,
)

routes = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
times = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)
secrets_ = st.binary(min_size=1, max_size=64)


@given(route=routes, sent_at=times, secret=secrets_)
def test_built_probe_verifies_with_its_secret(route: str, sent_at: float, secret: bytes) -> None:
    """A probe verifies and carries its route, id and send time to the microsecond."""
    pid = new_probe_id()
    stamp, raw = build_probe(
        secret=secret, route=route, sender="a@x.test", recipient="b@y.test",
        sent_at=sent_at, probe_id=pid,
    )  # fmt: skip
    got = verify_probe(raw, secret)
    assert got == stamp
    assert got.probe_id == pid
    assert got.route == route
    assert got.sent_at == float(f"{sent_at:.6f}")


@given(route=routes, sent_at=times, secret=secrets_, other=secrets_)
def test_probe_does_not_verify_with_another_secret(
    route: str, sent_at: float, secret: bytes, other: bytes
) -> None:
    """A probe signed with another key is not ours."""
    _, raw = build_probe(
        secret=secret, route=route, sender="a@x.test", recipient="b@y.test", sent_at=sent_at
    )
    if other != secret:
        assert verify_probe(raw, other) is None


@given(new_sent=times)
def test_tampered_send_time_is_rejected(new_sent: float) -> None:
    """Changing the signed send time breaks the signature."""
    _, raw = build_probe(
        secret=b"k", route="r", sender="a@x.test", recipient="b@y.test", sent_at=1000.5
    )
    msg = message_from_bytes(raw)
    forged = f"{new_sent:.6f}"
    if forged == msg[HEADER_SENT]:
        return
    msg.replace_header(HEADER_SENT, forged)
    assert verify_probe(msg.as_bytes(), b"k") is None


def test_duplicated_signed_header_is_rejected() -> None:
    """A second copy of a signed header (a classic forgery trick) is refused."""
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=1.0)
    msg = message_from_bytes(raw)
    msg[HEADER_SIGNATURE] = msg[HEADER_SIGNATURE]
    assert verify_probe(msg.as_bytes(), b"k") is None


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_verify_or_raise(data: bytes) -> None:
    """Hostile input is simply not a probe."""
    assert verify_probe(data, b"k") is None


def test_subject_is_readable() -> None:
    """The subject names the tool, the route and the probe."""
    stamp, raw = build_probe(secret=b"k", route="internal", sender="a@x", recipient="b@y",
                             sent_at=1_800_000_000.25)  # fmt: skip
    subject = message_from_bytes(raw)["Subject"]
    assert subject.startswith("mailprobe internal " + stamp.probe_id[:8])


agents = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)


@given(route=routes, sent_at=times, agent=agents)
def test_probe_carries_its_agent_identity_signed(route: str, sent_at: float, agent: str) -> None:
    """A probe built with an agent identity verifies and names that agent."""
    stamp, raw = build_probe(secret=b"k", route=route, sender="a@x", recipient="b@y",
                             sent_at=sent_at, agent=agent)  # fmt: skip
    assert message_from_bytes(raw)[HEADER_AGENT] == agent
    got = verify_probe(raw, b"k")
    assert got == stamp
    assert got is not None
    assert got.agent == agent


def test_probe_without_identity_still_verifies_with_no_agent() -> None:
    """A v1 probe (sent before agent identities) verifies; its stamp has agent None."""
    stamp, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0)
    assert HEADER_AGENT not in message_from_bytes(raw)
    assert message_from_bytes(raw)[HEADER_SIGNATURE].strip().startswith("v1=")
    got = verify_probe(raw, b"k")
    assert got == stamp
    assert got is not None
    assert got.agent is None


def test_changed_agent_header_is_rejected() -> None:
    """The agent identity is signed: claiming another agent's probe breaks the signature."""
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                         agent="agent-a")  # fmt: skip
    msg = message_from_bytes(raw)
    msg.replace_header(HEADER_AGENT, "agent-b")
    assert verify_probe(msg.as_bytes(), b"k") is None


def test_agent_header_added_to_a_v1_probe_is_rejected() -> None:
    """A v1 signature never vouches for an agent header someone added afterwards."""
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0)
    msg = message_from_bytes(raw)
    msg[HEADER_AGENT] = "agent-b"
    assert verify_probe(msg.as_bytes(), b"k") is None


def test_agent_header_removed_from_a_v2_probe_is_rejected() -> None:
    """Dropping the agent header does not turn a v2 probe into an ownerless one."""
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                         agent="agent-a")  # fmt: skip
    msg = message_from_bytes(raw)
    del msg[HEADER_AGENT]
    assert verify_probe(msg.as_bytes(), b"k") is None


def test_agent_identity_must_be_a_header_safe_token() -> None:
    """An identity with spaces or line breaks is refused when building."""
    with pytest.raises(ValueError, match="agent identity"):
        build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                    agent="bad\r\nX-Injected: 1")  # fmt: skip


vantages = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)


@given(route=routes, agent=agents, vantage=vantages)
def test_probe_carries_its_vantage_signed(route: str, agent: str, vantage: str) -> None:
    """A probe built with a vantage is a v3 probe that verifies and names the vantage."""
    stamp, raw = build_probe(secret=b"k", route=route, sender="a@x", recipient="b@y",
                             sent_at=5.0, agent=agent, vantage=vantage)  # fmt: skip
    msg = message_from_bytes(raw)
    assert msg[HEADER_VANTAGE] == vantage
    assert msg[HEADER_SIGNATURE].strip().startswith("v3=")
    got = verify_probe(raw, b"k")
    assert got == stamp
    assert got is not None
    assert (got.agent, got.vantage) == (agent, vantage)


def test_changed_vantage_header_is_rejected() -> None:
    """The vantage is signed: a probe cannot be moved to another vantage point afterwards."""
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                         agent="agent-a", vantage="berlin")  # fmt: skip
    msg = message_from_bytes(raw)
    msg.replace_header(HEADER_VANTAGE, "paris")
    assert verify_probe(msg.as_bytes(), b"k") is None


def test_vantage_header_added_to_a_v2_probe_is_rejected() -> None:
    """A v2 signature never vouches for a vantage header someone added afterwards."""
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                         agent="agent-a")  # fmt: skip
    msg = message_from_bytes(raw)
    msg[HEADER_VANTAGE] = "berlin"
    assert verify_probe(msg.as_bytes(), b"k") is None


def test_vantage_header_removed_from_a_v3_probe_is_rejected() -> None:
    """Dropping the vantage header does not leave a valid v2 probe behind."""
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                         agent="agent-a", vantage="berlin")  # fmt: skip
    msg = message_from_bytes(raw)
    del msg[HEADER_VANTAGE]
    assert verify_probe(msg.as_bytes(), b"k") is None


def test_repeated_vantage_header_is_rejected() -> None:
    """Two vantage headers are a forgery attempt, even if one of them is the signed one."""
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                         agent="agent-a", vantage="berlin")  # fmt: skip
    msg = message_from_bytes(raw)
    msg[HEADER_VANTAGE] = "berlin"
    assert verify_probe(msg.as_bytes(), b"k") is None


@pytest.mark.parametrize("vantage", ["two words", "x\r\nX-Injected: 1", "", "é"])
def test_vantage_must_be_a_header_safe_token(vantage: str) -> None:
    """A vantage name that is not a plain token is refused when building."""
    with pytest.raises(ValueError, match="vantage"):
        build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                    agent="agent-a", vantage=vantage)  # fmt: skip


def test_vantage_needs_an_agent_identity() -> None:
    """A vantage without an agent identity has no signature version to go in."""
    with pytest.raises(ValueError, match="vantage"):
        build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=5.0,
                    vantage="berlin")  # fmt: skip
