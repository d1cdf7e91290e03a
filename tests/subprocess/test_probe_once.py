"""`mailprobe probe-once` in a subprocess against the embedded mail service and against servers that
refuse or hang: `--timeout` bounds the whole run (it once took 30.5 s for `--timeout 3` against a
refused IMAP port), and the Nagios thresholds stay ordered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.probe_once import thresholds
from tests.helpers.configs import config_data, write_config

TIMEOUT = 2.0
# Interpreter start-up and imports under a loaded machine; every endpoint below has a 30 s
# timeout, so a run that is not bounded by --timeout takes 30 s or more and fails clearly.
SLACK = 6.0
HANGS = "30s"



@contextlib.asynccontextmanager
async def server(on_connect: Callable[[asyncio.StreamWriter], None]) -> AsyncIterator[int]:
    """A loopback TCP server that calls `on_connect` and then never says anything."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        on_connect(writer)

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(srv.sockets[0].getsockname()[1])
    finally:
        for writer in writers:
            writer.close()
        srv.close()
        await srv.wait_closed()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(mail: EmbeddedMailService, tmp_path: Path, **route: Any) -> dict[str, Any]:
    """Route a2b (bob -> alice) on the embedded service, every endpoint timeout 30 s."""
    data = config_data(mail, tmp_path / "state", **route)
    for acc in data["accounts"].values():
        for side in ("smtp", "imap"):
            acc[side]["timeout"] = HANGS
    return data


async def probe_once(data: dict[str, Any], tmp_path: Path, *args: str) -> tuple[int, str, float]:
    """Run `mailprobe probe-once --route a2b` on `data`: exit code, stdout, wall seconds."""
    path = tmp_path / "probe-once.yaml"
    write_config(data, path)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailprobe.agent.cli", "probe-once", "--config", str(path),
        "--route", "a2b", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), time.monotonic() - started


def endpoint(data: dict[str, Any], side: str, port: int) -> None:
    for acc in data["accounts"].values():
        acc[side]["port"] = port


async def test_refused_imap_port_ends_within_the_timeout(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """IMAP refused: `failed in imap: connect` by --timeout, not after the 30 s IMAP timeout."""
    data = config(mail, tmp_path)
    endpoint(data, "imap", closed_port())
    code, out, took = await probe_once(data, tmp_path, "--timeout", str(TIMEOUT))
    assert code == 2
    assert out.startswith("MAILPROBE CRITICAL - route a2b failed in imap: connect")
    assert took < TIMEOUT + SLACK


async def test_imap_server_that_never_greets(mail: EmbeddedMailService, tmp_path: Path) -> None:
    """IMAP accepts and stays silent: `failed in imap: timeout` by --timeout."""
    data = config(mail, tmp_path)
    async with server(lambda _: None) as port:
        endpoint(data, "imap", port)
        code, out, took = await probe_once(data, tmp_path, "--timeout", f"{TIMEOUT:g}s")
    assert code == 2
    assert out.startswith("MAILPROBE CRITICAL - route a2b failed in imap: timeout")
    assert took < TIMEOUT + SLACK


async def test_smtp_server_that_never_greets(mail: EmbeddedMailService, tmp_path: Path) -> None:
    """The mailbox is watched, the submission hangs: `failed in smtp: timeout` by --timeout."""
    data = config(mail, tmp_path)
    async with server(lambda _: None) as port:
        endpoint(data, "smtp", port)
        code, out, took = await probe_once(data, tmp_path, "--timeout", str(TIMEOUT), "--json")
    result = json.loads(out)
    assert code == 2
    assert (result["status"], result["phase"], result["reason"]) == ("failed", "smtp_submit", "timeout")
    assert took < TIMEOUT + SLACK


async def test_probe_accepted_but_not_delivered_is_overdue_at_the_timeout(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Submission accepted, delivery held for a minute: overdue (exit 1) by --timeout, with the
    submission's phases, not after overdue_after (1 h)."""
    mail.delay = 60.0
    code, out, took = await probe_once(config(mail, tmp_path), tmp_path, "--timeout", "3", "--json")
    result = json.loads(out)
    assert code == 1
    assert result["status"] == "overdue"
    assert result["accepted_at"] is not None
    assert result["arrived_at"] is None
    assert "smtp_submit" in result["phases"]
    assert took < 3 + SLACK


async def test_delivered_probe_perfdata_thresholds_stay_ordered(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """overdue_after 30 s (under the 60 s average-delay limit): warning 30, critical 30, not
    `;60;30;0` as before; with the default 1 h: 60 and 3600."""
    code, out, _ = await probe_once(config(mail, tmp_path, overdue_after="30s"), tmp_path,
                                    "--timeout", "20")  # fmt: skip
    assert code == 0, out
    match = re.search(r"\| delay=([\d.]+)s;(\d+);(\d+);0 ", out)
    assert match, out
    assert (match.group(2), match.group(3)) == ("30", "30")
    code, out, _ = await probe_once(config(mail, tmp_path), tmp_path)
    assert code == 0, out
    assert re.search(r"\| delay=[\d.]+s;60;3600;0 ", out), out


def test_thresholds_are_the_average_limit_and_overdue_after_in_order() -> None:
    """warning = min(sla.delay_average, overdue_after), critical = overdue_after."""
    from mailprobe.agent.config import parse_config

    def cfg(overdue: str, average: str) -> Any:
        data = {
            "agent": {"secret_env": "MP_TEST_SECRET", "state_dir": "/nonexistent"},
            "accounts": {"a": {"address": "a@example.com",
                               "smtp": {"host": "127.0.0.1", "port": 25},
                               "imap": {"host": "127.0.0.1", "port": 143}}},
            "routes": [{"name": "r", "from": "a", "to": "a", "overdue_after": overdue}],
            "sla": {"delay_average": average, "confirm_within": "10m"},
        }  # fmt: skip
        config = parse_config(data, check_secrets=False)
        return config, config.routes[0]

    assert thresholds(*cfg("1h", "1m")) == (60.0, 3600.0)
    assert thresholds(*cfg("30s", "1m")) == (30.0, 30.0)
    assert thresholds(*cfg("1h", "5m")) == (300.0, 3600.0)


def test_timeout_counts_from_the_process_start() -> None:
    """The --timeout clock starts with the process (interpreter start-up and imports count),
    not when probe-once's own code begins."""
    code = (
        "import time; t = time.monotonic(); from mailprobe.agent.cli import _process_start; "
        "print(t - _process_start())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60).stdout  # fmt: skip
    assert 0 < float(out) < 10
