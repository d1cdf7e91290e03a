"""`mailprobe demo`: starts, round trips show on /metrics, an outage shows down then up, Ctrl-C is clean."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from mailprobe.agent.demo.command import Outage, parse_outage


def _metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _wait(url: str, predicate, what: str, timeout: float) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(url, timeout=2).read().decode()  # noqa: S310 - loopback
        if predicate(text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_demo_end_to_end_with_outage_and_clean_ctrl_c() -> None:
    """Round trips, an SMTP outage seen as down and then up on /metrics, clean SIGINT exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailprobe.agent.cli", "demo", "--interval", "500ms", "--listen",
         "127.0.0.1:0", "--outage", "smtp:3s:3s", "--no-live", "--duration", "60s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"metrics at (http://[\d.:]+/metrics)", first)
        assert match, first
        url = match.group(1)
        route = {"route": "alice-to-bob"}
        _wait(url, lambda t: (_metric(t, "mailprobe_probes_received_total", **route) or 0) >= 2,
              "round trips", 10)  # fmt: skip
        _wait(url, lambda t: _metric(t, "mailprobe_up", protocol="smtp", **route) == 0,
              "smtp down during the outage", 10)  # fmt: skip
        failed = _metric(_wait(url, lambda t: True, "scrape", 5), "mailprobe_probes_failed_total",
                         phase="smtp_connect", reason="connect", **route)  # fmt: skip
        assert failed is not None
        assert failed >= 1
        _wait(url, lambda t: _metric(t, "mailprobe_up", protocol="smtp", **route) == 1,
              "smtp up again", 15)  # fmt: skip
        port = int(url.split(":")[2].split("/")[0])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
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
