"""In-flight tracking: matching arrivals, overdue and lost deadlines, late arrivals keep their delay."""

from __future__ import annotations

from mailprobe.agent.inflight import InFlight, Pending, Sighting
from mailprobe.agent.results import Status

T0 = 1_800_000_000.0


def pending(pid: str = "a" * 32, route: str = "r") -> Pending:
    return Pending(pid, route, sent_at=T0, accepted_at=T0 + 0.01, overdue_after=3600,
                   lost_after=7200, phases={"smtp_submit": 0.004})  # fmt: skip


def test_arrival_is_matched_once_with_its_real_delay() -> None:
    """An arrival yields one OK result; the same probe seen again is not counted twice."""
    flight = InFlight()
    flight.add(pending())
    result = flight.arrive(Sighting("a" * 32, T0 + 2.5))
    assert result is not None
    assert result.status is Status.OK
    assert result.delay_seconds == 2.5
    assert abs(result.phases["delivery"] - 2.49) < 1e-6
    assert flight.arrive(Sighting("a" * 32, T0 + 3)) is None
    assert len(flight) == 0


def test_unknown_probe_is_not_matched() -> None:
    """A verified probe that is not in flight gives no result."""
    assert InFlight().arrive(Sighting("b" * 32, T0)) is None


def test_overdue_once_then_late_arrival_keeps_real_delay() -> None:
    """Past overdue_after: one OVERDUE result; arriving after that is LATE with the true delay."""
    flight = InFlight()
    flight.add(pending())
    assert flight.sweep(T0 + 3599) == []
    first = flight.sweep(T0 + 3600)
    assert [r.status for r in first] == [Status.OVERDUE]
    assert flight.sweep(T0 + 3700) == []  # overdue is reported once
    late = flight.arrive(Sighting("a" * 32, T0 + 4200))
    assert late is not None
    assert late.status is Status.LATE
    assert late.delay_seconds == 4200


def test_lost_after_deadline_is_final() -> None:
    """Past lost_after the probe is LOST with reason lost and no longer matched."""
    flight = InFlight()
    flight.add(pending())
    flight.sweep(T0 + 3600)
    lost = flight.sweep(T0 + 7200)
    assert [(r.status, r.reason, r.phase) for r in lost] == [(Status.LOST, "lost", "delivery")]
    assert flight.arrive(Sighting("a" * 32, T0 + 7300)) is None


def test_counts_per_route() -> None:
    """In-flight counts are kept per route."""
    flight = InFlight()
    flight.add(pending("a" * 32, "x"))
    flight.add(pending("b" * 32, "x"))
    flight.add(pending("c" * 32, "y"))
    assert (flight.count("x"), flight.count("y"), flight.count("z")) == (2, 1, 0)
