"""`mailprobe probe-once`: one full round trip of one route, bounded in time, nothing recorded.

The agent's own machinery (submission, the route's receiving watcher, the in-flight registry)
without its ledger or route loops: a probe-once run beside a daemon never touches the daemon's
books. ``timeout`` bounds the whole run, the mailbox login included.
"""

from __future__ import annotations

import asyncio
import contextlib

from mailprobe.agent.config import Config
from mailprobe.agent.identity import ephemeral
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.runtime import Agent
from mailprobe.probes.errors import Phase, Reason


async def probe_once(config: Config, route_name: str, timeout: float) -> Probe:
    """Send one probe of ``route_name`` and wait for it; the final record, or overdue."""
    route = config.route(route_name)
    # Its own identity: beside a daemon on the same mailbox, each sees only its own probes.
    agent = Agent(config, serve_http=False, identity=ephemeral())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    watch = agent.watchers.watches[route.to]
    watching = asyncio.ensure_future(watch.watcher.run())
    try:
        login = min(timeout, watch.watcher.endpoint.timeout)
        if not await agent.watchers.wait_up([route.to], login):
            error = watch.error
            return Probe("-" * 32, route.name, Status.FAILED, agent.clock.time(), phase=Phase.IMAP,
                         reason=Reason(error.reason) if error else Reason.TIMEOUT)  # fmt: skip
        return await agent.round_trip(route, max(0.0, deadline - loop.time()))
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await agent.watchers.close()
