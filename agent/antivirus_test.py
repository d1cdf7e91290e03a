"""One anti-virus test as the agent keeps it: a probe with the EICAR test file, and what became of it.

Outcomes, a fixed vocabulary (label values):

- ``pending``: sent, nothing known yet.
- ``refused``: the sender's service refused it at SMTP (the reply code is kept).
- ``stripped``: delivered with the attachment removed.
- ``replaced``: delivered with the attachment replaced by something else (a notice).
- ``quarantined``: delivered to a junk or quarantine folder the agent watches.
- ``not_seen``: not delivered within the route's ``antivirus.deadline`` (held, dropped, or filed
  where the agent does not look): the test virus did not reach the inbox.
- ``intact``: delivered with the test virus in it: the provider's scanning let it through.
- ``failed``: it could not be submitted for another reason (connect, TLS, login): it says
  nothing about the scanning.

Each test may have a follow-up: a clean probe of the route sent right after it, whose delay,
against the route's median, shows whether scanning delays mail.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Outcome(enum.StrEnum):
    """What the provider did with a test virus."""

    PENDING = "pending"
    REFUSED = "refused"
    STRIPPED = "stripped"
    REPLACED = "replaced"
    QUARANTINED = "quarantined"
    NOT_SEEN = "not_seen"
    INTACT = "intact"
    FAILED = "failed"


OUTCOMES = tuple(o for o in Outcome if o is not Outcome.PENDING)
"""The outcomes a test ends with (exported as label values)."""
STOPPED = frozenset({Outcome.REFUSED, Outcome.STRIPPED, Outcome.REPLACED, Outcome.QUARANTINED,
                     Outcome.NOT_SEEN})  # fmt: skip
"""Outcomes in which the test virus did not reach the inbox as sent."""


@dataclass(frozen=True, slots=True)
class AntivirusTest:
    """A test virus of one route: sent when, what became of it, and its clean follow-up."""

    probe_id: str
    route: str
    sent_at: float
    outcome: Outcome = Outcome.PENDING
    decided_at: float | None = None
    reply_code: int | None = None
    detail: str = ""  # for the log and the report, never a label
    follow_up: str | None = None  # probe id of the clean probe sent right after

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))

    @property
    def decided(self) -> bool:
        """The outcome is known."""
        return self.outcome is not Outcome.PENDING

    def decide(self, outcome: Outcome, at: float, *, reply_code: int | None = None,
               detail: str = "") -> AntivirusTest:  # fmt: skip
        """The record once its outcome is known."""
        return replace(self, outcome=outcome, decided_at=at,
                       reply_code=reply_code or self.reply_code, detail=detail)  # fmt: skip

    def describe(self) -> str:
        """One log line (logfmt)."""
        text = f"antivirus route={self.route} id={self.probe_id[:12]} outcome={self.outcome}"
        if self.reply_code:
            text += f" reply_code={self.reply_code}"
        return text + (f" detail={self.detail!r}" if self.detail else "")
