"""Shared test helpers: configs pointed at a mail service, and small waits on real events."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mailprobe.agent.config import Config, parse_config

SECRET = "test-probe-secret"


def account(
    address: str,
    password: str,
    *,
    host: str,
    smtp_port: int,
    imap_port: int,
    ca_file: Path,
    smtp_security: str = "starttls",
    imap_security: str = "starttls",
    timeout: str = "5s",
) -> dict[str, Any]:
    """An account section whose password comes from an environment variable set here."""
    env = "MP_PW_" + "".join(c if c.isalnum() else "_" for c in address).upper()
    os.environ[env] = password
    common = {"host": host, "username": address, "password_env": env, "ca_file": str(ca_file),
              "timeout": timeout}  # fmt: skip
    return {
        "address": address,
        "smtp": {**common, "port": smtp_port, "security": smtp_security},
        "imap": {**common, "port": imap_port, "security": imap_security},
    }


def make_config(
    accounts: Mapping[str, dict[str, Any]],
    routes: Iterable[dict[str, Any]],
    *,
    state_dir: Path | None = None,
    **agent: Any,
) -> Config:
    """A validated Config with a test secret and an ephemeral HTTP port."""
    os.environ["MP_TEST_SECRET"] = SECRET
    if state_dir is None:  # a fresh ledger per config, never a shared one
        state_dir = Path(tempfile.mkdtemp(prefix="mailprobe-test-state-"))
    data = {
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(state_dir), **agent},
        "accounts": dict(accounts),
        "routes": list(routes),
    }  # fmt: skip
    return parse_config(data)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition on the event loop until it holds; fail the test naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


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
