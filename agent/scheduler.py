"""When each route is probed: its interval on a fixed grid, and sooner while it is failing.

Grid. Route ``i`` of ``n`` is probed at ``anchor + i/n * interval + k * interval``, each time moved by
a random jitter of at most ``route.jitter_seconds`` (and never past half the interval), so the
routes' sends are spread evenly over the interval and stay spread: jitter never accumulates. One
thousand routes at one a minute are a steady ~17 submissions a second, not bursts.

Retries. While a route's send or receive check is suspect or down (``unsettled``), or its last
submission failed, the next probe follows after ``sla.confirm_retry`` instead: one failure is only a
suspicion that a quick second probe confirms or clears, and while a route is down it is probed that
often, so the end of an outage is known that closely. ``wake`` brings the next probe forward the
same way when a failure is noticed between probes (a missed receive deadline, a mailbox that went
away), and ``wake(now=True)`` probes at once (the mailbox is back: the first probe sent after it
ends the outage).

Reload. ``add`` gives a route a slot (a new route, or a changed one with its new settings) whose
loop, run with ``resume``, starts at its next grid point; ``retire`` ends a route's loop once the
submission it may be running has ended, so no probe is cut off.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailprobe.agent.clock import Clock
from mailprobe.agent.config import Config, Route


@dataclass(slots=True)
class _Slot:
    route: Route
    phase: float  # fraction of the interval this route's grid is shifted by
    wake: asyncio.Event
    now: bool = False  # the wake asks for a probe at once
    retired: bool = False  # a reload removed or replaced the route: its loop ends


class Scheduler:
    """One loop per route, calling ``probe(route)`` on its grid or sooner."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        probe: Callable[[Route], Awaitable[bool]],
        unsettled: Callable[[str], bool],
        stopping: asyncio.Event,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._probe = probe
        self._unsettled = unsettled
        self._stopping = stopping
        self._rng = rng or random.Random()
        self._retry = config.sla.confirm_retry
        n = len(config.routes)
        self._slots = {
            r.name: _Slot(r, i / n, asyncio.Event()) for i, r in enumerate(config.routes)
        }
        self._anchor: float | None = None

    def add(self, route: Route, phase: float) -> None:
        """Give ``route`` a slot shifted by ``phase`` of its interval (a reload); the slot it had
        before, if any, retires."""
        self.retire(route.name)
        self._slots[route.name] = _Slot(route, phase, asyncio.Event())

    def retire(self, name: str) -> None:
        """End the route's loop after the submission it may be running (a reload)."""
        slot = self._slots.pop(name, None)
        if slot is not None:
            slot.retired = True
            slot.wake.set()

    def phase(self, name: str) -> float | None:
        """The share of its interval a route's grid is shifted by (None: no such route)."""
        slot = self._slots.get(name)
        return slot.phase if slot is not None else None

    def wake(self, route: str, *, now: bool = False) -> None:
        """Something failed between probes (or the mailbox is back: ``now``): probe sooner."""
        slot = self._slots.get(route)
        if slot is not None:
            slot.now = slot.now or now
            slot.wake.set()

    def first_due(self, route: Route, anchor: float) -> float:
        """The first grid point of ``route`` at or after ``anchor``."""
        return anchor + self._slots[route.name].phase * route.interval

    def next_due(self, route: Route, after: float) -> float:
        """The next grid point of ``route`` after ``after``, with its jitter."""
        return self.next_slot(route, after)[1]

    def next_slot(self, route: Route, after: float, of: float | None = None) -> tuple[float, float]:
        """The next grid point of ``route`` after ``after`` and its jittered due time.

        ``of`` is the grid point (without jitter) of the probe just made, when it was a regular
        one: the next is the one after it, whichever way the jitter moved that probe (counting
        from the time would put a probe moved early back into its own slot, a second probe a
        moment after the first). A retry or a probe woken early has none: the next grid point
        after ``after``.
        """
        assert self._anchor is not None  # noqa: S101 - set when the loops start
        start = self.first_due(route, self._anchor)
        if of is not None:
            k = round((of - start) / route.interval) + 1
        else:
            k = math.floor((after - start) / route.interval) + 1
        spread = min(route.jitter_seconds, 0.45 * route.interval)
        grid = start + k * route.interval
        due = grid + self._rng.uniform(-spread, spread)
        while due <= after:  # late (a busy loop): the slot after
            grid += route.interval
            due += route.interval
        return grid, due

    async def run(self, route: Route, *, resume: bool = False) -> None:
        """Probe ``route`` until the agent stops or the route retires; ``resume``: from the next
        grid point on (a route a reload added), not from the first."""
        if self._anchor is None:
            self._anchor = self._clock.time()
        slot = self._slots[route.name]
        quick = min(route.interval, self._retry)
        if resume:
            grid: float | None
            grid, due = self.next_slot(route, self._clock.time())
        else:
            grid = due = self.first_due(route, self._anchor)
        while not self._stopping.is_set() and not slot.retired:
            if await self._pause(due - self._clock.time(), slot):
                woken = self._woken(slot, due, quick)
                if woken != due:
                    grid = None  # off the grid now: the next regular probe follows the clock
                due = woken
                continue
            if self._stopping.is_set() or slot.retired:
                return
            started = self._clock.time()
            slot.wake.clear()
            slot.now = False
            submitted = await self._probe(route)
            if not submitted or self._unsettled(route.name):
                grid, due = None, started + quick
            else:
                grid, due = self.next_slot(route, started, grid)

    def _woken(self, slot: _Slot, due: float, quick: float) -> float:
        now = self._clock.time()
        at_once = slot.now
        slot.wake.clear()
        slot.now = False
        return now if at_once else min(due, now + quick)

    async def _pause(self, seconds: float, slot: _Slot) -> bool:
        """Sleep on the agent's clock; True when the route was woken (False on timeout or stop)."""
        if seconds <= 0:
            return False
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        waker = asyncio.ensure_future(slot.wake.wait())
        waits = {sleeper, stopper, waker}
        try:
            done, _ = await asyncio.wait(waits, return_when="FIRST_COMPLETED")
        finally:
            for task in waits:
                task.cancel()
        return waker in done and not self._stopping.is_set() and not slot.retired
