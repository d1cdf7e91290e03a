"""A real Prometheus with the shipped recording rules scrapes a real agent probing the embedded
mail service through a short SMTP outage.

Once the data is in, every recording rule expression and every dashboard query (template
variables substituted) goes through the Prometheus HTTP API: each must parse and return data.
The downtime Prometheus sees must match the injected outage.

The agent's contract is in Europe/Berlin; the month figures must be its own contract month. The
opt-in UTC-month fallback (config/prometheus/fallback) is loaded too, for an older agent beside it
(counters only, backfilled below): its rules run here as well, for that agent alone.

Two adaptations, both for time and neither changing an expression:
- The shipped rule groups evaluate every 30 s to 2 min; the test's copies leave `interval` out,
  so the 1 s global evaluation_interval applies and recorded series exist within seconds.
- The fallback's month-to-date and the rolling-year rules step over whole UTC hours and days that
  a short test never spans. Before Prometheus starts, two days of accounting counters are
  backfilled (promtool tsdb create-blocks-from openmetrics): an agent of 0.1.0, under an
  instance of its own, that ran trouble-free until a moment before this one started.

Needs the prometheus and promtool binaries (Debian: prometheus); no root.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from mailprobe.agent.books import TICK_INTERVAL
from mailprobe.agent.config import Config, parse_config
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.runtime import Agent
from mailprobe.agent.windows import month_bounds, month_of
from tests.helpers.configs import SECRET, account
from tests.helpers.waits import wait_until
from tests.helpers.webserver import WebServer

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = [path for folder in ("rules", "fallback")
              for path in sorted((ROOT / "config" / "prometheus" / folder).glob("*.yml"))]  # fmt: skip
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))

USERS = {"alice@demo.test": "alice-pw", "bob@demo.test": "bob-pw"}
DOMAIN = EmbeddedMailService.hostname.partition(".")[2]  # embedded.test
ROUTES = ("a2b", "b2a")
PROBE_INTERVAL = 0.5
CONFIRM_RETRY = 0.5
SCRAPE_INTERVAL = 1.0
OUTAGE = 6.0
TIMEZONE = "Europe/Berlin"
HISTORY = 50 * 3600  # two UTC midnights and whole hours behind any moment the test runs
HISTORY_STEP = 60
OLD_AGENT = "old-agent.test:9478"  # the backfilled one: counters only, no contract month
# Grafana's values for its own variables at a 1 s scrape interval: $__rate_interval is at least
# four scrapes; $__range covers the whole test.
GRAFANA_VARS = {"$__rate_interval": "4s", "$__interval": "1s", "$__range": "5m"}
VARIABLE_VALUES = {"route": {True: "a2b|b2a", False: "a2b"}, "account": {True: "alice|bob"},
                   "timezone": {False: TIMEZONE}}  # fmt: skip


# ----------------------------------------------------------------------------- helpers


def tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed, and CI requires it")
    pytest.skip(f"{name} is not installed")


def free_port() -> int:
    """A loopback port nobody listens on now (Prometheus cannot report a port-0 bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Query:
    """One PromQL expression to run, and where it comes from."""

    source: str
    expr: str
    instant: bool = True


def rule_queries() -> list[Query]:
    """Every recording rule of the shipped rule files."""
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out += [
                Query(f"rule {r['record']}", r["expr"]) for r in group["rules"] if "record" in r
            ]
    return out


def panel_queries() -> list[Query]:
    """Every dashboard target with the variables substituted as Grafana would send them."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        multi = {v["name"]: bool(v.get("multi")) for v in board["templating"]["list"]}
        for panel in _panels(board):
            for target in panel["targets"]:
                expr = target["expr"]
                # A panel's minimum interval raises Grafana's $__interval and $__rate_interval.
                floor = panel.get("interval")
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, floor if floor and var != "$__range" else value)
                for name, is_multi in multi.items():
                    expr = expr.replace(f"${name}", VARIABLE_VALUES[name][is_multi])
                where = f"{path.stem} {panel['title']!r} {target['refId']}"
                out.append(Query(where, expr, instant=bool(target.get("instant"))))
    return out


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard, label, metric) of each label_values() template variable."""
    out = []
    for path in DASHBOARDS:
        for var in json.loads(path.read_text(encoding="utf-8"))["templating"]["list"]:
            metric, label = var["query"].removeprefix("label_values(").rstrip(")").split(", ")
            out.append((path.stem, label, metric))
    return out


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def fast_rule_files(dest: Path) -> list[Path]:
    """Copies of the shipped rule files with each group on the global evaluation interval."""
    out = []
    for path in RULE_FILES:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in data["groups"]:
            group.pop("interval", None)
        out.append(dest / path.name)
        out[-1].write_text(yaml.safe_dump(data), encoding="utf-8")
    return out


def history(instance: str, end: float) -> str:
    """OpenMetrics text: a trouble-free agent observing every check until `end`."""
    keys = [(r, c) for r in ROUTES for c in ("send", "receive", "connectivity")]
    keys.append(("all", "any"))
    steps = range(int(end) - HISTORY, int(end), HISTORY_STEP)
    base = f'job="mailprobe",instance="{instance}"'
    lines = []
    for family in ("observed", "down", "maintenance"):
        lines.append(f"# TYPE mailprobe_{family}_seconds counter")
        for route, check in keys:
            labels = f'{base},route="{route}",check="{check}"'
            for i, ts in enumerate(steps):
                value = i * HISTORY_STEP if family == "observed" else 0
                lines.append(f"mailprobe_{family}_seconds_total{{{labels}}} {value} {ts}")
    lines.append("# TYPE mailprobe_probes_over_max counter")
    for route in ROUTES:
        lines += [f'mailprobe_probes_over_max_total{{{base},route="{route}"}} 0 {ts}'
                  for ts in steps]  # fmt: skip
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class Prometheus:
    """A Prometheus server process on loopback, queried over its HTTP API."""

    def __init__(self, workdir: Path, agent_port: int) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.target = f"127.0.0.1:{agent_port}"
        self.log = workdir / "prometheus.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def backfill(self, openmetrics: str) -> None:
        source = self.workdir / "history.om"
        source.write_text(openmetrics, encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            tool("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source),
            str(self.workdir / "data"), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()

    async def start(self) -> None:
        config = {
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL:g}s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in fast_rule_files(self.workdir)],
            "scrape_configs": [{"job_name": "mailprobe",
                                "static_configs": [{"targets": [self.target]}]}],
        }  # fmt: skip
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                tool("prometheus"), f"--config.file={path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                stdout=log, stderr=log,
            )  # fmt: skip

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    async def get(self, path: str, **params: str | float) -> Any:
        """GET an API path; the decoded JSON body, errors included (HTTP 400 carries them)."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"

        def fetch() -> Any:
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback URL built here
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return json.loads(exc.read())

        # The agent serves /metrics on this loop: never block it on a query.
        return await asyncio.to_thread(fetch)

    async def ready(self) -> bool:
        def probe() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:  # noqa: S310
                    return bool(resp.status == 200)
            except OSError:
                return False

        return await asyncio.to_thread(probe)

    async def run(self, query: Query, start: float) -> dict[str, Any]:
        if query.instant:
            return await self.get("/api/v1/query", query=query.expr)  # type: ignore[no-any-return]
        return await self.get("/api/v1/query_range", query=query.expr, start=start,  # type: ignore[no-any-return]
                              end=time.time(), step=SCRAPE_INTERVAL)  # fmt: skip

    async def value(self, expr: str) -> float | None:
        """The single value an instant query returns, None when it returns nothing."""
        body = await self.get("/api/v1/query", query=expr)
        assert body["status"] == "success", body
        result = body["data"]["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


async def poll(check: Any, timeout: float, what: str, prom: Prometheus | None = None) -> None:
    """Await an async predicate until it holds; fail naming `what` (with Prometheus's log)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f"\n{prom.tail()}" if prom else ""))  # fmt: skip
        await asyncio.sleep(0.1)


def has_data(body: dict[str, Any]) -> bool:
    """A result with at least one sample that is a number (not NaN)."""
    data = body["data"]
    if data["resultType"] == "scalar":
        return not math.isnan(float(data["result"][1]))
    for series in data["result"]:
        points = series.get("values") or [series["value"]]
        if any(not math.isnan(float(v)) for _, v in points):
            return True
    return False


# ----------------------------------------------------------------------------- the scene


def ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


def config_for(svc: EmbeddedMailService, state_dir: Path, web: WebServer) -> Config:
    common = {"host": svc.host, "ca_file": svc.ca_file, "smtp_port": svc.smtp_port,
              "imap_port": svc.imap_port, "timeout": "2s"}  # fmt: skip
    os.environ["MP_TEST_SECRET"] = SECRET
    return parse_config({
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(state_dir)},
        # Both accounts on the one embedded service: its hosts let the agent split each delay
        # into send and receive parts from the Received chain.
        "accounts": {"alice": {**account("alice@demo.test", "alice-pw", **common),
                               "service_hosts": [f"*.{DOMAIN}"]},
                     "bob": {**account("bob@demo.test", "bob-pw", **common),
                             "service_hosts": [f"*.{DOMAIN}"]}},
        "routes": [{"name": "a2b", "from": "bob", "to": "alice", "interval": ms(PROBE_INTERVAL)},
                   {"name": "b2a", "from": "alice", "to": "bob", "interval": ms(PROBE_INTERVAL),
                    "antivirus": {"every": "1d"}}],
        # The test webmail, loaded every second, for the webmail rules and panels.
        "webmail": [{"name": "portal", "url": web.url("/page"), "interval": "1s",
                     "ca_file": str(web.ca_file)}],
        # Confirm a failure by a quick retry, so the outage's edges are sharp; confirm_within
        # must exceed the retry plus the 2 s SMTP timeout.
        "sla": {"confirm_retry": ms(CONFIRM_RETRY), "confirm_within": "3s",
                "timezone": TIMEZONE},
    })  # fmt: skip


@dataclass(frozen=True)
class Scene:
    """Prometheus holding a run of the agent through an SMTP outage, both still running."""

    agent: Agent
    prom: Prometheus
    started: float  # when Prometheus started: range queries begin here
    outage: float  # seconds the SMTP side was down
    down_before: float  # a2b send down total before the outage
    agent_down: float  # what the agent counted for the outage


def live(name: str, prom: Prometheus, **labels: str) -> str:
    """A selector for the series of the agent under test (not the backfilled one)."""
    inner = ",".join(f'{k}="{v}"' for k, v in {"instance": prom.target, **labels}.items())
    return f"{name}{{{inner}}}"


def raw_down(prom: Prometheus) -> str:
    return live("mailprobe_down_seconds_total", prom, route="a2b", check="send")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    tmp = tmp_path_factory.mktemp("prometheus-e2e")
    tool("prometheus")
    async with EmbeddedMailService(USERS) as mail, WebServer(tmp) as web:
        agent = Agent(config_for(mail, tmp, web))
        task = asyncio.ensure_future(agent.run())
        prom: Prometheus | None = None
        try:
            await asyncio.wait_for(agent.ready.wait(), 10)
            assert agent.http is not None
            assert await agent.watchers.wait_up(["alice", "bob"], 10), "watchers did not come up"
            prom = Prometheus(tmp, agent.http.port)
            await prom.backfill(history(OLD_AGENT, time.time() - 1))
            await prom.start()
            started = time.time()
            await poll(prom.ready, 30, "Prometheus ready", prom)
            await poll(lambda: _scraped(prom), 15, "three scrapes of the agent", prom)
            await wait_until(lambda: _delivered(agent), 10, "probes delivered on both routes")
            scene = await _through_outage(agent, prom, mail, started)
            await poll(lambda: _recorded(prom, scene.agent_down), 10,
                       "the recording rules to count the outage", prom)  # fmt: skip
            yield scene
        finally:
            if prom is not None:
                await prom.stop()
            agent.stop()
            await asyncio.wait_for(task, 15)


async def _through_outage(
    agent: Agent, prom: Prometheus, mail: EmbeddedMailService, started: float
) -> Scene:
    """Take SMTP down for OUTAGE seconds; return once Prometheus has the final down total."""
    down_before = _down(agent)
    await mail.set_outage("smtp", down=True)
    outage_start = time.time()
    await asyncio.sleep(OUTAGE)  # the outage itself, not a wait for readiness
    await mail.set_outage("smtp", down=False)
    outage = time.time() - outage_start

    def recovered() -> bool:
        return _sample(agent, "mailprobe_check_up") == 1.0 and _down(agent) > down_before

    await wait_until(recovered, 10, "the send check of a2b up again")
    # Observed time advances on the agent's ticks, and down time is counted only where observed:
    # the down total is final once a tick has passed the recovery.
    observed = _sample(agent, "mailprobe_observed_seconds_total")
    await wait_until(lambda: _sample(agent, "mailprobe_observed_seconds_total") > observed,
                     TICK_INTERVAL + 2, "an accounting tick after the recovery")  # fmt: skip
    final = _down(agent)

    async def caught_up() -> bool:
        return await prom.value(raw_down(prom)) == final

    await poll(caught_up, 5, "Prometheus scraping the final down total", prom)
    return Scene(agent, prom, started, outage, down_before, final - down_before)


def _sample(agent: Agent, name: str) -> float:
    """A series of the a2b route's send check, as the agent exports it now."""
    value = agent.registry.get_sample_value(name, {"route": "a2b", "check": "send"})
    return value or 0.0


def _down(agent: Agent) -> float:
    return _sample(agent, "mailprobe_down_seconds_total")


def _delivered(agent: Agent) -> bool:
    counts = [agent.registry.get_sample_value("mailprobe_probes_received_total", {"route": r})
              for r in ROUTES]  # fmt: skip
    return all((c or 0) >= 2 for c in counts)


async def _recorded(prom: Prometheus, down: float) -> bool:
    """The month-to-date rule (evaluated after the raw scrape) has the outage in it."""
    expr = live("route_check:mailprobe_down_seconds:month_to_date", prom, route="a2b", check="send")
    value = await prom.value(expr)
    return value is not None and value >= down - 0.5


async def _scraped(prom: Prometheus) -> bool:
    body = await prom.get("/api/v1/query",
                          query='count_over_time(up{job="mailprobe"}[1m]) >= 3')  # fmt: skip
    return bool(body.get("status") == "success" and body["data"]["result"])


async def problems(scene: Scene, queries: list[Query]) -> list[str]:
    """Queries that fail to parse or return no data."""
    out = []
    for query in queries:
        body = await scene.prom.run(query, scene.started)
        if body.get("status") != "success":
            out.append(f"{query.source}: {body.get('error')}\n    {query.expr}")
        elif not has_data(body):
            out.append(f"{query.source}: no data\n    {query.expr}")
    return out


# ----------------------------------------------------------------------------- the tests

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_every_recording_rule_parses_and_returns_data(scene: Scene) -> None:
    """Each shipped recording rule's expression, run as an instant query, has samples."""
    queries = rule_queries()
    assert len(queries) >= 20
    failures = await problems(scene, queries)
    assert not failures, "\n".join(failures)


async def test_every_dashboard_query_parses_and_returns_data(scene: Scene) -> None:
    """Each panel target, variables substituted, as Grafana runs it (instant or range), has data."""
    queries = panel_queries()
    assert len(queries) >= 30
    failures = await problems(scene, queries)
    assert not failures, "\n".join(failures)


async def test_template_variables_list_the_routes_and_accounts(scene: Scene) -> None:
    """label_values() of each dashboard variable returns the configured names."""
    found = {}
    for _, label, metric in variable_queries():
        body = await scene.prom.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
        assert body["status"] == "success", body
        found[label] = set(body["data"])
    assert found == {"route": set(ROUTES), "account": {"alice", "bob"}, "timezone": {TIMEZONE}}


async def test_downtime_in_prometheus_matches_the_injected_outage(scene: Scene) -> None:
    """The a2b send check's down seconds, raw and via increase(), are the outage's length."""
    tolerance = SCRAPE_INTERVAL + CONFIRM_RETRY
    assert scene.agent_down == pytest.approx(scene.outage, abs=tolerance)
    prom = scene.prom
    raw = await prom.value(raw_down(prom))
    assert raw is not None
    assert raw - scene.down_before == pytest.approx(scene.outage, abs=tolerance)
    grown = await prom.value(f"increase({raw_down(prom)}[5m])")
    assert grown == pytest.approx(scene.outage, abs=tolerance)
    # Receiving never failed, and the account-wide figure counts the same outage once.
    down = "mailprobe_down_seconds_total"
    assert await prom.value(live(down, prom, route="a2b", check="receive")) == 0
    account = await prom.value(f"increase({live(down, prom, route='all')}[5m])")
    assert account == pytest.approx(scene.outage, abs=tolerance)


async def test_month_figures_are_the_agent_s_contract_month(scene: Scene) -> None:
    """The month rules give the agent its own Berlin month (its observed time and outage, the
    month elapsed since Berlin's midnight on the first), and the older agent beside it the UTC
    fallback's: the fallback counts for that agent alone."""
    prom, now = scene.prom, time.time()
    berlin_start = month_bounds(month_of(now, TIMEZONE), TIMEZONE)[0]
    elapsed = await prom.value(live("instance:mailprobe_month_elapsed_seconds:contract", prom))
    assert elapsed == pytest.approx(now - berlin_start, abs=5)
    rule = "route_check:mailprobe_observed_seconds:month_to_date"
    agent_observed = _sample(scene.agent, "mailprobe_contract_month_observed_seconds")
    observed = await prom.value(live(rule, prom, route="a2b", check="send"))
    assert observed is not None
    # Ticks advance observed time every TICK_INTERVAL; a scrape and an evaluation follow.
    assert observed == pytest.approx(agent_observed, abs=TICK_INTERVAL + 2 * SCRAPE_INTERVAL)
    month_down = live("route_check:mailprobe_down_seconds:month_to_date", prom, route="a2b",
                      check="send")  # fmt: skip
    agent_down = _sample(scene.agent, "mailprobe_contract_month_down_seconds")

    async def same_down() -> bool:  # the rule follows the next scrape and evaluation
        return await prom.value(month_down) == agent_down

    await poll(same_down, 3 * SCRAPE_INTERVAL + 5, "the month rule to show the agent's figure", prom)

    async def instances(expr: str) -> set[str]:
        body = await prom.get("/api/v1/query", query=f"count by (instance) ({expr})")
        assert body["status"] == "success", body
        return {r["metric"]["instance"] for r in body["data"]["result"]}

    assert await instances(rule) == {prom.target, OLD_AGENT}
    for fallback in ("route_check:mailprobe_observed_seconds:utc_month_to_date",
                     "instance:mailprobe_month_elapsed_seconds:utc"):  # fmt: skip
        assert await instances(fallback) == {OLD_AGENT}, fallback
