"""`mailprobe report` on the ledger of a real agent run (embedded mail service, virtual time)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.checks import Check
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.report_command import default_month
from mailprobe.agent.runtime import Agent
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import month_bounds, month_of, shift_month
from tests.helpers.agents import run_for, sample, start, stop
from tests.helpers.clock import FakeClock
from tests.helpers.configs import USERS, config_data, write_config

TZ = "Europe/Berlin"


def report(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "report", "--config", str(config), *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@pytest.fixture(scope="module")
def month() -> str:
    """Last month in the contract zone: the run below happens in it, so it is the default."""
    return default_month(SlaConfig(timezone=TZ), datetime.now(UTC).timestamp())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, month: str) -> dict[str, Any]:
    """30 virtual minutes on the 10th of last month: a 5 min SMTP outage, 2 min of it in an
    agreed window. Module scoped: one real run feeds every report test."""
    import asyncio

    tmp = tmp_path_factory.mktemp("report")
    start_at = month_bounds(month, TZ)[0] + 9 * 86400 + 8 * 3600
    out: dict[str, Any] = {"t0": start_at, "config": tmp / "mailprobe.yaml"}

    async def go() -> None:
        clock = FakeClock(start=start_at)
        async with EmbeddedMailService(USERS) as mail:
            window = {"name": "agreed", "start": iso(start_at + 720), "end": iso(start_at + 840)}
            data = config_data(mail, tmp / "state", sla={"timezone": TZ}, maintenance=[window])
            agent = Agent(write_config(data, out["config"]), clock=clock, rng=random.Random(7),
                          serve_http=False)  # fmt: skip
            task = await start(agent)
            try:
                await run_for(clock, agent, 630)
                await mail.set_outage("smtp", down=True)
                await run_for(clock, agent, 300)
                await mail.set_outage("smtp", down=False)
                await run_for(clock, agent, 870)
            finally:
                await stop(agent, task)
            out["down_metric"] = sample(
                agent, "mailprobe_down_seconds_total", route="all", check="any"
            )
            out["maint_metric"] = sample(
                agent, "mailprobe_maintenance_seconds_total", route="all", check="any"
            )

    asyncio.run(go())
    with Ledger.open_readonly(tmp / "state" / LEDGER_FILE) as ledger:
        trs = [t for t in ledger.transitions() if t.check is Check.SEND]
        out["probes"] = len(ledger.probes(start_at - 10, start_at + 1900))
    assert [t.state for t in trs] == ["down", "up"]
    down_at, up_at = trs[0].at, trs[1].at
    overlap = max(0.0, min(up_at, start_at + 840) - max(down_at, start_at + 720))
    out["down"] = (up_at - down_at) - overlap
    out["maintenance"] = overlap
    return out


def test_json_report_has_the_run_s_exact_figures(run: dict[str, Any], month: str) -> None:
    """Account scope: observed 30 min, down and maintenance seconds as the ledger's transitions
    and the agreed window give them, equal to what /metrics exported."""
    proc = report(run["config"], "--month", month, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["month"] == month
    assert data["timezone"] == TZ
    # The route's two ends share a domain: it is internal mail, a scope of its own as well.
    assert [s["route"] for s in data["scopes"]] == ["all", "kind:internal", "a2b"]
    account = next(s for s in data["scopes"] if s["kind"] is None)
    figures = account["figures"]
    assert figures["observed_seconds"] == 1800.0
    assert figures["down_seconds"] == pytest.approx(run["down"], abs=1e-6)
    assert figures["maintenance_seconds"] == pytest.approx(run["maintenance"], abs=1e-6)
    assert run["maintenance"] > 0
    assert run["down"] > 0
    assert figures["down_seconds"] == pytest.approx(run["down_metric"], abs=1e-6)
    assert figures["maintenance_seconds"] == pytest.approx(run["maint_metric"], abs=1e-6)
    assert account["probes_sent"] == run["probes"]
    assert account["probes_failed"] >= 2
    assert [o["check"] for o in data["outages"]] == ["send"]
    assert data["windows"][0][0] == "agreed"
    # 30 minutes observed of a whole month decide nothing, and nothing is owed.
    assert {c["verdict"] for c in account["clauses"]} == {"not enough data"}
    assert data["remedy"]["owed"] == []


def test_text_and_markdown_reports_default_to_last_month(run: dict[str, Any], month: str) -> None:
    """Without --month the report is last month's in the contract zone; text and Markdown render."""
    text = report(run["config"])
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"SLA report {month}")
    assert text.stderr == f"mailprobe: reporting {month} (the previous month); choose with --month\n"
    assert "Account (all routes)" in text.stdout
    assert "Route a2b" in text.stdout
    assert "Outages\n=======" in text.stdout
    markdown = report(run["config"], "--format", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout.startswith(f"# SLA report {month}")
    assert "| clause | measured | limit | unit | verdict | detail |" in markdown.stdout


def test_html_report_is_one_self_contained_page(run: dict[str, Any], tmp_path: Path) -> None:
    """--format html --output: a page with the verdict table and inline SVG charts, no network."""
    out = tmp_path / "report.html"
    proc = report(run["config"], "--format", "html", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    assert "<th>Clause</th><th class=num>Measured</th><th class=num>Limit</th><th>Verdict</th>" in page
    for heading in ("Outage timeline", "Daily downtime", "Delivery delay"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("data:image/svg+xml;base64,") >= 3
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page


def test_route_report_covers_one_route(run: dict[str, Any], month: str) -> None:
    """--route a2b: only that route's scope."""
    proc = report(run["config"], "--month", month, "--route", "a2b", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert [s["route"] for s in json.loads(proc.stdout)["scopes"]] == ["a2b"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--route", "nope"], "route 'nope' is neither configured nor in the ledger"),
        (["--month", "2026-13"], "--month: invalid month '2026-13'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    run: dict[str, Any], args: list[str], message: str
) -> None:
    """An unknown route or a malformed month: exit 2, the reason on stderr, no traceback."""
    proc = report(run["config"], *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_ledger_is_a_clear_error(run: dict[str, Any], tmp_path: Path) -> None:
    """A config whose state_dir holds no ledger: exit 2 naming the path; nothing is created."""
    data = yaml.safe_load(run["config"].read_text())
    data["agent"]["state_dir"] = str(tmp_path / "empty")
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump(data))
    proc = report(config)
    assert proc.returncode == 2
    assert f"no ledger at {tmp_path / 'empty' / LEDGER_FILE}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "empty").exists()


def test_config_errors_exit_2_without_traceback(run: dict[str, Any], tmp_path: Path) -> None:
    """Every config problem is listed with its key path; exit 2."""
    data = yaml.safe_load(run["config"].read_text())
    data["sla"] = {"timezone": "Nowhere/Atlantis", "confirm_retry": 15}
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(data))
    proc = report(config)
    assert proc.returncode == 2
    assert "sla.timezone: unknown time zone 'Nowhere/Atlantis'" in proc.stderr
    assert "sla.confirm_retry: bare number 15" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_report_while_the_agent_runs_leaves_its_run_open(tmp_path: Path) -> None:
    """The report opens the ledger read-only: the running agent's run is not ended by it."""
    clock = FakeClock()
    async with EmbeddedMailService(USERS) as mail:
        config = tmp_path / "c.yaml"
        agent = Agent(write_config(config_data(mail, tmp_path / "state"), config), clock=clock,
                      serve_http=False)  # fmt: skip
        task = await start(agent)
        t0 = clock.now
        try:
            await run_for(clock, agent, 60)
            proc = report(config, "--month", "2027-01", "--format", "json")
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout)["month"] == "2027-01"
            await run_for(clock, agent, 60)
        finally:
            await stop(agent, task)
    with Ledger.open_readonly(tmp_path / "state" / LEDGER_FILE) as ledger:
        assert ledger.runs() == [(t0, t0 + 120)]


async def test_after_a_first_run_the_default_is_the_current_month(tmp_path: Path) -> None:
    """A ledger whose previous month has no probes (a first run, a demo): the report shows the
    current month so far, and says so on stderr, for the account and for one route."""
    now = time.time()
    current = month_of(now, TZ)
    previous = shift_month(current, -1)
    # Inside the current month even in its first minutes: the minute of probes lands in it.
    clock = FakeClock(start=max(now - 120, month_bounds(current, TZ)[0] + 1))
    async with EmbeddedMailService(USERS) as mail:
        config = tmp_path / "c.yaml"
        data = config_data(mail, tmp_path / "state", sla={"timezone": TZ}, interval="10s")
        agent = Agent(write_config(data, config), clock=clock, serve_http=False)
        task = await start(agent)
        try:
            await run_for(clock, agent, 60)
        finally:
            await stop(agent, task)
    account = report(config, "--format", "json")
    assert account.returncode == 0, account.stderr
    assert json.loads(account.stdout)["month"] == current
    assert account.stderr == (
        f"mailprobe: reporting {current} (the current month so far: {previous} has no probes of "
        "any route); choose with --month\n"
    )
    route = report(config, "--route", "a2b")
    assert route.returncode == 0, route.stderr
    assert route.stdout.startswith(f"SLA report {current}")
    assert f"{previous} has no probes of route a2b" in route.stderr
    explicit = report(config, "--month", previous, "--format", "json")
    assert explicit.returncode == 0, explicit.stderr
    assert json.loads(explicit.stdout)["month"] == previous
    assert explicit.stderr == ""
