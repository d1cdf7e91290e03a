"""Other agents' probes: when a watcher removes a stale one, and which of several goes first."""

from __future__ import annotations

import pytest

from mailprobe.probes.foreign import DEFER_MAX, DEFER_MIN, ForeignProbes, defer_for
from mailprobe.probes.message import ProbeStamp


def stamp(sent_at: float, agent: str = "gone") -> ProbeStamp:
    return ProbeStamp(probe_id="p", route="r", sent_at=sent_at, agent=agent)


@pytest.mark.parametrize(
    ("max_age", "defer"),
    [(1.0, DEFER_MIN), (20.0, DEFER_MIN), (300.0, 30.0), (6 * 3600.0, DEFER_MAX)],
)
def test_deferral_is_a_tenth_of_max_age_within_bounds(max_age: float, defer: float) -> None:
    assert defer_for(max_age) == defer


def test_alone_a_watcher_removes_a_stale_probe_at_max_age() -> None:
    probes = ForeignProbes(max_age=100.0, own="agent-m")
    probes.add(7, stamp(sent_at=1000.0))
    assert probes.next_expiry(1050.0) == 1100.0
    assert probes.due(1099.9) == []
    assert probes.due(1100.0) == [7]


def test_a_lower_live_identity_goes_first_and_the_others_wait_the_deferral() -> None:
    """agent-m has seen agent-a's fresh probe: agent-a removes at max age, agent-m after."""
    probes = ForeignProbes(max_age=100.0, own="agent-m")
    probes.add(7, stamp(sent_at=1000.0))
    probes.add(8, stamp(sent_at=1050.0, agent="agent-a"))
    assert not probes.first_in_line(1100.0)
    assert probes.due(1100.0) == []
    assert probes.next_expiry(1100.0) == 1000.0 + 100.0 + probes.defer
    assert probes.due(1000.0 + 100.0 + probes.defer) == [7]


def test_a_higher_identity_does_not_hold_a_watcher_back() -> None:
    probes = ForeignProbes(max_age=100.0, own="agent-m")
    probes.add(7, stamp(sent_at=1000.0))
    probes.add(8, stamp(sent_at=1050.0, agent="agent-z"))
    assert probes.first_in_line(1100.0)
    assert probes.due(1100.0) == [7]


def test_an_agent_not_heard_from_within_max_age_is_no_longer_live() -> None:
    """A lower identity whose newest probe is older than max age has stopped: no deferral."""
    probes = ForeignProbes(max_age=100.0, own="agent-m")
    probes.add(8, stamp(sent_at=1000.0, agent="agent-a"))
    assert not probes.first_in_line(1099.0)
    assert probes.first_in_line(1100.0)
    assert probes.due(1100.0) == [8]  # and its own probe is the stale one now
