"""Helpers for ledger and accounting tests: configs written to disk, virtual-time driving."""

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

import yaml

from mailprobe.agent.bookkeeping import LEDGER_FILE, open_ledger_readonly
from mailprobe.agent.config import Config, parse_config
from mailprobe.agent.daemon import Agent
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.inflight import Pending
from mailprobe.agent.ledger import Ledger
from tests.support import SECRET, FakeClock, account, wait_until

USERS = {"alice@demo.test": "alice-pw", "bob@demo.test": "bob-pw"}


def config_data(
    svc: EmbeddedMailService,
    state_dir: Path,
    *,
    sla: dict[str, Any] | None = None,
    maintenance: list[dict[str, Any]] | None = None,
    **route: Any,
) -> dict[str, Any]:
    """YAML-ready config: route a2b from bob to alice on the embedded service, state in state_dir."""
    os.environ["MP_TEST_SECRET"] = SECRET
    common = {"host": svc.host, "ca_file": svc.ca_file, "smtp_port": svc.smtp_port,
              "imap_port": svc.imap_port}  # fmt: skip
    data: dict[str, Any] = {
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(state_dir), "log_level": "debug"},
        "accounts": {
            "alice": account("alice@demo.test", USERS["alice@demo.test"], **common),
            "bob": account("bob@demo.test", USERS["bob@demo.test"], **common),
        },
        "routes": [{"name": "a2b", "from": "bob", "to": "alice", "interval": "1m",
                    "jitter": "0s", **route}],
    }  # fmt: skip
    for section in ("smtp", "imap"):
        for acc in data["accounts"].values():
            acc[section]["ca_file"] = str(acc[section]["ca_file"])
    if sla is not None:
        data["sla"] = sla
    if maintenance is not None:
        data["maintenance"] = maintenance
    return data


def write_config(data: dict[str, Any], path: Path) -> Config:
    """Write the config where a subprocess can read it, and validate it the same way."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return parse_config(data)


def sample(agent: Agent, name: str, **labels: str) -> float | None:
    """A sample from the agent's registry (None when the series does not exist)."""
    return agent.registry.get_sample_value(name, labels)


def settled(agent: Agent) -> bool:
    """No submission running and no probe on its way."""
    return agent._idle.is_set() and len(agent.inflight) == 0


async def start(agent: Agent) -> asyncio.Task[None]:
    """Run the agent until its loops run and its watcher has a session."""
    task = asyncio.ensure_future(agent.run())
    await wait_until(lambda: agent.ready.is_set() or task.done(), 10, "agent ready")
    if task.done():
        task.result()
    assert await agent.wait_watchers_up(["alice"], 10), "watcher did not come up"
    return task


async def stop(agent: Agent, task: asyncio.Task[None]) -> None:
    """Stop cleanly and wait for run() to return."""
    agent.stop()
    await asyncio.wait_for(task, 10)


async def run_for(
    clock: FakeClock,
    agent: Agent,
    seconds: int,
    *,
    leave: Callable[[Pending], bool] = lambda pending: False,
) -> None:
    """Advance virtual time second by second; between steps let submissions and arrivals finish.

    Each probe is seen before time moves on (a delay of 0 virtual seconds), except probes
    `leave` picks: those may stay in flight (mail the service holds).
    """

    def calm() -> bool:
        return agent._idle.is_set() and all(leave(p) for p in agent.inflight.pending())

    for _ in range(seconds):
        await clock.advance(1.0)
        await wait_until(calm, 10, "submissions and arrivals to finish")


def anything(pending: Pending) -> bool:
    """For `run_for(leave=...)`: any probe may stay in flight."""
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AgentProcess:
    """One `python -m agent.cli run` with its log in a file: extra arguments after the config,
    environment variables added to the test's own, and a launcher command that execs it."""

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
        with open_ledger_readonly(state / LEDGER_FILE) as ledger:
            return query(ledger)
    except (FileNotFoundError, sqlite3.OperationalError):  # not created, or schema not yet in
        return None


async def scrape(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await reader.read()
    writer.close()
    return data.decode()


def metric(text: str, name: str, **labels: str) -> float:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{inner}}}" if inner else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{series} not exported"
    return float(match.group(1))
