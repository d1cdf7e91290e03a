"""One probe through its whole life, as one frozen record, and the rules that judge it.

A probe is created when its submission ends: ``sent`` (the server took it) or ``failed``. While it
is on its way it may become ``overdue`` (past ``overdue_after``) and ``lost`` (past ``lost_after``);
when it shows up it is ``ok`` or, if it had been overdue already, ``late`` (a lost probe that turns
up after all is late too, with its real delay). Each step is a new record (``dataclasses.replace``),
never a mutation; the ledger keeps the newest one per probe id.

Status only moves forward: ``RANK`` orders them, so a step seen twice, or replayed after a restart,
is recognised as nothing new. Every rule that judges a probe (over the maximum, within the receive
deadline, a receive sample) is coded here and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from mailprobe.probes.errors import Phase, Reason


class Status(enum.StrEnum):
    """Where a probe is in its life."""

    SENT = "sent"  # accepted by the sender's service, not seen yet
    OVERDUE = "overdue"  # still not seen past overdue_after (it may yet arrive: then LATE)
    LOST = "lost"  # given up after lost_after (it may yet arrive: then LATE)
    OK = "ok"  # seen before overdue_after
    LATE = "late"  # seen after it had become overdue; the delay is still its real delay
    FAILED = "failed"  # submission failed, or the mailbox could not be watched


RANK: Mapping[Status, int] = MappingProxyType(
    {
        Status.SENT: 0,
        Status.OVERDUE: 1,
        Status.LOST: 2,
        Status.OK: 3,
        Status.LATE: 3,
        Status.FAILED: 3,
    }
)
"""Status order: a record replaces the stored one only when its status ranks higher."""

IN_FLIGHT = frozenset({Status.SENT, Status.OVERDUE})
"""Accepted and still awaited."""
ARRIVED = frozenset({Status.OK, Status.LATE})
_MARKS = ("overdue_at", "lost_at", "over_max_at")


def past_deadline(sent_at: float, at: float, deadline: float) -> bool:
    """More than ``deadline`` has passed between a send at ``sent_at`` and ``at``: the receive rule.

    A probe that arrives at exactly the deadline is in time; one still missing then is not late
    yet. The accounting asks this of probes it still awaits, ``receive_sample`` of arrived ones.
    """
    return at - sent_at > deadline


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Probe:
    """A probe's record; times are Unix seconds, durations seconds.

    ``found_late``: the probe was found in the mailbox at (re)connect, not seen arriving, so
    ``arrived_at`` is only the earliest moment the agent could have seen it (never before its send
    time) and its delay is an upper bound, not a measurement. ``arrival_error_seconds``: how far
    ``arrived_at`` can be off (half the bracket between the look that did not see the probe and the
    one that did; None when found late, or recorded before bounds were kept). ``junked``: it was
    delivered into the junk folder (spam), not the inbox. ``clock_skew_seconds``: the largest
    backwards step between its Received hops (server clocks disagree). ``overdue_at``, ``lost_at`` and
    ``over_max_at`` are the instants it passed those marks (kept when it later arrives).
    """

    probe_id: str
    route: str
    status: Status
    sent_at: float
    accepted_at: float | None = None
    arrived_at: float | None = None
    delay_seconds: float | None = None
    phase: Phase | None = None
    reason: Reason | None = None
    reply_code: int | None = None
    phases: Mapping[str, float] = field(default_factory=dict)
    internaldate: float | None = None
    received: tuple[str, ...] = ()
    send_delay_seconds: float | None = None
    receive_delay_seconds: float | None = None
    clock_skew_seconds: float | None = None
    found_late: bool = False
    overdue_at: float | None = None
    lost_at: float | None = None
    over_max_at: float | None = None
    arrival_error_seconds: float | None = None
    junked: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        if self.phase is not None:
            object.__setattr__(self, "phase", Phase(self.phase))
        if self.reason is not None:
            object.__setattr__(self, "reason", Reason(self.reason))
        object.__setattr__(self, "phases", _frozen(self.phases))
        object.__setattr__(self, "received", tuple(self.received))

    # -- where it is

    @property
    def accepted(self) -> bool:
        """The sender's service took it (an accepted probe can no longer fail to send)."""
        return self.accepted_at is not None and self.status is not Status.FAILED

    @property
    def in_flight(self) -> bool:
        """Accepted and still awaited."""
        return self.status in IN_FLIGHT and self.accepted_at is not None

    @property
    def arrived(self) -> bool:
        """Seen in the mailbox."""
        return self.status in ARRIVED

    @property
    def send_failed(self) -> bool:
        """Submission failed: a down-sample of the route's send check."""
        return self.status is Status.FAILED and self.phase is not None and self.phase.submission

    @property
    def measured_delay(self) -> float | None:
        """The delay as a measurement: None while not arrived, or when it was only found late."""
        return None if self.found_late else self.delay_seconds

    def supersedes(self, other: Probe) -> bool:
        """True when this record is news against ``other``: a later status, or a new mark."""
        if RANK[self.status] != RANK[other.status]:
            return RANK[self.status] > RANK[other.status]
        if self.status is not other.status:
            return False  # ok, late and failed are all final: the first one stands
        return any(getattr(self, m) is not None and getattr(other, m) is None for m in _MARKS)

    # -- its life

    def arrive(
        self,
        arrived_at: float,
        *,
        internaldate: float | None = None,
        received: tuple[str, ...] = (),
        found_late: bool = False,
        error: float | None = None,
        junked: bool | None = None,
    ) -> Probe:
        """The record once the probe was seen; ``late`` when it had been overdue or lost.

        ``error``: ``arrived_at`` is the middle of a bracket that wide each way. A probe is not
        in the mailbox before the sender's service accepted it, so the bracket is cut there.
        """
        if error is not None:
            floor = self.accepted_at if self.accepted_at is not None else self.sent_at
            high = arrived_at + error
            low = min(max(arrived_at - error, floor), high)
            arrived_at, error = (low + high) / 2.0, (high - low) / 2.0
        arrived_at = max(arrived_at, self.sent_at)
        late = self.status in (Status.OVERDUE, Status.LOST)
        phases = dict(self.phases)
        phases["delivery"] = max(0.0, arrived_at - (self.accepted_at or self.sent_at))
        return replace(
            self,
            status=Status.LATE if late else Status.OK,
            arrived_at=arrived_at,
            delay_seconds=arrived_at - self.sent_at,
            phase=None,
            reason=None,
            phases=phases,
            internaldate=internaldate,
            received=received,
            found_late=found_late,
            arrival_error_seconds=None if found_late else error,
            junked=junked,
        )

    def overdue(self, at: float) -> Probe:
        """The record once it passed overdue_after undelivered."""
        return replace(self, status=Status.OVERDUE, overdue_at=at)

    def lost(self, at: float) -> Probe:
        """The record once it is given up (it may still arrive: then it becomes late)."""
        return replace(
            self, status=Status.LOST, lost_at=at, phase=Phase.DELIVERY, reason=Reason.LOST
        )

    def past_maximum(self, at: float) -> Probe:
        """The record once it passed the contract's delay maximum."""
        return replace(self, over_max_at=at)

    # -- the rules

    def over_maximum_at(self, maximum: float) -> float | None:
        """When this probe passes the delay maximum, or None if it never does.

        An accepted probe is over the maximum when it arrived more than ``maximum`` after its send
        time, or had not arrived by then (the caller compares with now). It counts at ``sent_at +
        maximum``: once, in the month it passed the mark. A probe only found late is over the
        maximum only when the server's own receipt date (INTERNALDATE) proves it.
        """
        if not self.accepted:
            return None
        mark = self.sent_at + maximum
        if not self.arrived:
            return mark
        if self.found_late:
            return mark if self._server_proves_later_than(maximum) else None
        assert self.delay_seconds is not None  # noqa: S101 - arrived records carry it
        return mark if self.delay_seconds > maximum else None

    def receive_sample(self, deadline: float) -> bool | None:
        """What this probe says of the receive check at its send time, once it knows.

        True: it arrived within ``deadline``. False: it arrived later, was lost, or its mailbox
        could not be watched. None: nothing (not accepted, or not arrived yet). A probe only found
        late shows neither that the mailbox worked nor that it did not (the agent or its session
        was away), unless the server's receipt date proves it came after the deadline.
        """
        if self.status is Status.FAILED:
            return False if self.phase in (Phase.IMAP, Phase.DELIVERY) else None
        if self.status is Status.LOST:
            return False
        if not self.arrived:
            return None
        if self.found_late:
            return False if self._server_proves_later_than(deadline) else None
        assert self.arrived_at is not None  # noqa: S101 - arrived records carry it
        return not past_deadline(self.sent_at, self.arrived_at, deadline)

    def _server_proves_later_than(self, seconds: float) -> bool:
        """The server's receipt date (whole seconds) is more than ``seconds`` after sending."""
        return self.internaldate is not None and past_deadline(
            self.sent_at, self.internaldate - 1.0, seconds
        )

    def describe(self) -> str:
        """One log line (logfmt) for this record."""
        parts = [f"probe route={self.route} id={self.probe_id[:12]} status={self.status}"]
        if self.delay_seconds is not None:
            parts.append(f"delay={self.delay_seconds:.3f}s")
        if self.arrival_error_seconds is not None:
            parts.append(f"error={self.arrival_error_seconds:.3f}s")
        if self.found_late:
            parts.append("found_late=true")
        if self.junked:
            parts.append("junked=true")
        if self.reason is not None:
            parts.append(f"phase={self.phase} reason={self.reason}")
        if self.reply_code:
            parts.append(f"reply_code={self.reply_code}")
        parts.extend(f"{k}={v:.3f}s" for k, v in self.phases.items())
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Sighting:
    """What a mailbox watcher saw of a verified probe."""

    probe_id: str
    arrived_at: float
    internaldate: float | None = None
    received: tuple[str, ...] = ()
    found_late: bool = False
    error: float | None = None  # arrived_at is off by at most this
    junked: bool | None = None  # seen in the junk folder; None: that folder was not watched
