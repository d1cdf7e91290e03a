"""`mailprobe report` over a fleet, the real CLI: from the vantages' ledgers, and from a real
Prometheus holding what the agents exported (backfilled with promtool from the same day,
tests/helpers/fleet_month.py). The two must agree: the same verdicts and remedies, provider
minutes within a scrape interval per outage edge, the same local faults."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.windows import month_of, shift_month
from tests.helpers import fleet_month as fm
from tests.helpers import readme

MONTH = shift_month(month_of(time.time(), "Europe/Berlin"), -1)


def mailprobe(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailprobe.agent.cli", *map(str, args)],
                          capture_output=True, text=True, check=False, timeout=timeout)  # fmt: skip


def one_line(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert needle in lines[0], lines


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The scenario's config and the three vantages' ledgers."""
    tmp = tmp_path_factory.mktemp("fleet-cli")
    ledgers = [fm.write_ledger(p, tmp / p.vantage.name / "ledger.sqlite3") for p in fm.plans(MONTH)]
    config = tmp / "mailprobe.yaml"
    config.write_text(yaml.safe_dump(fm.config_data(MONTH, tmp / "unused")))
    return config, ledgers


def report_json(*args: str | Path) -> dict[str, Any]:
    proc = mailprobe("report", *args, "--month", MONTH, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_the_fleet_report_from_ledgers(day: tuple[Path, list[Path]]) -> None:
    """--ledger once per vantage: the vantages named by their ledgers, the provider's minutes,
    the local faults excluded; the text names them all."""
    config, ledgers = day
    proc = mailprobe("report", "--config", config, *(a for p in ledgers for a in ("--ledger", p)),
                     "--month", MONTH)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Vantage points" in proc.stdout
    assert "Local faults (excluded)" in proc.stdout
    data = report_json("--config", config, *(a for p in ledgers for a in ("--ledger", p)))
    assert [v["name"] for v in data["fleet"]["vantages"]] == ["a", "b", "c"]
    assert data["scopes"][0]["figures"]["down_seconds"] == pytest.approx(2995.25 + 300.0)
    assert data["verdict"] == "breached"


def test_the_quorum_comes_from_the_config_or_the_command_line(
    day: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """fleet.quorum of --config, and --quorum over it."""
    _config, ledgers = day
    three = tmp_path / "three.yaml"
    three.write_text(yaml.safe_dump(fm.config_data(MONTH, tmp_path, quorum=3)))
    args = [a for p in ledgers for a in ("--ledger", p)]
    assert report_json("--config", three, *args)["fleet"]["quorum"] == 3
    assert report_json("--config", three, *args, "--quorum", "1")["fleet"]["quorum"] == 1


def test_fleet_report_mistakes_are_one_line(day: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """Both sources at once, a ledger twice, a quorum of 0, a Prometheus that is not there."""
    config, ledgers = day
    one_line(mailprobe("report", "--config", config, "--ledger", ledgers[0], "--prometheus",
                       "http://127.0.0.1:9"), "not both")  # fmt: skip
    one_line(mailprobe("report", "--config", config, "--month", MONTH, "--ledger", ledgers[0],
                       "--ledger", ledgers[0]), "are both vantage 'a'")  # fmt: skip
    one_line(mailprobe("report", "--config", config, "--ledger", ledgers[0], "--quorum", "0"),
             "--quorum: 0 is not between 1 and 64")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    one_line(mailprobe("report", "--config", config, "--month", MONTH, "--prometheus",
                       f"http://127.0.0.1:{closed}"), "cannot query it")  # fmt: skip


# ----------------------------------------------------------------- from Prometheus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus whose TSDB holds the fleet's day, as the agents would have exported it."""
    tmp = tmp_path_factory.mktemp("fleet-prometheus")
    source = tmp / "day.om"
    source.write_text(fm.openmetrics(fm.plans(MONTH), MONTH))
    done = subprocess.run([tool("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                           str(source), str(tmp / "data")], capture_output=True, text=True,
                          check=False, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'data'}", "--storage.tsdb.retention.time=400d",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_ledgers_and_prometheus_give_the_same_month(
    day: tuple[Path, list[Path]], prometheus: str
) -> None:
    """Same verdicts and remedies; each provider outage and each local fault within one scrape
    interval per edge; the same probe counts and delays."""
    config, ledgers = day
    from_ledgers = report_json("--config", config, *(a for p in ledgers for a in ("--ledger", p)))
    from_prom = report_json("--config", config, "--prometheus", prometheus,
                            "--prometheus-match", f'job="{fm.JOB}"')  # fmt: skip
    assert from_prom["fleet"]["source"] == "prometheus"
    assert [v["name"] for v in from_prom["fleet"]["vantages"]] == ["a", "b", "c"]
    assert from_prom["verdict"] == from_ledgers["verdict"] == "breached"
    assert from_prom["remedy"] == from_ledgers["remedy"]
    edge = fm.SCRAPE
    for mine, theirs in zip(from_prom["scopes"], from_ledgers["scopes"], strict=True):
        assert mine["route"] == theirs["route"]
        assert [(c["clause"], c["verdict"]) for c in mine["clauses"]] == [
            (c["clause"], c["verdict"]) for c in theirs["clauses"]]  # fmt: skip
        outages = sum(o["route"] in (mine["route"], "all") or mine["route"] == "all"
                      for o in from_ledgers["outages"])  # fmt: skip
        for key in ("down_seconds", "maintenance_seconds", "observed_seconds"):
            assert mine["figures"][key] == pytest.approx(
                theirs["figures"][key], abs=2 * edge * max(outages, 1)), (mine["route"], key)
        assert mine["probes_sent"] == theirs["probes_sent"]
        assert mine["probes_failed"] == theirs["probes_failed"]
        assert mine["figures"]["delivery"]["average"] == pytest.approx(
            theirs["figures"]["delivery"]["average"], rel=1e-6)  # fmt: skip
    for name in ("outages",):
        assert len(from_prom[name]) == len(from_ledgers[name])
        for mine, theirs in zip(from_prom[name], from_ledgers[name], strict=True):
            assert (mine["route"], mine["check"]) == (theirs["route"], theirs["check"])
            assert mine["start"] == pytest.approx(theirs["start"], abs=edge)
            assert mine["end"] == pytest.approx(theirs["end"], abs=edge)
    local_prom, local_ledgers = from_prom["fleet"]["local"], from_ledgers["fleet"]["local"]
    assert [(o["vantages"], o["route"], o["check"]) for o in local_prom] == [
        (o["vantages"], o["route"], o["check"]) for o in local_ledgers]  # fmt: skip
    for mine, theirs in zip(local_prom, local_ledgers, strict=True):
        assert mine["start"] == pytest.approx(theirs["start"], abs=edge)
        assert mine["end"] == pytest.approx(theirs["end"], abs=edge)


def readme_command(words: list[str], swap: dict[str, str]) -> list[str]:
    """A README command with its example paths, month and URL swapped for the test's."""
    words = [swap.get(w, w) for w in words]
    if words[0] == "mailprobe":
        return [sys.executable, "-m", "mailprobe.agent.cli", *words[1:]]
    if words[0] == "python3":
        return [sys.executable, *words[1:]]
    return words


def test_the_readme_fleet_commands_run_as_shown(
    day: tuple[Path, list[Path]], prometheus: str, tmp_path: Path
) -> None:
    """"Running several agents": the ledger copy, both reports and `run --vantage`, word for
    word but for the example paths, month and URL."""
    from mailprobe.agent.cli import build_parser

    config, ledgers = day
    shown = readme.commands("Running several agents")
    run_words = next(c for c in shown if c[:2] == ["mailprobe", "run"])
    assert build_parser().parse_args(run_words[1:]).vantage == "berlin-office"
    copy = next(c for c in shown if c[0] == "python3")
    for ledger, copied in zip(ledgers, ("berlin-office", "frankfurt-dc", "branch"), strict=True):
        paths = {"/var/lib/mailprobe/ledger.sqlite3": str(ledger),
                 "berlin-office.sqlite3": f"{copied}.sqlite3"}  # fmt: skip
        done = subprocess.run(readme_command(copy, paths),
                              cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (tmp_path / f"{copied}.sqlite3").is_file()
    swap = {"/etc/mailprobe/mailprobe.yaml": str(config), "2026-10": MONTH,
            "http://127.0.0.1:9090": prometheus, 'job="mailprobe"': f'job="{fm.JOB}"'}  # fmt: skip
    reports = [c for c in shown if c[:2] == ["mailprobe", "report"]]
    assert {"--ledger" in c for c in reports} == {True, False}
    for words in reports:
        done = subprocess.run(readme_command(words, swap), cwd=tmp_path, capture_output=True,
                              text=True, check=False, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Local faults (excluded)" in done.stdout
        assert "berlin-hq" in done.stdout  # the vantages, by their ledgers or their info series


def test_without_a_month_both_ways_report_the_previous_one(
    day: tuple[Path, list[Path]], prometheus: str
) -> None:
    """No --month: the previous month when some vantage has data of it, and stderr says so."""
    config, ledgers = day
    for source in ([a for p in ledgers for a in ("--ledger", str(p))],
                   ["--prometheus", prometheus]):  # fmt: skip
        proc = mailprobe("report", "--config", config, *source, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        assert f"mailprobe: reporting {MONTH} (the previous month)" in proc.stderr
        assert json.loads(proc.stdout)["month"] == MONTH
