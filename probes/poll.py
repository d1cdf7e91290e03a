"""When to look for an awaited probe, within a budget of IMAP commands: pure arithmetic, no I/O.

A look is one NOOP. The last look that did not see a probe and the first that did bracket its
arrival; the stamp is the bracket's middle and its half-width the error bound. So the bound at
age t is half the interval between looks there, and a schedule is a choice of half-widths:
``max(floor, ratio * age)``. A constant interval first (``2 * floor`` until ``floor / ratio``,
about a second: where most deliveries land), then intervals growing in proportion to the age,
i.e. looks evenly spread in log(age), which keeps the error a fixed share of the delay. For a
budget the ratio is the smallest that fits it (``plan``), but never below ``best_ratio``: a budget
that could afford more looks than the target needs does not spend them.

A sparse schedule (a few looks, geometric between ``sparse_first`` and ``sparse_until``) serves
the checks that need not be precise: the junk folder, and the looks that keep an IDLE whose
pushes are prompt honest.

``Planner`` holds, per awaited probe (keyed by its send time), the commands spent while it was
watched and when its next look and sparse check are due. Each probe's looks start at a random
phase of the first interval: deliveries that take about the same time every time (a fixed
queue) would otherwise meet the same place of the same bracket, and the middle would be off the
same way each time instead of on average nothing; a probe never gets a look that would
take it past ``Budget.per_probe`` once its own handling (``HANDLING``) is counted in.
``CommandWindow`` holds the last minute's commands, so the session never sends more than
``Budget.per_minute`` in any 60 s.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

HANDLING = 5
"""Commands a probe costs once seen: the IDLE left for it, UID SEARCH, UID FETCH, and UID STORE +
UID EXPUNGE (or UID MOVE)."""
MINUTE = 60.0
SLACK = 0.002  # seconds: a look this close before its moment counts as that look
SPACED = 0.75  # share of the minute's commands after which looks are spaced out
_MAX_RATIO = 1.0


@dataclass(frozen=True, slots=True)
class Budget:
    """IMAP commands one mailbox session may spend: per awaited probe and in any minute."""

    per_probe: int = 150
    per_minute: int = 300

    def __post_init__(self) -> None:
        if self.per_probe < HANDLING + 2 or self.per_minute < HANDLING + 2:
            raise ValueError(f"a budget needs at least {HANDLING + 2} commands")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Looks at ages (seconds since sending) with half-width ``max(floor, ratio * age)``."""

    floor: float = 0.022
    ratio: float = 0.018
    window: float = 75.0  # no look after this age

    def half_width(self, age: float) -> float:
        """The error bound of an arrival between the looks around ``age``."""
        return max(self.floor, self.ratio * age)

    def next_look(self, age: float) -> float | None:
        """The age of the look after one at ``age`` (the send itself counts as a look at 0)."""
        if age >= self.window:
            return None
        return min(self.window, max(age, 0.0) + 2.0 * self.half_width(age))

    def looks(self, until: float) -> int:
        """Looks from sending up to age ``until`` (the send itself not counted)."""
        count, age = 0, 0.0
        while (nxt := self.next_look(age)) is not None and nxt <= until:
            count, age = count + 1, nxt
        return count


@dataclass(frozen=True, slots=True)
class Sparse:
    """A few checks at ages growing geometrically from ``first`` to ``until``."""

    count: int = 5
    first: float = 2.0
    until: float = 240.0

    @classmethod
    def within(cls, budget: Budget, until: float = 240.0) -> Sparse:
        """About one check per 25 commands of the probe budget, 1 to 5, the last at ``until``."""
        return cls(count=max(1, min(5, budget.per_probe // 25)), first=min(2.0, until), until=until)

    def next_check(self, age: float) -> float | None:
        """The age of the first check after ``age``, None when none is left."""
        if self.count <= 0:
            return None
        if self.count == 1:
            ages = [self.until]
        else:
            step = (self.until / self.first) ** (1.0 / (self.count - 1))
            ages = [self.first * step**k for k in range(self.count)]
        return next((a for a in ages if a > age + 1e-9), None)


def plan(budget: Budget, base: Schedule = Schedule(), *, sparse: int, cost: int = 1) -> Schedule:
    """The finest schedule like ``base`` whose looks fit ``budget``, each look costing ``cost``.

    Looks may spend what the probe's handling and its ``sparse`` checks leave, in the whole
    window and in its first minute (the densest one).
    Past ``_MAX_RATIO`` the floor widens too, so even a tiny budget gets a schedule that fits.
    """
    room = budget.per_probe - HANDLING - sparse
    minute_room = budget.per_minute - HANDLING - sparse

    def fits(s: Schedule) -> bool:
        whole = s.looks(s.window) * cost <= room
        return whole and s.looks(min(s.window, MINUTE)) * cost <= minute_room

    if fits(base):
        return base
    lo, hi = base.ratio, _MAX_RATIO
    widest = replace(base, ratio=hi)
    while not fits(widest):  # the floor's looks alone are too many: widen it
        if widest.floor > base.window:
            return replace(base, window=0.0)  # not one look fits: IDLE alone
        widest = replace(widest, floor=widest.floor * 2.0)
    for _ in range(40):  # bisect the ratio
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if fits(replace(widest, ratio=mid)) else (mid, hi)
    return replace(widest, ratio=hi)


@dataclass(slots=True)
class _Watched:
    spent: int
    look_due: float | None  # ages
    check_due: float | None


class Planner:
    """Per awaited probe: commands spent, and when its next look and sparse check are due."""

    def __init__(
        self, budget: Budget, schedule: Schedule, sparse: Sparse, rng: random.Random
    ) -> None:
        self.budget = budget
        self.schedule = schedule
        self.sparse = sparse
        self._rng = rng
        self._probes: dict[float, _Watched] = {}

    def track(self, awaited: Iterable[float], now: float) -> None:
        """Follow the probes sent at ``awaited`` (new ones start; others are let go)."""
        sent = set(awaited)
        for gone in self._probes.keys() - sent:
            del self._probes[gone]
        for sent_at in sent - self._probes.keys():
            age = now - sent_at
            # Probes already past the window (seen after a restart) get no looks.
            first = self.schedule.next_look(0.0)
            look = first * self._rng.random() if first and age < self.schedule.window else None
            # The IDLE the session leaves for a new probe is one of its commands.
            self._probes[sent_at] = _Watched(1, look, self.sparse.next_check(max(age, 0.0)))

    def _left(self, w: _Watched) -> int:
        checks = 0 if w.check_due is None else self._checks_after(w.check_due)
        return self.budget.per_probe - HANDLING - checks - w.spent

    def _checks_after(self, due: float) -> int:
        count, age = 0, due - 1e-9
        while (nxt := self.sparse.next_check(age)) is not None:
            count, age = count + 1, nxt
        return count

    def next_look(self, cost: int = 1, *, sparse_only: bool = False) -> float | None:
        """When the next look is due (Unix seconds), or None.

        ``sparse_only``: looks only at the sparse checks (IDLE stands in for the others).
        """
        times: list[float] = []
        for sent_at, w in self._probes.items():
            due = w.check_due if sparse_only else w.look_due
            if due is not None and self._left(w) >= cost:
                times.append(sent_at + due)
        return min(times, default=None)

    def next_check(self) -> float | None:
        """When the next sparse check (the junk folder) is due (Unix seconds), or None."""
        times = [s + w.check_due for s, w in self._probes.items() if w.check_due is not None]
        return min(times, default=None)

    def looked(self, at: float, *, sparse_only: bool = False) -> None:
        """A look started at ``at``: each probe due by then is due again later."""
        for sent_at, w in self._probes.items():
            if w.look_due is not None and sent_at + w.look_due <= at + SLACK:
                w.look_due = self.schedule.next_look(at - sent_at)
            if sparse_only:
                self._checked(sent_at, w, at)

    def checked(self, at: float) -> None:
        """A sparse check started at ``at``."""
        for sent_at, w in self._probes.items():
            self._checked(sent_at, w, at)

    def _checked(self, sent_at: float, w: _Watched, at: float) -> None:
        if w.check_due is not None and sent_at + w.check_due <= at + SLACK:
            w.check_due = self.sparse.next_check(at - sent_at)

    def spend(self, commands: int) -> None:
        """Charge commands the session sent to every probe still watched."""
        for w in self._probes.values():
            if w.look_due is not None or w.check_due is not None:
                w.spent += commands

    def spent(self, sent_at: float) -> int | None:
        """Commands charged to the probe sent at ``sent_at`` so far (None: not followed)."""
        w = self._probes.get(sent_at)
        return None if w is None else w.spent

    def may_check(self, sent_at: float) -> bool:
        """The probe's budget still has room for one sparse check beside its handling."""
        w = self._probes.get(sent_at)
        return w is not None and self.budget.per_probe - HANDLING - w.spent >= 1


class CommandWindow:
    """Commands sent in the last minute: how long until more fit, and how thin looks must be.

    The limit holds exactly: no 60 s ever hold more than ``per_minute``. So that a burst of
    probes (retries while a route is down) does not spend the minute at once and then stall,
    looks are spaced once three quarters of it are spent, the more the fuller it is
    (``spacing``); a probe a minute, the route's usual pace, stays below that.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._sent: deque[float] = deque()

    def record(self, at: float, n: int = 1) -> None:
        """``n`` commands were sent at ``at``."""
        self._sent.extend([at] * n)

    def count(self, now: float) -> int:
        """Commands in the minute up to ``now``."""
        while self._sent and self._sent[0] <= now - MINUTE:
            self._sent.popleft()
        return len(self._sent)

    def wait(self, now: float, n: int = 1) -> float:
        """Seconds until ``n`` more commands keep the last minute within the limit."""
        over = self.count(now) + n - self.per_minute
        if over <= 0:
            return 0.0
        if over > len(self._sent):
            return math.inf  # more at once than a minute allows
        # A millisecond more: a wait that ends exactly on the minute must not count it twice.
        return self._sent[over - 1] + MINUTE - now + 0.001

    def spacing(self, now: float) -> float:
        """The least gap between looks now: none up to SPACED of the minute, then growing."""
        start = self.per_minute * SPACED
        used = self.count(now)
        if used <= start:
            return 0.0
        return MINUTE / self.per_minute * (used - start) / max(1.0, self.per_minute - used)
