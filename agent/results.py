"""The outcome of one probe, passed by value from the scheduler to the ledger, accounting and metrics."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Status(enum.StrEnum):
    """Where a probe ended up."""

    OK = "ok"  # arrived before overdue_after
    LATE = "late"  # arrived after it had become overdue; the delay is still its real delay
    OVERDUE = "overdue"  # still in flight past overdue_after (interim: may become LATE or LOST)
    LOST = "lost"  # not arrived after lost_after
    FAILED = "failed"  # submission failed, or the mailbox could not be watched


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome with its phase timings; times are Unix seconds."""

    probe_id: str
    route: str
    status: Status
    sent_at: float
    accepted_at: float | None = None
    arrived_at: float | None = None
    delay_seconds: float | None = None
    phase: str | None = None
    reason: str | None = None
    reply_code: int | None = None
    phases: Mapping[str, float] = field(default_factory=dict)
    internaldate: float | None = None
    received: tuple[str, ...] = ()
    send_delay_seconds: float | None = None
    receive_delay_seconds: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", _frozen(self.phases))

    @property
    def delivered(self) -> bool:
        """True when the probe was seen in the mailbox."""
        return self.arrived_at is not None
