"""The runtime under faults: a supervised task that raises, a ledger on a full disk, an endpoint
that hangs. Each time the agent goes on probing every other route on its schedule."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.runtime import Agent
from tests.helpers.agents import run_for, sample, scrape, start, stop
from tests.helpers.clock import FakeClock
from tests.helpers.configs import USERS, account, make_config
from tests.hostile.smtp_modes import GreetThenSilent


def three_accounts(mail: EmbeddedMailService, **smtp: Any) -> dict[str, dict[str, Any]]:
    common = {"host": mail.host, "smtp_port": mail.smtp_port, "imap_port": mail.imap_port,
              "ca_file": mail.ca_file}  # fmt: skip
    out = {name.split("@")[0]: account(name, pw, **common) for name, pw in USERS.items()}
    for name, section in smtp.items():
        out[name]["smtp"].update(section)
    return out


def finals(records: list[Probe], route: str) -> list[Probe]:
    return [p for p in records if p.route == route and p.status is not Status.SENT]


async def test_a_watcher_task_that_raises_is_logged_counted_restarted_and_others_go_on(
    mail: EmbeddedMailService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """alice's watcher task raises at once: one log line with the traceback, a restart counted,
    the watcher back after the backoff; the route into carol's mailbox never misses a probe."""
    clock = FakeClock()
    routes = [
        {"name": "to-alice", "from": "bob", "to": "alice", "interval": "1m", "jitter": "0s"},
        {"name": "to-carol", "from": "bob", "to": "carol", "interval": "1m", "jitter": "0s"},
    ]
    config = make_config(three_accounts(mail), routes, state_dir=tmp_path / "state")
    records: list[Probe] = []
    agent = Agent(config, clock=clock, rng=random.Random(1), serve_http=False,
                  sinks=[records.append])  # fmt: skip
    watcher = agent.watchers.watches["alice"].watcher
    real_run = watcher.run
    runs = 0

    async def fails_once() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("an unforeseen bug in the watcher")
        await real_run()

    watcher.run = fails_once  # type: ignore[method-assign]
    task = await start(agent, accounts=("carol",))
    try:
        await run_for(clock, agent, 2)  # the supervisor's first backoff is one second
        assert await agent.watchers.wait_up(["alice"], 5)
        await run_for(clock, agent, 298)
        assert not task.done()
    finally:
        await stop(agent, task)
    assert runs == 2
    assert sample(agent, "mailprobe_task_restarts_total", task="watcher:alice") == 1
    failures = [r for r in caplog.records if "task watcher:alice failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None  # with its traceback, once
    # Both routes kept their grid over the 300 virtual seconds, every probe delivered: to-alice
    # at 0, 60, ..., 300 (its first probe waited in the mailbox for the restarted watcher),
    # to-carol half an interval later, at 30, 90, ..., 270.
    for route, expected in (("to-alice", 6), ("to-carol", 5)):
        got = finals(records, route)
        assert len(got) == expected, [(p.status, p.sent_at - clock.now) for p in got]
        assert all(p.arrived for p in got), got


# ---------------------------------------------------------------- a full disk


class FullDisk:
    """A small tmpfs of this test's own, which it can fill up and free again."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self._filler = mountpoint / "filler"

    def fill(self) -> None:
        """Take every free byte: writes there fail with ENOSPC until `free`."""
        chunk = b"\0" * (64 << 10)
        with self._filler.open("ab") as fh:
            while True:
                try:
                    fh.write(chunk)
                    fh.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    return

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    """A 4 MiB tmpfs mounted on a directory of this test, unmounted afterwards (needs root)."""
    if os.geteuid() != 0:
        if os.environ.get("MAILPROBE_REQUIRE_MAILSTACK"):
            pytest.fail("mounting a tmpfs needs root (MAILPROBE_REQUIRE_MAILSTACK is set)")
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mountpoint)],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield FullDisk(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


async def test_a_ledger_on_a_full_disk_keeps_probing_says_so_and_catches_up_exactly_once(
    mail: EmbeddedMailService, full_disk: FullDisk
) -> None:
    """The state dir's filesystem fills up mid-run: every route goes on, /metrics is served,
    /healthz names the problem; once space returns the ledger holds every probe exactly once."""
    clock = FakeClock()
    state = full_disk.mountpoint / "state"
    routes = [
        {"name": "r1", "from": "bob", "to": "alice", "interval": "10s", "jitter": "0s"},
        {"name": "r2", "from": "alice", "to": "carol", "interval": "10s", "jitter": "0s"},
    ]
    config = make_config(three_accounts(mail), routes, state_dir=state)
    agent = Agent(config, clock=clock, rng=random.Random(2))
    task = await start(agent, accounts=("alice", "carol"))
    try:
        await run_for(clock, agent, 30)
        assert agent.health()["status"] == "ok"
        full_disk.fill()
        await run_for(clock, agent, 60)
        health = agent.health()
        assert health["status"] == "degraded"
        assert any("ledger not writable" in p for p in health["problems"])  # type: ignore[attr-defined]
        assert health["ledger"]["pending_writes"] > 0  # type: ignore[index]
        assert "mailprobe_ledger_writable 0.0" in await scrape(agent)  # /metrics still served
        assert "ledger not writable" in await scrape(agent, "/healthz")
        sent_while_full = {r: sample(agent, "mailprobe_probes_sent_total", route=r) for r in
                           ("r1", "r2")}  # fmt: skip
        full_disk.free()
        await run_for(clock, agent, 30)
        assert agent.health()["status"] == "ok"
        assert agent.health()["ledger"]["pending_writes"] == 0  # type: ignore[index]
    finally:
        await stop(agent, task)
    sent = {r: sample(agent, "mailprobe_probes_sent_total", route=r) for r in ("r1", "r2")}
    for route in ("r1", "r2"):
        assert sent[route] is not None
        assert sent_while_full[route] is not None
        assert sent[route] >= sent_while_full[route] >= 9  # 90 s at 10 s: probing never paused
    with Ledger.open_readonly(state / LEDGER_FILE) as ledger:
        rows = ledger.probes(0, clock.now + 1)
        counts = ledger.counts()
    for route in ("r1", "r2"):
        mine = [p for p in rows if p.route == route]
        assert len(mine) == sent[route]  # every probe, once (the id is the key)
        assert all(p.status is Status.OK for p in mine), [p.status for p in mine]
        assert counts[(route, "received")] == sent[route]


# ---------------------------------------------------------------- a hanging endpoint


async def test_routes_on_a_hanging_endpoint_do_not_delay_a_healthy_route(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Six routes submit to a server that greets and then says nothing (each waits its timeout,
    four at a time on that endpoint); the healthy route on another endpoint keeps its schedule
    from the first probe on. (The issue's case at a third of the time: 10 s timeouts against a
    2 s interval hold that endpoint's slots as 30 s timeouts held them against a 10 s one.)"""
    async with GreetThenSilent() as silent:
        accounts = three_accounts(mail)
        for i in range(6):
            hung = account(f"hung{i}@demo.test", "pw", host="127.0.0.1", smtp_port=silent.port,
                           imap_port=mail.imap_port, ca_file=mail.ca_file, smtp_security="plain",
                           timeout="10s")  # fmt: skip
            hung["imap"] = accounts["carol"]["imap"]
            accounts[f"hung{i}"] = hung
        routes = [{"name": f"hung{i}", "from": f"hung{i}", "to": "carol", "interval": "2s",
                   "jitter": "0s"} for i in range(6)]  # fmt: skip
        routes.insert(3, {"name": "good", "from": "bob", "to": "alice", "interval": "2s",
                          "jitter": "0s"})  # fmt: skip
        config = make_config(accounts, routes, state_dir=tmp_path / "state")
        records: list[Probe] = []
        agent = Agent(config, serve_http=False, sinks=[records.append])
        loop = asyncio.get_running_loop()
        task = await start(agent, accounts=("alice", "carol"))
        started = loop.time()
        try:
            await asyncio.sleep(12)
        finally:
            with contextlib.suppress(TimeoutError):
                await stop(agent, task)
    good = finals(records, "good")
    # Its phase on the grid is 3/7 of the interval: first probe at ~0.9 s, then every 2 s.
    sent = sorted(p.sent_at for p in good)
    assert len(good) >= 5, sent
    assert sent[0] - (agent.scheduler._anchor or 0) < 1.5
    assert all(p.arrived for p in good), good
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(1.8 <= g <= 2.5 for g in gaps), gaps
    assert silent.connections >= 4  # the hanging endpoint really was busy
    assert loop.time() - started >= 12
