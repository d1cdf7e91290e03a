"""The agent's sense of time, injectable so scheduling and accounting are tested without waiting."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time (Unix seconds) and a way to sleep."""

    def time(self) -> float:
        """Unix seconds now."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Unix seconds now."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on the event loop."""
        await asyncio.sleep(max(0.0, seconds))
