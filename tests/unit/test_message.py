"""Probe messages: build -> verify round trips, and everything else is rejected."""

from __future__ import annotations

from email import message_from_bytes

from hypothesis import given
from hypothesis import strategies as st

from mailprobe.probes.message import (
    HEADER_SENT,
    HEADER_SIGNATURE,
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
