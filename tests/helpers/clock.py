"""The one fake clock of the tests: virtual time the agent sleeps on, advanced by the test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class FakeClock:
    """Virtual time: sleepers wake in order when the test advances the clock; nothing waits."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        self._sleepers.append((self.now + max(0.0, seconds), self._seq, fut))
        await fut

    async def advance(self, seconds: float, settle: Callable[[], Any] | None = None) -> None:
        """Move time forward, waking each sleeper at its own moment, letting the loop run between."""
        target = self.now + seconds
        while True:
            await _settle()
            live = sorted((s for s in self._sleepers if not s[2].done()), key=lambda s: s[:2])
            self._sleepers = live
            if not live or live[0][0] > target:
                break
            when, _, fut = live.pop(0)
            self._sleepers = live
            self.now = max(self.now, when)
            fut.set_result(None)
        self.now = target
        await _settle()


async def _settle() -> None:
    # Let every ready callback run, including ones scheduled by the previous round.
    for _ in range(20):
        await asyncio.sleep(0)
