"""The whole Agent with hostile IMAP accounts beside one good route on the embedded service.

The good route keeps its schedule and every one of its probes arrives; the hostile mailboxes are
down with reasons from the fixed vocabulary; the agent runs until told to stop, then stops cleanly.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import AsyncExitStack
from typing import Any

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.runtime import Agent
from mailprobe.probes.errors import REASONS
from tests.helpers.configs import account, make_config

from .harness import probe
from .imap_modes import (
    CapabilityNotUtf8AfterLogin,
    FFInternaldate,
    GarbageGreeting,
    GiantLiteral,
    HugeUidvalidity,
    LoginThenDrop,
    TenMegabyteLine,
    UnexpectedTag,
    UntaggedFlood,
)
from .imap_server import ImapServer

INTERVAL = 1.0
WINDOW = 8.0
USERS = {"alice@demo.test": "alice-pw", "bob@demo.test": "bob-pw"}


def hostile_servers() -> dict[str, ImapServer]:
    raw = probe(recipient="x@hostile.test")[1]
    return {
        "garbage": GarbageGreeting(),
        "uidvalidity": HugeUidvalidity(),
        "capability": CapabilityNotUtf8AfterLogin(),
        "tag": UnexpectedTag(),
        "literal": GiantLiteral([raw]),
        "flood": UntaggedFlood(),
        "drop": LoginThenDrop(),
        "line": TenMegabyteLine(),
        "internaldate": FFInternaldate([raw]),
    }


def hostile_account(name: str, port: int) -> dict[str, Any]:
    env = f"MP_HOSTILE_{name.upper()}"
    os.environ[env] = "pw"
    imap = {"host": "127.0.0.1", "port": port, "security": "plain", "username": f"{name}@h.test",
            "password_env": env, "timeout": "1s"}  # fmt: skip
    # Nothing listens on port 1: submissions from these accounts fail at once with connect.
    smtp = {**imap, "port": 1}
    return {"address": f"{name}@hostile.test", "imap": imap, "smtp": smtp}


async def test_hostile_mailboxes_do_not_disturb_a_good_route() -> None:
    """Nine hostile IMAP servers: the good route sends on schedule and every probe arrives."""
    servers = hostile_servers()
    results: list[Probe] = []
    async with AsyncExitStack() as stack:
        mail = await stack.enter_async_context(EmbeddedMailService(USERS))
        for server in servers.values():
            await stack.enter_async_context(server)
        common = {"host": mail.host, "smtp_port": mail.smtp_port, "imap_port": mail.imap_port,
                  "ca_file": mail.ca_file, "timeout": "2s"}  # fmt: skip
        accounts = {
            "alice": account("alice@demo.test", "alice-pw", **common),
            "bob": account("bob@demo.test", "bob-pw", **common),
            **{name: hostile_account(name, s.port) for name, s in servers.items()},
        }
        routes = [{"name": "good", "from": "bob", "to": "alice", "interval": f"{INTERVAL}s",
                   "jitter": "0s"}]  # fmt: skip
        routes += [{"name": f"to-{n}", "from": n, "to": n, "interval": "1h"} for n in servers]
        agent = Agent(make_config(accounts, routes), sinks=[results.append], serve_http=False)
        task = asyncio.ensure_future(agent.run())
        seen: dict[str, set[str]] = {n: set() for n in servers}
        try:
            assert await agent.watchers.wait_up(["alice"], 10)
            started = time.monotonic()
            while time.monotonic() - started < WINDOW:
                assert not task.done(), task
                for name in servers:
                    error = agent.watchers.watches[name].error
                    if error is not None:
                        seen[name].add(error.reason)
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            good = [r for r in results if r.route == "good" and r.status is not Status.SENT]
            assert agent.health()["imap"]["alice"] is True  # type: ignore[index]
        finally:
            agent.stop()
            await asyncio.wait_for(task, 15)  # stops cleanly: no exception escapes run()
    expected = elapsed / INTERVAL
    assert len(good) >= expected - 2, (len(good), expected)
    assert all(r.status is Status.OK for r in good), [r for r in good if r.status is not Status.OK]
    # Every hostile mailbox but the one with a garbled INTERNALDATE (which is no error) failed,
    # each with a reason from the fixed vocabulary.
    assert seen.pop("internaldate") == set()
    assert all(reasons and reasons <= set(REASONS) for reasons in seen.values()), seen
    assert seen["drop"] == {"connect"}
    assert seen["literal"] == seen["line"] == seen["flood"] == seen["tag"] == {"protocol"}
