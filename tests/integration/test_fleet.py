"""Three vantage points on this machine probing the same real Postfix + Dovecot (issue 14 item 5).

Agents a and b reach the stack directly; agent c through a TCP proxy of its own (its network
path) that the test can cut. A real Prometheus scrapes all three with the shipped rules, the
quorum rules among them. Then:

- a joint outage (the stack's Postfix and Dovecot stopped): every vantage sees it, the quorum
  rules call it the provider's, and so do both fleet reports;
- c's path cut: only c sees it, the rules call it local, and both reports list it as excluded;
- the fleet report from the agents' ledgers and the one from Prometheus's counters agree: the
  same verdicts and remedies, each outage edge within one scrape interval.

Everything the test starts (agents, Prometheus, the proxy) ends by pid or by its own close; the
stack is running again before the test returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.windows import month_of
from tests.helpers import readme
from tests.helpers.agents import AgentProcess, free_port, metric, scrape
from tests.helpers.configs import SECRET, account
from tests.helpers.proxy import CuttableProxy
from tests.mailstack import MailStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SENDER, RECEIVER = "bob@probe.test", "alice@probe.test"
SCRAPE = 5.0  # seconds; at least the agent's 5 s update, as the README advises
OUTAGE = 15.0
SETTLE = 2 * SCRAPE
TIMEZONE = "Europe/Berlin"
VANTAGES = ("a", "b", "c")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI") or os.environ.get("MAILPROBE_REQUIRE_MAILSTACK"):
        pytest.fail(f"{name} is not installed, and CI requires it")
    pytest.skip(f"{name} is not installed")


def agent_config(stack: MailStack, state: Path, port: int, smtp: int, imap: int) -> dict[str, Any]:
    """Route b2a (bob -> alice) over STARTTLS through the given SMTP and IMAP ports."""
    common = {"host": stack.host, "ca_file": stack.ca_file, "smtp_port": smtp, "imap_port": imap,
              "timeout": "2s"}  # fmt: skip
    accounts = {"alice": account(RECEIVER, stack.users[RECEIVER], **common),
                "bob": account(SENDER, stack.users[SENDER], **common)}  # fmt: skip
    for acc in accounts.values():
        for side in ("smtp", "imap"):
            acc[side]["ca_file"] = str(acc[side]["ca_file"])
    return {
        "agent": {"listen": f"127.0.0.1:{port}", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(state), "log_level": "info"},
        "accounts": accounts,
        "routes": [{"name": "b2a", "from": "bob", "to": "alice", "interval": "2s",
                    "jitter": "0s"}],
        "sla": {"confirm_retry": "1s", "confirm_within": "4s", "receive_deadline": "30s",
                "timezone": TIMEZONE},
        "fleet": {"quorum": 2},
    }  # fmt: skip


def rule_files(dest: Path) -> list[str]:
    """The shipped rules and alerts, each group on the global evaluation interval (1 s)."""
    out = []
    for folder in ("rules", "alerts"):
        for path in sorted((ROOT / "config" / "prometheus" / folder).glob("*.yml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            for group in data["groups"]:
                group.pop("interval", None)
            target = dest / f"{folder}-{path.name}"
            target.write_text(yaml.safe_dump(data), encoding="utf-8")
            out.append(str(target))
    return out


@dataclass
class Fleet:
    stack: MailStack
    agents: dict[str, AgentProcess]
    ports: dict[str, int]
    states: dict[str, Path]
    config: Path
    proxies: list[CuttableProxy]
    prometheus: str
    month: str

    async def received(self, name: str) -> float:
        try:
            return metric(await scrape(self.ports[name]), "mailprobe_probes_received_total",
                          route="b2a")  # fmt: skip
        except (OSError, AssertionError):
            return 0.0

    async def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": start, "end": end, "step": 1})

        def fetch() -> Any:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
                return json.loads(resp.read())

        body = await asyncio.to_thread(fetch)
        assert body["status"] == "success", body
        return body["data"]["result"]  # type: ignore[no-any-return]

    async def values(self, expr: str, start: float, end: float) -> list[float]:
        return [float(v) for series in await self.query_range(expr, start, end)
                for _, v in series["values"]]  # fmt: skip


async def until_received_more(fleet: Fleet, names: tuple[str, ...], what: str) -> None:
    """Each named agent receives a probe it had not received before."""
    before = {n: await fleet.received(n) for n in names}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 40
    for name in names:
        while await fleet.received(name) <= before[name]:
            assert loop.time() < deadline, f"timed out waiting for {what} ({name})"
            await asyncio.sleep(0.2)


@pytest.fixture
async def fleet(mailstack: MailStack, tmp_path: Path) -> AsyncIterator[Fleet]:
    """The three agents, c's proxy and Prometheus, all running; everything ended afterwards."""
    os.environ["MP_TEST_SECRET"] = SECRET
    smtp_proxy = CuttableProxy(mailstack.host, mailstack.submission_port)
    imap_proxy = CuttableProxy(mailstack.host, mailstack.imap_port)
    proxies = [smtp_proxy, imap_proxy]
    ports = {name: free_port() for name in VANTAGES}
    states = {name: tmp_path / name for name in VANTAGES}
    agents: dict[str, AgentProcess] = {}
    prometheus: asyncio.subprocess.Process | None = None
    try:
        await smtp_proxy.restore()
        await imap_proxy.restore()
        for name in VANTAGES:
            via = ((smtp_proxy.port, imap_proxy.port) if name == "c"
                   else (mailstack.submission_port, mailstack.imap_port))  # fmt: skip
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(agent_config(mailstack, states[name], ports[name], *via)))
            agents[name] = AgentProcess(path, tmp_path / f"{name}.log", "--vantage", name)
        prom_port = free_port()
        prom_config = {
            "global": {"scrape_interval": f"{SCRAPE:g}s", "evaluation_interval": "1s"},
            "rule_files": rule_files(tmp_path),
            "scrape_configs": [{"job_name": "mailprobe", "static_configs": [
                {"targets": [f"127.0.0.1:{ports[n]}" for n in VANTAGES]}]}],
        }  # fmt: skip
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
        with (tmp_path / "prometheus.log").open("wb") as log:
            prometheus = await asyncio.create_subprocess_exec(
                tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", stdout=log, stderr=log,
            )  # fmt: skip
        for agent in agents.values():
            await agent.start()
        yield Fleet(mailstack, agents, ports, states, tmp_path / "a.yaml", proxies,
                    f"http://127.0.0.1:{prom_port}", month_of(time.time(), TIMEZONE))  # fmt: skip
    finally:
        for agent in agents.values():
            await agent.ensure_gone()
        if prometheus is not None and prometheus.returncode is None:
            prometheus.terminate()
            try:
                await asyncio.wait_for(prometheus.wait(), 15)
            except TimeoutError:
                prometheus.kill()
                await prometheus.wait()
        for proxy in proxies:
            await proxy.cut()
        await asyncio.to_thread(mailstack.start_dovecot)  # no-ops when they run
        await asyncio.to_thread(mailstack.start_postfix)


def mailprobe_report(*args: str | Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "report", *map(str, args), "--format", "json"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def spans(report: dict[str, Any], kind: str, vantage: str | None = None) -> list[tuple[str, float, float]]:
    """(check, start, end) of the fleet's provider or local outages (of one vantage)."""
    return [(o["check"], o["start"], o["end"]) for o in report["fleet"][kind]
            if vantage is None or o["vantages"] == [vantage]]  # fmt: skip


def within(found: list[tuple[str, float, float]], start: float, end: float) -> list[str]:
    return sorted({check for check, lo, hi in found if lo < end and hi > start})


@dataclass(frozen=True)
class Scene:
    """When things happened (Unix seconds)."""

    started: float
    joint: float
    joint_end: float
    local: float
    local_end: float
    ended: float


async def play(fleet: Fleet) -> Scene:
    """A joint outage, then c's path cut; each time until every vantage delivers again."""
    started = time.time()
    await until_received_more(fleet, VANTAGES, "a first probe at every vantage")
    await asyncio.sleep(SETTLE)
    joint = time.time()
    await asyncio.to_thread(fleet.stack.stop_postfix)
    await asyncio.to_thread(fleet.stack.stop_dovecot)
    await asyncio.sleep(OUTAGE)
    await asyncio.to_thread(fleet.stack.start_dovecot)
    await asyncio.to_thread(fleet.stack.start_postfix)
    joint_end = time.time()
    await until_received_more(fleet, VANTAGES, "probes again after the joint outage")
    await asyncio.sleep(SETTLE)
    local = time.time()
    for proxy in fleet.proxies:
        await proxy.cut()
    await asyncio.sleep(OUTAGE)
    for proxy in fleet.proxies:
        await proxy.restore()
    local_end = time.time()
    await until_received_more(fleet, ("c",), "c's probes after its path came back")
    await asyncio.sleep(SETTLE + SCRAPE)  # the last states scraped and evaluated
    return Scene(started, joint, joint_end, local, local_end, time.time())


async def check_rules(fleet: Fleet, scene: Scene) -> None:
    """The quorum rules, as Prometheus evaluated them: provider for the joint outage, local to
    c (named by its mailprobe_vantage_info) for the cut."""
    provider = "route:mailprobe_provider_down:quorum"
    c_local = ('instance_route_check:mailprobe_local_down:quorum'
               f'{{instance="127.0.0.1:{fleet.ports["c"]}"}}')  # fmt: skip
    assert 1.0 in await fleet.values(provider, scene.joint, scene.joint_end + SCRAPE + 5)
    assert 1.0 not in await fleet.values(provider, scene.local + 1, scene.local_end)
    assert 1.0 in await fleet.values(c_local, scene.local, scene.local_end + SCRAPE + 5)
    series = await fleet.query_range(c_local, scene.local, scene.ended)
    assert {s["metric"].get("vantage") for s in series} == {"c"}
    (join,) = readme.blocks("Running several agents", "promql")
    named = await fleet.query_range(join.strip(), scene.ended - SCRAPE, scene.ended)
    assert {s["metric"]["vantage"] for s in named} == set(VANTAGES)


def check_report(report: dict[str, Any], scene: Scene) -> None:
    """One fleet report: the joint outage the provider's, seen by all; c's cut local to c."""
    assert [v["name"] for v in report["fleet"]["vantages"]] == list(VANTAGES)
    joint = (scene.joint, scene.joint_end + 10)
    assert within(spans(report, "provider"), *joint) == ["receive", "send"]
    for o in report["fleet"]["provider"]:
        if o["start"] < joint[1] and o["end"] > joint[0]:
            assert o["vantages"] == list(VANTAGES)
    assert report["scopes"][0]["figures"]["down_seconds"] == pytest.approx(OUTAGE, abs=10)
    assert within(spans(report, "provider"), scene.local + 1, scene.local_end) == []
    local = within(spans(report, "local", "c"), scene.local, scene.local_end + 10)
    assert local == ["receive", "send"]
    local_c = next(v for v in report["fleet"]["vantages"] if v["name"] == "c")
    assert local_c["local_seconds"] >= OUTAGE - 5
    assert scene.started <= report["fleet"]["provider"][0]["start"]


def check_agreement(from_prom: dict[str, Any], from_ledgers: dict[str, Any]) -> None:
    """The two ways agree: verdicts, remedies, figures and each edge within a scrape interval."""
    assert from_prom["verdict"] == from_ledgers["verdict"]
    assert from_prom["remedy"] == from_ledgers["remedy"]
    outages = len(from_ledgers["outages"])
    for mine, theirs in zip(from_prom["scopes"], from_ledgers["scopes"], strict=True):
        assert [(c["clause"], c["verdict"]) for c in mine["clauses"]] == [
            (c["clause"], c["verdict"]) for c in theirs["clauses"]]  # fmt: skip
        for key in ("down_seconds", "maintenance_seconds"):
            assert mine["figures"][key] == pytest.approx(theirs["figures"][key],
                                                         abs=2 * SCRAPE * max(outages, 1))  # fmt: skip
        assert mine["figures"]["observed_seconds"] == pytest.approx(
            theirs["figures"]["observed_seconds"], abs=4 * SCRAPE)  # fmt: skip

    # Local slivers at the joint outage's edges (the first vantage down, the last one back) are
    # shorter than the edges are known from Prometheus: compare those longer than two scrapes.
    # Send and receive start within a second of each other: pair them by check, not by order.
    def kept(kind: str, report: dict[str, Any]) -> list[dict[str, Any]]:
        found = [o for o in report["fleet"][kind]
                 if kind == "provider" or o["end"] - o["start"] > 2 * SCRAPE]  # fmt: skip
        return sorted(found, key=lambda o: (o["route"], o["check"], o["vantages"], o["start"]))

    for kind in ("provider", "local"):
        mine, theirs = kept(kind, from_prom), kept(kind, from_ledgers)
        assert [(o["route"], o["check"], o["vantages"]) for o in mine] == [
            (o["route"], o["check"], o["vantages"]) for o in theirs], kind  # fmt: skip
        for m, t in zip(mine, theirs, strict=True):
            assert m["start"] == pytest.approx(t["start"], abs=SCRAPE), (kind, m, t)
            assert m["end"] == pytest.approx(t["end"], abs=SCRAPE), (kind, m, t)
    for m, t in zip(from_prom["fleet"]["vantages"], from_ledgers["fleet"]["vantages"], strict=True):
        assert m["local_seconds"] == pytest.approx(t["local_seconds"], abs=4 * SCRAPE), (m, t)


async def test_a_joint_outage_is_the_provider_s_and_one_cut_vantage_is_local(fleet: Fleet) -> None:
    """See the module doc: the rules, the report from ledgers, the report from Prometheus."""
    scene = await play(fleet)
    await check_rules(fleet, scene)
    for name in VANTAGES:
        assert await fleet.agents[name].signal(signal.SIGTERM) == 0
    ledgers = [fleet.states[n] / "ledger.sqlite3" for n in VANTAGES]
    month = ("--config", fleet.config, "--month", fleet.month)
    from_ledgers = mailprobe_report(*month, *(a for p in ledgers for a in ("--ledger", p)))
    from_prom = mailprobe_report(*month, "--prometheus", fleet.prometheus,
                                 "--prometheus-match", 'job="mailprobe"')  # fmt: skip
    for report in (from_ledgers, from_prom):
        check_report(report, scene)
    check_agreement(from_prom, from_ledgers)
