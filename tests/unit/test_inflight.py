"""The in-flight registry: matching arrivals, the marks it sweeps, late arrivals keep their delay."""

from __future__ import annotations

import pytest

from mailprobe.agent.inflight import InFlight, Marks
from mailprobe.agent.probe import Probe, Sighting, Status
from mailprobe.probes.errors import Phase, Reason

T0 = 1_800_000_000.0
PID = "a" * 32


def sent(pid: str = PID, route: str = "r") -> Probe:
    return Probe(pid, route, Status.SENT, T0, accepted_at=T0 + 0.01,
                 phases={"smtp_submit": 0.004})  # fmt: skip


def registry(lost_after: float = 7200, maximum: float = 3600) -> InFlight:
    return InFlight({"r": Marks(3600, lost_after), "s": Marks(3600, lost_after)}, maximum)


def test_arrival_is_matched_once_with_its_real_delay() -> None:
    """An arrival yields one OK record; the same probe seen again is not matched twice."""
    flight = registry()
    flight.add(sent())
    arrived = flight.arrive(Sighting(PID, T0 + 2.5))
    assert arrived is not None
    assert arrived.status is Status.OK
    assert arrived.delay_seconds == 2.5
    assert arrived.phases["delivery"] == pytest.approx(2.49)
    assert arrived.phases["smtp_submit"] == 0.004
    assert flight.arrive(Sighting(PID, T0 + 3)) is None
    assert len(flight) == 0


def test_unknown_probe_is_not_matched() -> None:
    """A verified probe that is not held gives no record."""
    assert registry().arrive(Sighting("b" * 32, T0)) is None


def test_overdue_once_then_late_arrival_keeps_real_delay_and_the_mark() -> None:
    """Past overdue_after the probe is overdue once; arriving later it is late, delay intact."""
    flight = registry()
    flight.add(sent())
    assert flight.sweep(T0 + 3599) == []
    ((old, overdue),) = flight.sweep(T0 + 3600)
    assert (old.status, overdue.status, overdue.overdue_at) == (Status.SENT, Status.OVERDUE, T0 + 3600)
    assert overdue.over_max_at == T0 + 3600  # the contract's maximum passes at the same mark
    assert flight.sweep(T0 + 3700) == []
    late = flight.arrive(Sighting(PID, T0 + 4000))
    assert late is not None
    assert (late.status, late.delay_seconds, late.overdue_at) == (Status.LATE, 4000, T0 + 3600)


def test_lost_after_lost_after_and_let_go_once_past_the_maximum() -> None:
    """A lost probe is handed back once, then no longer held (the ledger still matches it)."""
    flight = registry()
    flight.add(sent())
    flight.sweep(T0 + 3600)
    ((_, lost),) = flight.sweep(T0 + 7200)
    assert (lost.status, lost.phase, lost.reason, lost.lost_at) == (
        Status.LOST, Phase.DELIVERY, Reason.LOST, T0 + 7200,
    )  # fmt: skip
    assert len(flight) == 0


def test_a_lost_probe_is_held_until_it_passed_the_maximum() -> None:
    """lost_after shorter than the delay maximum: the over-maximum mark still comes, once."""
    flight = registry(lost_after=120, maximum=3600)
    flight.add(sent())
    ((_, lost),) = flight.sweep(T0 + 120)
    assert lost.status is Status.LOST
    assert lost.over_max_at is None
    assert flight.count("r") == 0
    assert len(flight) == 1
    ((_, marked),) = flight.sweep(T0 + 3600)
    assert marked.over_max_at == T0 + 3600
    assert len(flight) == 0


def test_counts_and_awaited_send_times_per_route() -> None:
    """Counts and the send times a watcher polls for are per route."""
    flight = registry()
    flight.add(sent("1" * 32, "r"))
    flight.add(sent("2" * 32, "r"))
    flight.add(sent("3" * 32, "s"))
    assert (flight.count("r"), flight.count("s")) == (2, 1)
    assert flight.awaited(frozenset({"s"})) == [T0]
    assert len(flight.awaited(frozenset({"r", "s"}))) == 3


def test_only_accepted_probes_of_known_routes_are_held() -> None:
    """A failed submission or a route not configured is refused, not silently dropped."""
    flight = registry()
    with pytest.raises(ValueError, match="accepted"):
        flight.add(Probe(PID, "r", Status.FAILED, T0, phase=Phase.SMTP_CONNECT))
    with pytest.raises(ValueError, match="known route"):
        flight.add(sent(route="gone"))
