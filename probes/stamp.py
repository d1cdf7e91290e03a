"""Arrival stamps with an error bound, and whether a session's IDLE pushes are prompt: pure.

A message the server announces (EXISTS) arrived after the last moment the session is sure it was
not there (``lo``: the start of the last look whose answer, once searched, did not hold it) and
before the announcement reached us (``hi``). The stamp is the middle, the error bound half the
width. Nothing earlier than the probe's own send time is possible, so ``lo`` never precedes it.

IDLE: Dovecot holds its notices 0.5 s, other servers push at once. ``PushCheck`` decides per
session from the first probes watched with IDLE between the looks: a notice that came before the
next look, soon after the last one, is prompt; a look that found what IDLE had not pushed is not.
Three prompt notices in a row (each within ``PROMPT``) make the session prompt: its pushes then
stand in for most looks, each stamped no earlier than ``bound`` before it came. One look that
beat IDLE makes it late, and looks alone time arrivals. Undecided after ``TRIES`` samples, it is
late too: looks are the measurement that needs no trust in the server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PROMPT = 0.05  # seconds: a push within this of the last look is prompt
NEEDED = 3
TRIES = 5


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a probe arrived (the bracket's middle) and how far off that can be (half-width)."""

    at: float
    error: float


def stamp(lo: float, hi: float, sent_at: float, push_bound: float | None = None) -> Stamp:
    """The stamp of an arrival announced at ``hi``, not there at ``lo``, sent at ``sent_at``.

    ``push_bound``: the announcement was a prompt push, at most that late.
    """
    hi = max(hi, sent_at)  # nothing arrives before it was sent, whatever a clock said
    low = max(lo, sent_at)
    if push_bound is not None:
        low = max(low, hi - push_bound)
    low = min(low, hi)
    return Stamp((low + hi) / 2.0, (hi - low) / 2.0)


class Bracket:
    """The session's lower bound for anything it has not seen yet."""

    def __init__(self, lo: float = 0.0) -> None:
        self.lo = lo

    def looked(self, start: float) -> None:
        """A look (or SELECT) started at ``start`` and everything it announced was searched."""
        self.lo = max(self.lo, start)

    def reset(self, start: float) -> None:
        """A new selection started at ``start``: what it holds is backlog, not an arrival."""
        self.lo = start


class Push(enum.StrEnum):
    """What a session's IDLE notices are worth."""

    UNKNOWN = "unknown"
    PROMPT = "prompt"
    LATE = "late"


class PushCheck:
    """Decides, from arrivals watched with IDLE between looks, whether pushes are prompt."""

    def __init__(self) -> None:
        self.state = Push.UNKNOWN
        self.bound: float | None = None  # prompt: how late a push may be
        self._prompt: list[float] = []
        self._tries = 0

    @property
    def calibrating(self) -> bool:
        """Still deciding: close watches IDLE between their looks."""
        return self.state is Push.UNKNOWN

    def pushed(self, since_look: float) -> None:
        """IDLE announced new mail ``since_look`` seconds after the last look started."""
        if self.state is not Push.UNKNOWN:
            return
        self._tries += 1
        if since_look <= PROMPT:
            self._prompt.append(since_look)
            if len(self._prompt) >= NEEDED:
                self.state, self.bound = Push.PROMPT, max(self._prompt)
                return
        self._give_up_after_tries()

    def polled(self) -> None:
        """A look found new mail that IDLE, waiting before it, had not announced."""
        if self.state is not Push.LATE:
            self.state, self.bound = Push.LATE, None

    def _give_up_after_tries(self) -> None:
        if self._tries >= TRIES:
            self.state = Push.LATE
