"""The shipped Prometheus and Alertmanager configs: valid, unit-tested, and routed by tier.

Runs the real promtool, amtool and Alertmanager (Debian: prometheus, prometheus-alertmanager).
Without them the tests skip, except in CI (env CI set), where a missing tool is a failure.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "config" / "prometheus" / "prometheus.yml"
# Shipped: what prometheus.yml loads, and the opt-in UTC-month fallback for older agents.
RULE_FILES = [path for folder in ("rules", "fallback", "alerts")
              for path in sorted((ROOT / "config" / "prometheus" / folder).glob("*.yml"))]  # fmt: skip
FALLBACK_FILES = sorted((ROOT / "config" / "prometheus" / "fallback").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "config" / "alertmanager" / "alertmanager.yml"
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yml"))

SEVERITIES = {"page", "ticket", "info"}
TIERS = {"L1", "L2", "L3"}
RECORD_NAME = re.compile(r"^[a-z][a-z_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
LabelSet = frozenset[tuple[str, str]]
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def tool(*names: str) -> str:
    """Path of the first binary found; skips the test outside CI when none is installed."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    if "CI" in os.environ:
        pytest.fail(f"{' or '.join(names)} is not installed, and CI requires it")
    pytest.skip(f"{' or '.join(names)} is not installed")


def run(*argv: str | Path) -> None:
    """Run a tool; fail the test with its whole output when it exits non-zero."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False,
                          timeout=300)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {done.returncode}\n"
                    f"{done.stdout}\n{done.stderr}")  # fmt: skip


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def shipped_rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in load_yaml(path)["groups"]
            for rule in group["rules"]]  # fmt: skip


def seconds(duration: str) -> float:
    """A PromQL duration such as 364d23h59m59s in seconds."""
    parts = DURATION_PART.findall(duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(int(n) * UNIT_SECONDS[u] for n, u in parts)


# --- the tools' own checks -------------------------------------------------------------


def test_prometheus_config_and_the_rule_files_it_loads_are_valid() -> None:
    run(tool("promtool"), "check", "config", PROMETHEUS_CONFIG)


def test_rule_files_are_valid() -> None:
    assert RULE_FILES, "no rule files found"
    run(tool("promtool"), "check", "rules", *RULE_FILES)


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    """Each promtool test file passes: recording rules give the figures, alerts fire as meant."""
    run(tool("promtool"), "test", "rules", test_file)


def test_alertmanager_config_is_valid() -> None:
    run(tool("amtool"), "check-config", ALERTMANAGER_CONFIG)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"alertname": "MailprobeConnectivityBurnRatePage", "tier": "L3", "severity": "page"},
         "pager"),
        ({"alertname": "MailprobeDelayAverageHigh", "tier": "L2", "severity": "ticket"}, "oncall"),
        ({"alertname": "MailprobeCoverageLow", "tier": "L1", "severity": "ticket"}, "tickets"),
        ({"alertname": "MailprobeAgentDown", "tier": "L2", "severity": "page"}, "oncall"),
        ({"alertname": "MailprobeMaintenanceWindowActive", "tier": "L1", "severity": "info"},
         "blackhole"),
    ],
)  # fmt: skip
def test_alerts_are_routed_by_tier(labels: dict[str, str], receiver: str) -> None:
    """L3 pages, L2 goes to on-call, L1 becomes a ticket, info is never sent."""
    run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}", *(f"{k}={v}" for k, v in labels.items()))  # fmt: skip


# --- what the files promise, checked without the tools -----------------------------------


def test_every_alert_carries_severity_tier_and_the_three_annotations() -> None:
    alerts = [r for r in shipped_rules() if "alert" in r]
    assert alerts
    for rule in alerts:
        labels, notes = rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, rule["alert"]
        assert labels.get("tier") in TIERS, rule["alert"]
        assert {"summary", "description", "action"} <= notes.keys(), rule["alert"]
        # L1 is answered on workdays only; paging for it would promise what the tier does not.
        assert not (labels["severity"] == "page" and labels["tier"] == "L1"), rule["alert"]


def test_recording_rules_are_named_level_metric_operations() -> None:
    names = [r["record"] for r in shipped_rules() if "record" in r]
    assert names
    assert [n for n in names if not RECORD_NAME.match(n)] == []
    assert len(names) == len(set(names)), "a recording rule name is defined twice"


def test_every_recording_rule_and_alert_has_promtool_tests() -> None:
    """Each recording rule is checked against expected samples; each alert firing and quiet."""
    tested_exprs: list[str] = []
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        for group in load_yaml(path)["tests"]:
            tested_exprs += [t["expr"] for t in group.get("promql_expr_test", [])
                             if t.get("exp_samples")]  # fmt: skip
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    rules = shipped_rules()
    records = {r["record"] for r in rules if "record" in r}
    alerts = {r["alert"] for r in rules if "alert" in r}
    untested = {name for name in records
                if not any(re.search(rf"\b{re.escape(name)}\b", e) for e in tested_exprs)}  # fmt: skip
    assert untested == set(), "recording rules without expected samples"
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"


def test_stated_retention_covers_the_longest_rule_window() -> None:
    """The retention flag shown in prometheus.yml keeps enough samples for every rule."""
    stated = re.findall(r"--storage\.tsdb\.retention\.time=(\w+)", PROMETHEUS_CONFIG.read_text())
    assert stated, "prometheus.yml must show the retention flag"
    longest = 0.0
    for rule in shipped_rules():
        subqueries = [seconds(r) for r in re.findall(r"\[(\w+):\w+\]", rule["expr"])]
        ranges = [seconds(r) for r in re.findall(r"\[(\w+)\]", rule["expr"])]
        # A subquery's range plus the range its inner expression reads at the earliest step.
        longest = max(longest, max(subqueries, default=0) + max(ranges, default=0))
    assert longest > 365 * 86400, "the rolling-year rule is missing"
    assert all(seconds(value) > longest for value in stated)


def test_the_utc_month_fallback_is_opt_in_and_read_by_the_month_rules() -> None:
    """prometheus.yml loads rules/ and alerts/ only; the month rules take each series the
    fallback records, so adding its file to rule_files is all an older agent needs."""
    config = load_yaml(PROMETHEUS_CONFIG)
    loaded = {p for pattern in config["rule_files"] for p in PROMETHEUS_CONFIG.parent.glob(pattern)}
    assert FALLBACK_FILES
    assert loaded.isdisjoint(FALLBACK_FILES)
    fallback = {r["record"] for path in FALLBACK_FILES for group in load_yaml(path)["groups"]
                for r in group["rules"]}  # fmt: skip
    month = [r for group in load_yaml(ROOT / "config/prometheus/rules/mailprobe_month.yml")["groups"]
             for r in group["rules"]]  # fmt: skip

    def read_by(name: str) -> list[str]:
        taken = re.compile(rf"\bor(?: on \([^)]*\))? {re.escape(name)}\b")
        return [r["record"] for r in month if taken.search(r["expr"])]

    readers = {name: read_by(name) for name in fallback}
    assert all(readers.values()), readers


# --- Alertmanager's inhibit rules, on a real Alertmanager ---------------------------------


class Alertmanager:
    """A running Alertmanager on an ephemeral loopback port, fed alerts over its v2 API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, *alerts: dict[str, str]) -> None:
        body = json.dumps([{"labels": a} for a in alerts]).encode()
        url, headers = f"{self.url}/api/v2/alerts", {"Content-Type": "application/json"}
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback URL)
            assert response.status == 200

    def inhibited(self) -> dict[LabelSet, bool]:
        """Label set -> whether Alertmanager holds the alert back by an inhibit rule."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as response:  # noqa: S310
            alerts = json.load(response)
        return {frozenset(a["labels"].items()): bool(a["status"]["inhibitedBy"]) for a in alerts}


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll until the condition holds: Alertmanager applies new source alerts asynchronously."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    binary = tool("prometheus-alertmanager", "alertmanager")
    storage = tmp_path_factory.mktemp("alertmanager")
    process = subprocess.Popen(
        [binary, f"--config.file={ALERTMANAGER_CONFIG}", f"--storage.path={storage}",
         "--web.listen-address=127.0.0.1:0", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def drain(stream: Any) -> None:  # keeps the pipe from filling up for the whole module
        for line in stream:
            log.append(line)
            lines.put(line)
        lines.put("")

    drainer = threading.Thread(target=drain, args=(process.stderr,), daemon=True)
    drainer.start()
    try:
        while True:
            line = lines.get(timeout=30)
            if not line:
                pytest.fail("Alertmanager exited:\n" + "".join(log))
            found = re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', line)
            if found:
                break
        yield Alertmanager(f"http://{found.group(1)}")
    finally:
        process.terminate()
        process.wait(timeout=10)
        drainer.join(timeout=10)
        process.stderr.close()


def alert(name: str, job: str, **labels: str) -> dict[str, str]:
    return {"alertname": name, "job": job, "instance": "127.0.0.1:9478", **labels}


def test_inhibit_rules_silence_what_a_broader_alert_already_says(
    alertmanager: Alertmanager,
) -> None:
    """Each inhibit rule holds back its target on matching labels, and nothing else."""
    # Each scenario in its own job, so one scenario's source cannot inhibit another's target.
    sources = [
        # The agent is down (absent(): no instance label), so its route figures are meaningless.
        {"alertname": "MailprobeAgentDown", "job": "agent", "severity": "page", "tier": "L2"},
        alert("MailprobeConnectivityBurnRatePage", "burn", route="r1", tier="L3"),
        alert("MailprobeDisconnectionBudgetSpent", "budget", route="r1", clause="disconnection",
              tier="L3"),
        alert("MailprobeTLSCertificateExpiryImminent", "tls", account="alice", protocol="imap",
              tier="L2"),
        alert("MailprobeMaintenanceWindowActive", "maint", window="sunday", severity="info",
              tier="L1"),
        alert("MailprobeNoRecentProbe", "stale", route="r1", tier="L2"),
        alert("MailprobeLocalFaultActive", "local", route="r1", check="send", severity="info",
              tier="L1"),
    ]  # fmt: skip
    held = [
        alert("MailprobeConnectivityBurnRateTicket", "agent", route="r1", tier="L2"),
        alert("MailprobeConnectivityBurnRateTicket", "burn", route="r1", tier="L2"),
        alert("MailprobeDisconnectionBudgetHalfSpent", "budget", route="r1",
              clause="disconnection", tier="L2"),
        alert("MailprobeTLSCertificateExpiringSoon", "tls", account="alice", protocol="imap",
              tier="L1"),
        alert("MailprobeDisconnectionBudgetSpent", "maint", route="r1", clause="disconnection",
              tier="L3"),
        alert("MailprobeCoverageLow", "stale", route="r1", check="send", tier="L1"),
        alert("MailprobeConnectivityBurnRatePage", "local", route="r1", tier="L3"),
    ]  # fmt: skip
    passed = [
        # Not about a route: the agent alert does not hide it.
        alert("MailprobeTLSCertificateExpiringSoon", "agent", account="bob", protocol="smtp",
              tier="L1"),
        # Another route's burn, another clause's budget, another account's certificate.
        alert("MailprobeDelayAverageHigh", "burn", route="r2", delay="send", tier="L2"),
        alert("MailprobeFailureBudgetHalfSpent", "budget", route="all", clause="failure",
              tier="L2"),
        alert("MailprobeTLSCertificateExpiringSoon", "tls", account="bob", protocol="imap",
              tier="L1"),
        # Maintenance holds back provider alerts, not routine tickets.
        alert("MailprobeCoverageLow", "maint", route="r1", check="send", tier="L1"),
        alert("MailprobeCoverageLow", "stale", route="r2", check="send", tier="L1"),
        # A local fault holds back that vantage's burn alerts only: not another vantage's, not
        # a provider outage the quorum saw.
        {**alert("MailprobeConnectivityBurnRatePage", "local", route="r1", tier="L3"),
         "instance": "127.0.0.2:9478"},
        alert("MailprobeProviderOutage", "local", route="r1", tier="L3"),
    ]  # fmt: skip
    alertmanager.post(*sources, *held, *passed)
    wait_for(lambda: all(alertmanager.inhibited().get(frozenset(a.items())) for a in held),
             "every target alert to be inhibited")  # fmt: skip
    state = alertmanager.inhibited()
    leaked = [a for a in (*sources, *passed) if state[frozenset(a.items())]]
    assert leaked == []
