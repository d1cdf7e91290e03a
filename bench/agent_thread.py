"""The mailprobe agent on an event loop and thread of its own, so its CPU time can be read alone."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from mailprobe.agent.config import Config
from mailprobe.agent.probe import Probe
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.runtime import Agent

T = TypeVar("T")


async def _thread_cpu() -> float:
    return time.thread_time()


class AgentThread:
    """An Agent watching one mailbox (probe-once mode: watcher and submissions, no route loop)."""

    def __init__(self, config: Config, account: str, extra_headers: dict[str, str]) -> None:
        self._config = config
        self._account = account
        self._headers = extra_headers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mailprobe-agent", daemon=True
        )
        self._agent: Agent | None = None
        self._watchers: asyncio.Future[None] | None = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def start(self, timeout: float) -> None:
        """Start the thread and the watcher; return once its IMAP session is up."""
        self._thread.start()
        await self._call(self._start(timeout))

    async def _start(self, timeout: float) -> None:
        agent = Agent(self._config, serve_http=False)
        agent.extra_headers = self._headers
        self._agent = agent
        self._watchers = asyncio.ensure_future(agent.watchers.watches[self._account].watcher.run())
        if not await agent.watchers.wait_up([self._account], timeout):
            error = agent.watchers.watches[self._account].error
            raise RuntimeError(f"mailprobe's watcher did not come up: {error}")

    def round_trip(self, timeout: float) -> asyncio.Future[Probe]:
        """Send one probe on the first route and resolve with its result."""
        return self._call(self._round_trip(timeout))

    async def _round_trip(self, timeout: float) -> Probe:
        assert self._agent is not None
        return await round_trip(self._agent, self._config.routes[0], timeout)

    async def cpu(self) -> float:
        """CPU seconds the agent's thread has used so far."""
        return await self._call(_thread_cpu())

    async def stop(self) -> None:
        """Log the watcher out, stop the loop, join the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._call(self._stop()), 10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
        if not self._loop.is_running():
            self._loop.close()

    async def _stop(self) -> None:
        if self._watchers is not None:
            self._watchers.cancel()
            await asyncio.gather(self._watchers, return_exceptions=True)
        if self._agent is not None:
            await self._agent.watchers.close()
        # aioimaplib leaves reader tasks behind a closed session; end them before the loop stops.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
