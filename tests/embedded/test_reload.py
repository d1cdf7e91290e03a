"""A config reload on a running agent (issue 14 item 4): routes added and removed without losing
a probe in flight or resetting a counter, a bad config keeps the running one, what needs a restart
is refused, POST /-/reload; against the embedded SMTP + IMAP service."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.config import load_config
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Status
from mailprobe.agent.reload import Reloader
from mailprobe.agent.runtime import Agent
from tests.helpers.agents import sample, scrape
from tests.helpers.configs import USERS, account
from tests.helpers.proxy import CuttableProxy
from tests.helpers.waits import wait_until

OK = "mailprobe_config_last_reload_successful"
WHEN = "mailprobe_config_last_reload_success_timestamp_seconds"


def config_data(mail: EmbeddedMailService, state: Path, *routes: dict[str, Any]) -> dict[str, Any]:
    common = {"host": mail.host, "ca_file": mail.ca_file, "smtp_port": mail.smtp_port,
              "imap_port": mail.imap_port}  # fmt: skip
    accounts = {name: account(address, USERS[address], **common)
                for name, address in (("alice", "alice@demo.test"), ("bob", "bob@demo.test"),
                                      ("carol", "carol@demo.test"))}  # fmt: skip
    for acc in accounts.values():
        for proto in ("smtp", "imap"):
            acc[proto]["ca_file"] = str(acc[proto]["ca_file"])
    return {
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(state)},
        "accounts": accounts,
        "routes": list(routes),
        "sla": {"confirm_retry": "1s", "confirm_within": "8s"},
    }  # fmt: skip


def route(name: str, sender: str, to: str, interval: str = "1s") -> dict[str, Any]:
    return {"name": name, "from": sender, "to": to, "interval": interval, "jitter": "0s"}


class Running:
    """An agent running from a config file, and its reloader."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.write(data)
        self.agent = Agent(load_config(path))
        self.reloader = Reloader(self.agent, path)
        assert self.agent.http is not None
        self.agent.http.reload = self.reloader.reload
        self.task: asyncio.Task[None] | None = None

    def write(self, data: dict[str, Any]) -> None:
        self.path.write_text(yaml.safe_dump(data))

    def received(self, name: str) -> float:
        return sample(self.agent, "mailprobe_probes_received_total", route=name) or 0.0


@pytest.fixture
async def running(mail: EmbeddedMailService, tmp_path: Path) -> AsyncIterator[Running]:
    import os

    os.environ["MP_TEST_SECRET"] = "reload-test-secret"
    run = Running(tmp_path / "mailprobe.yaml",
                  config_data(mail, tmp_path / "state", route("a2b", "bob", "alice"),
                              route("c2a", "carol", "alice")))  # fmt: skip
    run.task = asyncio.ensure_future(run.agent.run())
    await wait_until(run.agent.ready.is_set, 10, "agent ready")
    assert await run.agent.watchers.wait_up(["alice"], 10)
    yield run
    run.agent.stop()
    await asyncio.wait_for(run.task, 15)


async def test_a_route_added_is_probed_and_nothing_else_starts_again(running: Running) -> None:
    """b2a (into bob's mailbox, not watched before) is probed after the reload; a2b's counts and
    its delay histogram carry on; the reload gauges say it worked."""
    agent = running.agent
    await wait_until(lambda: running.received("a2b") >= 2, 20, "a2b probes")
    before = {name: sample(agent, name, route="a2b") or 0.0 for name in (
        "mailprobe_probes_sent_total", "mailprobe_probes_received_total",
        "mailprobe_delivery_delay_seconds_count")}  # fmt: skip
    loaded_at = sample(agent, WHEN)
    data = {**running.data, "routes": [*running.data["routes"], route("b2a", "alice", "bob")]}
    running.write(data)
    ok, text = await running.reloader.reload()
    assert ok, text
    assert text.endswith("routes added: b2a")
    assert sample(agent, OK) == 1.0
    assert (sample(agent, WHEN) or 0) >= (loaded_at or 0)
    assert sample(agent, "mailprobe_probes_sent_total", route="b2a") is not None  # at 0 at once
    assert set(agent.watchers.watches) == {"alice", "bob"}
    assert await agent.watchers.wait_up(["bob"], 10)
    await wait_until(lambda: running.received("b2a") >= 1, 20, "b2a probes")
    for name, value in before.items():
        assert (sample(agent, name, route="a2b") or 0.0) >= value, name


async def test_a_route_removed_keeps_its_probe_in_flight(
    running: Running, mail: EmbeddedMailService
) -> None:
    """a2b goes while its probe is held by the service: the probe stays in flight, arrives in
    alice's mailbox (still watched for c2a) and is recorded; a2b's loop ends, c2a's goes on, and
    no outage is counted for a2b."""
    agent = running.agent
    await wait_until(lambda: running.received("a2b") >= 1, 20, "a2b probes")
    mail.delay, mail.delay_fraction = 3.0, 1.0
    await wait_until(lambda: agent.books.inflight.count("a2b") >= 1, 10, "an a2b probe held")
    held = [p.probe_id for p in agent.books.inflight if p.route == "a2b"]
    assert agent.supervisor is not None
    loop = agent.supervisor.tasks["route:a2b"]
    running.write({**running.data, "routes": [route("c2a", "carol", "alice")]})
    ok, text = await running.reloader.reload()
    assert ok, text
    assert "removed: a2b" in text
    await wait_until(loop.done, 10, "a2b's loop to end")
    assert not loop.cancelled()  # it ended by itself, after its submission
    mail.delay = 0.0
    await wait_until(lambda: all(p not in agent.books.inflight for p in held), 15, "held probes")
    with Ledger.open_readonly(agent.config.agent.state_dir / LEDGER_FILE) as ledger:
        for pid in held:
            probe = ledger.probe(pid)
            assert probe is not None
            assert probe.status is Status.OK, probe
    sent = sample(agent, "mailprobe_probes_sent_total", route="c2a") or 0.0
    await wait_until(lambda: (sample(agent, "mailprobe_probes_sent_total", route="c2a") or 0.0)
                     > sent, 10, "c2a still probed")  # fmt: skip
    assert sample(agent, "mailprobe_probes_sent_total", route="a2b") is None  # counts go
    assert sample(agent, "mailprobe_down_seconds_total", route="a2b", check="receive") == 0.0


async def test_probes_in_flight_of_kept_routes_survive_the_reload(
    running: Running, mail: EmbeddedMailService
) -> None:
    """Held probes of routes the reload keeps arrive afterwards and are measured, not lost."""
    agent = running.agent
    await wait_until(lambda: running.received("c2a") >= 1, 20, "c2a probes")
    mail.delay, mail.delay_fraction = 2.0, 1.0
    await wait_until(lambda: agent.books.inflight.count("a2b") >= 1
                     and agent.books.inflight.count("c2a") >= 1, 10, "probes held")  # fmt: skip
    held = [p.probe_id for p in agent.books.inflight]
    running.write({**running.data, "routes": [*running.data["routes"],
                                              route("b2a", "alice", "bob", "1m")]})  # fmt: skip
    ok, text = await running.reloader.reload()
    assert ok, text
    mail.delay = 0.0
    await wait_until(lambda: all(p not in agent.books.inflight for p in held), 15, "arrivals")
    with Ledger.open_readonly(agent.config.agent.state_dir / LEDGER_FILE) as ledger:
        statuses = {pid: ledger.probe(pid).status for pid in held}  # type: ignore[union-attr]
    assert set(statuses.values()) == {Status.OK}, statuses


async def test_a_changed_mailbox_account_hands_over_without_finding_probes_late(
    running: Running, mail: EmbeddedMailService
) -> None:
    """alice's IMAP server moves (to a proxy slow to answer) while probes into her mailbox are
    held: they land before the new session is up, and the old session, watching on until then,
    sees them arrive (measured, not found late); it stops once the new one has taken over."""
    agent = running.agent
    await wait_until(lambda: running.received("a2b") >= 1, 20, "a2b probes")
    assert agent.supervisor is not None
    old_task = agent.supervisor.tasks["watcher:alice"]
    async with CuttableProxy(mail.host, mail.imap_port, accept_delay=2.0) as slow:
        mail.delay, mail.delay_fraction = 1.0, 1.0
        await wait_until(lambda: agent.books.inflight.count("a2b") >= 1, 10, "an a2b probe held")
        held = [p.probe_id for p in agent.books.inflight]
        data = copy.deepcopy(running.data)
        data["accounts"]["alice"]["imap"]["port"] = slow.port
        running.write(data)
        ok, text = await running.reloader.reload()
        assert ok, text
        assert "accounts changed: alice" in text
        assert not old_task.done()  # it watches on through the reload
        await wait_until(lambda: all(p not in agent.books.inflight for p in held), 15, "arrivals")
        mail.delay = 0.0
        with Ledger.open_readonly(agent.config.agent.state_dir / LEDGER_FILE) as ledger:
            stored = [ledger.probe(pid) for pid in held]
        assert all(p is not None and p.status is Status.OK for p in stored), stored
        assert not any(p.found_late for p in stored if p is not None), stored
        await wait_until(old_task.done, 15, "the old watcher to stop once the new one is up")
        assert agent.watchers.up("alice")
        await wait_until(agent.supervisor.tasks["handover:alice"].done, 10, "the handover")


async def test_a_bad_config_keeps_the_running_one_and_logs_every_problem(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Two mistakes: both logged with their keys, nothing changes, the gauge says 0 until a good
    reload."""
    agent = running.agent
    loaded_at = sample(agent, WHEN)
    bad = {**running.data, "routes": [{**route("a2b", "bob", "alice"), "interval": "soon"},
                                      route("x", "nobody", "alice")]}  # fmt: skip
    running.write(bad)
    with caplog.at_level(logging.ERROR, logger="mailprobe.agent.reload"):
        ok, text = await running.reloader.reload()
    assert not ok
    problems = [r.getMessage() for r in caplog.records]
    assert any("routes[0].interval" in p for p in problems), problems
    assert any("routes[1].from: no account named 'nobody'" in p for p in problems), problems
    assert all(p.startswith("config reload failed, the running config stays:") for p in problems)
    assert "routes[0].interval" in text
    assert sample(agent, OK) == 0.0
    assert sample(agent, WHEN) == loaded_at
    assert [r.name for r in agent.config.routes] == ["a2b", "c2a"]
    running.write(running.data)
    ok, _ = await running.reloader.reload()
    assert ok
    assert sample(agent, OK) == 1.0


async def test_what_needs_a_restart_is_refused_whole(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A new listen address with a new route: neither is applied, and the log says a restart is
    needed for the address."""
    agent = running.agent
    data = {**running.data, "agent": {**running.data["agent"], "listen": "127.0.0.1:1"},
            "routes": [*running.data["routes"], route("b2a", "alice", "bob")]}  # fmt: skip
    running.write(data)
    with caplog.at_level(logging.ERROR, logger="mailprobe.agent.reload"):
        ok, _ = await running.reloader.reload()
    assert not ok
    (line,) = [r.getMessage() for r in caplog.records]
    assert "agent.listen: changed ('127.0.0.1:0' -> '127.0.0.1:1'); a restart is needed" in line
    assert [r.name for r in agent.config.routes] == ["a2b", "c2a"]
    assert "b2a" not in agent.watchers.watches
    assert sample(agent, OK) == 0.0


async def test_a_changed_account_gets_a_new_watcher(running: Running) -> None:
    """alice's IMAP settings change: her watcher is replaced, and probes into it still arrive."""
    agent = running.agent
    old = agent.watchers.watches["alice"].watcher
    data = yaml.safe_load(running.path.read_text())
    data["accounts"]["alice"]["imap"]["timeout"] = "7s"
    running.write(data)
    ok, text = await running.reloader.reload()
    assert ok, text
    assert "accounts changed: alice" in text
    assert agent.watchers.watches["alice"].watcher is not old
    assert await agent.watchers.wait_up(["alice"], 10)
    count = running.received("a2b")
    await wait_until(lambda: running.received("a2b") > count, 20, "a2b arrivals after")


async def test_post_reload_applies_and_reports(running: Running) -> None:
    """POST /-/reload from loopback: 200 and what changed; 500 and the problems for a bad file."""
    agent = running.agent
    assert agent.http is not None
    running.write({**running.data, "fleet": {"quorum": 3}})
    reply = await _post(agent.http.port)
    assert reply.startswith("HTTP/1.1 200 OK"), reply
    assert "config reloaded from" in reply
    assert sample(agent, "mailprobe_quorum") == 3.0
    running.path.write_text("routes: [")
    reply = await _post(agent.http.port)
    assert reply.startswith("HTTP/1.1 500"), reply
    assert "not valid YAML" in reply
    assert sample(agent, "mailprobe_quorum") == 3.0
    assert "mailprobe_config_last_reload_successful 0.0" in await scrape(agent)


async def _post(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return data.decode()
