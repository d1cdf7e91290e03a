"""The confirmation state machine of one base check of one route.

Samples come in any order (a probe's receive verdict may be known long after a later probe's send
verdict) and are applied in send-time order: a sample waits for every earlier sample still
expected, so a late verdict can never reorder history.

One down-sample is only a suspicion. A second consecutive down-sample confirms it, and the check is
down from the FIRST down-sample's time. An up-sample within ``confirm_within`` of a lone
down-sample clears it as a glitch (no downtime). When no sample comes within ``confirm_within`` the
failure is confirmed anyway (a scheduler that did not retry must not hide an outage); a later
up-sample then ends it. A down period ends at the time of the first up-sample. Times are the
samples' own timestamps, never rounded to the probe interval.
"""

from __future__ import annotations

import heapq
import math

from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.windows import Span


class Confirmation:
    """Up/down state of one (route, base check), fed with samples."""

    def __init__(self, route: str, check: Check, confirm_within: float) -> None:
        self.route, self.check, self.confirm_within = route, check, confirm_within
        self.down_since: float | None = None
        self.suspect: float | None = None
        self.closed: list[Span] = []
        self.cursor = -math.inf  # time of the last applied sample
        self.glitches = 0
        # Samples expected, by id: later samples wait for these (their time is known already).
        self.waiting: dict[str, float] = {}
        self._judged: dict[str, float] = {}  # ids given a sample, so a second one is ignored
        self._ready: list[tuple[float, str, bool]] = []

    def _tr(self, up: bool, at: float) -> Transition:
        return Transition(self.route, self.check, up, at)

    @property
    def unsettled(self) -> bool:
        """Down, suspect, or a down-sample known and not applied yet: worth probing again soon."""
        return (
            self.down_since is not None
            or self.suspect is not None
            or any(not ok for _, _, ok in self._ready)
        )

    def expect(self, sample_id: str, at: float) -> None:
        """Hold later samples until this one's is known."""
        if at > self.cursor and sample_id not in self._judged:
            self.waiting.setdefault(sample_id, at)

    def settle(self, sample_id: str) -> list[Transition]:
        """An expected sample will not come (it says nothing): stop holding later ones for it."""
        if self.waiting.pop(sample_id, None) is None:
            return []
        return self._drain()

    def sample(self, sample_id: str, at: float, ok: bool) -> list[Transition]:
        """A sample is known; apply every sample no expected one precedes."""
        self.waiting.pop(sample_id, None)
        if at <= self.cursor or sample_id in self._judged:
            return []  # already applied, or too late to place in history
        self._judged[sample_id] = at
        heapq.heappush(self._ready, (at, sample_id, ok))
        return self._drain()

    def _drain(self) -> list[Transition]:
        horizon = min(self.waiting.values(), default=math.inf)
        out: list[Transition] = []
        while self._ready and self._ready[0][0] < horizon:
            at, _, good = heapq.heappop(self._ready)
            out += self._apply(at, good)
        # Ids older than the cursor can no longer be applied anyway: forget them.
        if len(self._judged) > 64:
            self._judged = {k: t for k, t in self._judged.items() if t >= self.cursor}
        return out

    def _apply(self, at: float, ok: bool) -> list[Transition]:
        self.cursor = at
        if self.down_since is not None:
            if not ok:
                return []
            self.closed.append((self.down_since, at))
            self.down_since = None
            return [self._tr(True, at)]
        if ok:
            suspect, self.suspect = self.suspect, None
            if suspect is None:
                return []
            if at - suspect <= self.confirm_within:
                self.glitches += 1
                return []
            self.closed.append((suspect, at))
            return [self._tr(False, suspect), self._tr(True, at)]
        if self.suspect is None:
            self.suspect = at
            return []
        self.down_since, self.suspect = self.suspect, None
        return [self._tr(False, self.down_since)]

    def tick(self, now: float) -> list[Transition]:
        """Confirm a suspicion nothing could clear in time."""
        if self.suspect is None or now - self.suspect <= self.confirm_within:
            return []
        deadline = self.suspect + self.confirm_within
        if min(self.waiting.values(), default=math.inf) <= deadline:
            return []
        self.down_since, self.suspect = self.suspect, None
        return [self._tr(False, self.down_since)]

    def close(self, at: float) -> list[Transition]:
        """The check is no longer observed from ``at`` on: an open period ends there, a
        suspicion is dropped, and samples known but not yet applied are let go."""
        self.suspect = None
        self._ready.clear()
        self.cursor = max(self.cursor, at)
        if self.down_since is None:
            return []
        self.closed.append((self.down_since, max(self.down_since, at)))
        self.down_since = None
        return [self._tr(True, at)]

    def restore(self, transition: Transition) -> None:
        """Continue from a recorded transition of this check."""
        self.cursor = max(self.cursor, transition.at)
        if not transition.up and self.down_since is None:
            self.down_since = transition.at
        elif transition.up and self.down_since is not None:
            self.closed.append((self.down_since, transition.at))
            self.down_since = None

    def spans(self, now: float) -> list[Span]:
        """Confirmed down spans, the open one running to what is settled by ``now``.

        An expected sample may end the open period at its time, so the period only counts up to
        the earliest such time: totals then never need to shrink.
        """
        if self.down_since is None:
            return self.closed
        unsettled = [*self.waiting.values(), *(at for at, _, _ in self._ready)]
        end = min([now, *unsettled])
        return [*self.closed, (self.down_since, max(self.down_since, end))]
