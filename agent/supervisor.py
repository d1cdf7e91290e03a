"""Long-lived tasks that come back when they fail, while everything else goes on.

Each supervised task runs in the agent's TaskGroup. When one raises, the exception is logged once
with its traceback, counted (``on_restart``), and the task is started again after a backoff that
doubles up to a minute and starts over once a run lasted that long. Cancellation is never caught:
stopping the agent cancels every task at once. A task that returns is done and not restarted.
A reload stops tasks by name (``stop``) and starts others; a task started under a name still in
use (a route loop replaced while it finishes its submission) is cancelled at shutdown all the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0


class Supervisor:
    """Starts and restarts the agent's long-lived tasks."""

    def __init__(
        self,
        group: asyncio.TaskGroup,
        on_restart: Callable[[str], None] = lambda name: None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self._group = group
        self._on_restart = on_restart
        self._sleep = sleep
        self._min, self._max = backoff_min, backoff_max
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``run()`` as task ``name``, restarting it whenever it raises."""
        task = self._group.create_task(self._keep(name, run), name=name)
        self.tasks[name] = task
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    def stop(self, name: str) -> asyncio.Task[None] | None:
        """Cancel task ``name`` (a reload removed what it ran); the task, to await, or None."""
        task = self.tasks.pop(name, None)
        if task is not None:
            task.cancel()
        return task

    def detach(self, name: str) -> asyncio.Task[None] | None:
        """Let task ``name`` run on unnamed (a watcher handing over to its replacement): the name
        is free for another; the task is still cancelled at shutdown."""
        return self.tasks.pop(name, None)

    def cancel(self) -> None:
        """Cancel every supervised task."""
        for task in list(self._running):
            task.cancel()

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._min
        while True:
            started = loop.time()
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                if loop.time() - started >= self._max:
                    backoff = self._min
                log.exception("task %s failed; restarting it in %.0f s", name, backoff)
                self._on_restart(name)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self._max)
            else:
                return
