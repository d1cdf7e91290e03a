"""Running agents in tests: in-process on a fake clock, or as a `mailprobe run` subprocess, and
reading what they export."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe
from mailprobe.agent.runtime import Agent
from tests.helpers.clock import FakeClock
from tests.helpers.waits import wait_until


def sample(agent: Agent, name: str, **labels: str) -> float | None:
    """A sample from the agent's registry (None when the series does not exist)."""
    return agent.registry.get_sample_value(name, labels)


def settled(agent: Agent) -> bool:
    """No submission running and no probe on its way."""
    return agent.submitter.idle.is_set() and agent.inflight == 0


async def start(agent: Agent, accounts: tuple[str, ...] = ("alice",)) -> asyncio.Task[None]:
    """Run the agent until its loops run and its watchers have a session."""
    task = asyncio.ensure_future(agent.run())
    await wait_until(lambda: agent.ready.is_set() or task.done(), 10, "agent ready")
    if task.done():
        task.result()
    assert await agent.watchers.wait_up(accounts, 10), "watcher did not come up"
    return task


async def stop(agent: Agent, task: asyncio.Task[None]) -> None:
    """Stop cleanly and wait for run() to return."""
    agent.stop()
    await asyncio.wait_for(task, 10)


def anything(probe: Probe) -> bool:
    """For `run_for(leave=...)`: any probe may stay in flight."""
    return True


async def run_for(
    clock: FakeClock,
    agent: Agent,
    seconds: int,
    *,
    leave: Callable[[Probe], bool] = lambda probe: False,
) -> None:
    """Advance virtual time second by second; between steps let submissions and arrivals finish.

    Each probe is seen before time moves on (a delay of 0 virtual seconds), except probes
    `leave` picks: those may stay in flight (mail the service holds).
    """

    def calm() -> bool:
        return agent.submitter.idle.is_set() and all(leave(p) for p in agent.books.inflight)

    loop = asyncio.get_running_loop()
    for _ in range(seconds):
        await clock.advance(1.0)
        # The watcher times its looks on the agent's clock: a look due a moment ahead waits for
        # that clock to move, as real time would. Nudge it (at most half a second a step) only
        # when the step does not settle by itself.
        deadline, nudged = loop.time() + 10, 0.0
        while not calm():
            if loop.time() > deadline:
                raise AssertionError("timed out after 10s waiting for submissions and arrivals")
            await asyncio.sleep(0.01)
            if not calm() and loop.time() > deadline - 9 and nudged < 0.5:
                await clock.advance(0.05)
                nudged += 0.05


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def scrape(target: Agent | int, path: str = "/metrics") -> str:
    """GET a path of an agent's HTTP endpoint over a real connection; the body."""
    port = target if isinstance(target, int) else _port(target)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data.decode().split("\r\n\r\n", 1)[-1]


def _port(agent: Agent) -> int:
    assert agent.http is not None, "the agent serves no HTTP"
    return agent.http.port


def metric(text: str, name: str, **labels: str) -> float:
    """One sample from exposition text (labels in name order, as prometheus_client writes them)."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{inner}}}" if inner else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{series} not exported"
    return float(match.group(1))


class AgentProcess:
    """One `python -m mailprobe.agent.cli run` with its log in a file: extra arguments after the
    config, environment variables added to the test's own, and a launcher command that execs it."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *args: str,
        env: dict[str, str] | None = None,
        launcher: tuple[str, ...] = (),
    ) -> None:
        self.config, self.log, self.args = config, log, args
        self.env = {**os.environ, **(env or {})}
        self.launcher = launcher
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.launcher, sys.executable, "-m", "mailprobe.agent.cli", "run",
                "--config", str(self.config), *self.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
            )  # fmt: skip

    async def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 15)

    async def ensure_gone(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def read(state: Path, query: Callable[[Ledger], Any]) -> Any:
    """Run `query` on a read-only view of the ledger; None while there is no ledger yet."""
    try:
        with Ledger.open_readonly(state / LEDGER_FILE) as ledger:
            return query(ledger)
    except (FileNotFoundError, sqlite3.DatabaseError):  # not created, or schema not yet in
        return None
