"""`mailprobe demo`: starts, round trips show on /metrics, an outage shows down then up, Ctrl-C is
clean; --print-config prints and exits; --state-dir keeps what the report needs."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

import pytest
import yaml

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.demo.command import Outage, parse_outage
from mailprobe.agent.ledger import Ledger


def _metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _wait(url: str, predicate, what: str, timeout: float, log: Path | None = None) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(url, timeout=2).read().decode()  # noqa: S310 - loopback
        if predicate(text):
            return text
        time.sleep(0.05)
    seen = "\n".join(line for line in text.splitlines() if 'route="alice-to-bob"' in line)
    tail = "".join(log.read_text().splitlines(keepends=True)[-60:]) if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{seen}\n--- demo log ---\n{tail}")


def _drain(stream: IO[str], into: list[str]) -> threading.Thread:
    """Read a child's pipe into a list as it comes, so the child never blocks on a full pipe
    and a failure can show what it logged."""

    def read() -> None:
        for line in stream:
            into.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_demo_end_to_end_with_outage_and_clean_ctrl_c(tmp_path: Path) -> None:
    """Round trips, an SMTP outage seen as down and then up on /metrics, clean SIGINT exit."""
    state = tmp_path / "demo"
    log = state / "mailprobe.log"  # shown when a wait times out
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailprobe.agent.cli", "demo", "--interval", "500ms", "--listen",
         "127.0.0.1:0", "--outage", "smtp:3s:3s", "--no-live", "--duration", "60s",
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err_lines: list[str] = []
    out_lines: list[str] = []
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()
        match = re.search(r"metrics at (http://[\d.:]+/metrics)", first)
        assert match, first
        readers = [_drain(proc.stderr, err_lines), _drain(proc.stdout, out_lines)]
        url = match.group(1)
        route = {"route": "alice-to-bob"}
        _wait(url, lambda t: (_metric(t, "mailprobe_probes_received_total", **route) or 0) >= 2,
              "round trips", 10, log)  # fmt: skip
        _wait(url, lambda t: _metric(t, "mailprobe_up", protocol="smtp", **route) == 0,
              "smtp down during the outage", 10, log)  # fmt: skip
        # The outage can begin inside a session (another phase fails first): wait for the
        # refused connection of a later probe, not only for the first failure.
        refused = {"phase": "smtp_connect", "reason": "connect", **route}
        _wait(url, lambda t: (_metric(t, "mailprobe_probes_failed_total", **refused) or 0) >= 1,
              "a refused connection counted", 10, log)  # fmt: skip
        _wait(url, lambda t: _metric(t, "mailprobe_up", protocol="smtp", **route) == 1,
              "smtp up again", 15, log)  # fmt: skip
        port = int(url.split(":")[2].split("/")[0])
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        for reader in readers:
            reader.join(5)
        out, err = "".join(out_lines), "".join(err_lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped cleanly" in out
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_outage_option_parses() -> None:
    """--outage takes [side:]AFTER:FOR with units; the side defaults to IMAP."""
    assert parse_outage("smtp:30s:20s") == Outage("smtp", 30.0, 20.0)
    assert parse_outage("1m:5s") == Outage("imap", 60.0, 5.0)
    with pytest.raises(ValueError, match="--outage"):
        parse_outage("sideways")


def demo(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`mailprobe demo --no-live --listen 127.0.0.1:0 ARGS` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "demo", "--no-live", "--listen",
         "127.0.0.1:0", *args],
        capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip


def test_print_config_prints_only_the_config_and_exits() -> None:
    """--print-config: exit 0, stdout is exactly a loadable config (no status lines), no demo."""
    proc = demo("--print-config", "--interval", "2s", timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert set(data) == {"agent", "accounts", "routes"}
    assert {r["interval"] for r in data["routes"]} == {"2s"}
    assert "mailprobe demo:" not in proc.stdout
    assert not Path(data["agent"]["state_dir"]).exists()  # temporary, and removed


def test_state_dir_keeps_config_ledger_and_log_for_the_report(tmp_path: Path) -> None:
    """--state-dir DIR: everything stays in DIR, the demo says how to report on it, the report
    works on the month just watched, and a second demo continues the same ledger."""
    state = tmp_path / "demo"
    proc = demo("--state-dir", str(state), "--interval", "500ms", "--duration", "3s")
    assert proc.returncode == 0, proc.stderr
    config = state / "mailprobe.yaml"
    assert {"mailprobe.yaml", "ledger.sqlite3", "mailprobe.log", "secret", "ca.pem"} <= {
        p.name for p in state.iterdir()
    }
    hint = f"mailprobe report --config {config}"
    assert proc.stdout.splitlines()[-1].endswith(hint)
    report = subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", *hint.split()[1:], "--format", "json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert re.match(r"mailprobe: reporting \d{4}-\d\d \(", report.stderr)
    assert figures["scopes"][0]["probes_sent"] > 0
    secret = (state / "secret").read_text()
    again = demo("--state-dir", str(state), "--interval", "500ms", "--duration", "2s")
    assert again.returncode == 0, again.stderr
    assert (state / "secret").read_text() == secret  # probes of the first run stay verifiable
    with Ledger.open_readonly(state / LEDGER_FILE) as ledger:
        assert len(ledger.runs()) == 2


def test_temporary_directory_is_named_and_removed_unless_kept() -> None:
    """Without --state-dir the demo says where its files are; they go on exit unless --keep."""
    gone = demo("--duration", "1s")
    assert gone.returncode == 0, gone.stderr
    where = re.search(r"config, ledger and log in (\S+) \(a temporary directory", gone.stdout)
    assert where, gone.stdout
    assert not Path(where.group(1).rstrip(";")).exists()
    kept = demo("--duration", "1s", "--keep")
    assert kept.returncode == 0, kept.stderr
    path = re.search(r"config, ledger and log in (\S+);", kept.stdout)
    assert path, kept.stdout
    try:
        assert (Path(path.group(1)) / "mailprobe.yaml").is_file()
        assert f"mailprobe report --config {path.group(1)}/mailprobe.yaml" in kept.stdout
    finally:
        shutil.rmtree(path.group(1), ignore_errors=True)


def test_state_dir_with_a_foreign_config_is_refused(tmp_path: Path) -> None:
    """A directory holding a mailprobe.yaml the demo did not write is left alone."""
    (tmp_path / "mailprobe.yaml").write_text("agent: {}\n")
    proc = demo("--state-dir", str(tmp_path), "--duration", "1s")
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("give the demo a directory of its own")
    assert (tmp_path / "mailprobe.yaml").read_text() == "agent: {}\n"
    assert "Traceback" not in proc.stderr
