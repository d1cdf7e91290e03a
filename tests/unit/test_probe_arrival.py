"""An arrival's record: its error bound, the junk folder, and what they count (agent/probe.py,
agent/tally.py)."""

from __future__ import annotations

import pytest

from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.tally import Tally, new_facts


def _sent(accepted_at: float = 100.02) -> Probe:
    return Probe("p", "r", Status.SENT, 100.0, accepted_at=accepted_at)


def test_the_arrival_keeps_its_stamp_and_error_bound() -> None:
    """The watcher's middle and half-width become arrived_at and arrival_error_seconds."""
    arrived = _sent().arrive(100.5, error=0.02)
    assert arrived.arrived_at == pytest.approx(100.5)
    assert arrived.arrival_error_seconds == pytest.approx(0.02)
    assert arrived.delay_seconds == pytest.approx(0.5)


def test_the_bracket_is_cut_where_the_sender_accepted_the_probe() -> None:
    """Bracket 100.00..100.04 from the send time, accepted at 100.02: 100.03 +- 0.01."""
    arrived = _sent(accepted_at=100.02).arrive(100.02, error=0.02)
    assert arrived.arrived_at == pytest.approx(100.03)
    assert arrived.arrival_error_seconds == pytest.approx(0.01)


def test_a_probe_found_late_has_no_bound() -> None:
    """Not seen arriving: no measurement, no error bound."""
    arrived = _sent().arrive(150.0, found_late=True, error=None)
    assert arrived.arrival_error_seconds is None
    assert arrived.measured_delay is None


def test_a_junked_probe_is_delivered_and_counted_junked_once() -> None:
    """Filed as spam: received (connectivity is fine), junked, and the receive sample is up."""
    old = _sent()
    junked = old.arrive(101.0, error=1.0, junked=True)
    assert junked.status is Status.OK
    assert junked.receive_sample(300.0) is True
    assert new_facts(old, junked) == ["received", "junked"]
    tally = Tally()
    tally.add(None, old)
    tally.add(old, junked)
    tally.add(junked, junked)  # a repeat adds nothing
    assert (tally.get("r", "received"), tally.get("r", "junked")) == (1, 1)
    assert "junked=true" in junked.describe()


@pytest.mark.parametrize("junked", [False, None])
def test_an_inbox_arrival_is_not_junked(junked: bool | None) -> None:
    """In the inbox (junk folder watched or not): received, not junked."""
    old = _sent()
    assert new_facts(old, old.arrive(101.0, error=0.02, junked=junked)) == ["received"]
