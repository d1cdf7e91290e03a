"""Clean failure at start-up (issue 11 item 8): the real `mailprobe` in a subprocess, for run,
demo, probe-once, report and check-config alike: exit 2, one line naming the problem on stderr,
no traceback."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

INFO_LOG = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO mailprobe\.")
COMMANDS = {
    "run": ["run", "--config"],
    "probe-once": ["probe-once", "--route", "internal", "--timeout", "5", "--config"],
    "report": ["report", "--config"],
    "check-config": ["check-config"],
}


def mailprobe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`python -m mailprobe.agent.cli`), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", *args],
        capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip


def one_line_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, no traceback, and exactly one line on stderr that contains every needle (besides
    the agent's own info log, which `run` writes from its start)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not INFO_LOG.match(line)]
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def valid(tmp_path: Path) -> dict[str, object]:
    """A config that passes check-config; its servers are closed loopback ports."""
    (tmp_path / "secret").write_text("startup-secret\n")
    (tmp_path / "pw").write_text("pw\n")
    closed = free_port()
    endpoint = {"host": "127.0.0.1", "port": closed, "security": "plain",
                "username": "probe@example.com", "password_file": str(tmp_path / "pw"),
                "timeout": "30s"}  # fmt: skip
    return {
        "agent": {"listen": f"127.0.0.1:{free_port()}", "state_dir": str(tmp_path / "state"),
                  "secret_file": str(tmp_path / "secret")},
        "accounts": {"probe": {"address": "probe@example.com", "smtp": dict(endpoint),
                               "imap": dict(endpoint)}},
        "routes": [{"name": "internal", "from": "probe", "to": "probe", "interval": "1m"}],
    }


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on for the test's duration."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def write(tmp_path: Path, data: object, name: str = "mailprobe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("not-utf8", "not UTF-8 text (byte 0xff on line"),
        ("missing", "cannot read: No such file or directory"),
        ("directory", "cannot read: Is a directory"),
        ("absurd-duration", "routes[0].interval: duration '1000"),
        ("port-true", "port: Input should be a valid integer (got true, a YAML boolean"),
        ("deep", "nested more than 32 levels deep"),
    ],
)
def test_unusable_config_is_one_line_for_every_command(
    valid: dict[str, object], tmp_path: Path, command: str, case: str, needle: str
) -> None:
    """The same bad file reads the same in run, probe-once, report and check-config."""
    path = tmp_path / "mailprobe.yaml"
    text = yaml.safe_dump(valid)
    if case == "not-utf8":
        path.write_bytes(text.encode() + b"# \xff\n")
    elif case == "directory":
        path.mkdir()
    elif case == "absurd-duration":
        path.write_text(text.replace("interval: 1m", "interval: 1" + "0" * 400 + "s"))
    elif case == "port-true":
        path.write_text(text.replace(f"port: {valid['accounts']['probe']['smtp']['port']}",  # type: ignore[index]
                                     "port: true", 1))  # fmt: skip
    elif case == "deep":
        path.write_text(text + "extra: " + "[" * 900 + "]" * 900 + "\n")
    line = one_line_failure(mailprobe(*COMMANDS[command], str(path)), needle)
    assert line.startswith(f"mailprobe: {path}: ")


def test_run_with_its_port_taken(valid: dict[str, object], tmp_path: Path, taken_port: int) -> None:
    """`mailprobe run` with agent.listen in use names the key, the address and why."""
    valid["agent"]["listen"] = f"127.0.0.1:{taken_port}"  # type: ignore[index]
    one_line_failure(
        mailprobe("run", "--config", str(write(tmp_path, valid))),
        f"mailprobe: cannot start: agent.listen 127.0.0.1:{taken_port}: cannot listen: "
        "address already in use",
    )


def test_run_with_a_state_dir_that_cannot_be_made(valid: dict[str, object], tmp_path: Path) -> None:
    """A state_dir below a plain file: the path and the reason, not an sqlite traceback."""
    (tmp_path / "file").write_text("")
    valid["agent"]["state_dir"] = str(tmp_path / "file" / "state")  # type: ignore[index]
    one_line_failure(
        mailprobe("run", "--config", str(write(tmp_path, valid))),
        f"agent.state_dir: {tmp_path / 'file' / 'state'}: Not a directory",
    )


def test_demo_with_its_port_taken(taken_port: int) -> None:
    """The demo's --listen in use: one line (it used to end in an ExceptionGroup traceback)."""
    one_line_failure(
        mailprobe("demo", "--listen", f"127.0.0.1:{taken_port}", "--no-live", "--duration", "5s"),
        f"mailprobe demo: --listen 127.0.0.1:{taken_port}: cannot listen: address already in use",
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--interval", "0s"], "--interval: '0s' is too short (at least 100ms)"),
        (["--interval", "1" + "0" * 400 + "s"], "--interval: duration"),
        (["--fail-rate", "-0.1"], "--fail-rate: -0.1 is not between 0 and 1"),
        (["--fail-rate", "nan"], "--fail-rate: nan is not between 0 and 1"),
        (["--delay-fraction", "2"], "--delay-fraction: 2 is not between 0 and 1"),
        (["--outage", "sideways"], "--outage 'sideways': use [smtp|imap:]AFTER:FOR"),
        (["--outage", "imap:10s"], "--outage 'imap:10s': use [smtp|imap:]AFTER:FOR"),
        (["--outage", "imap:1s:0s"], "the outage must last longer than 0s"),
        (["--duration", "0s"], "--duration: '0s' is too short"),
        (["--delay", "5x"], "--delay: invalid duration '5x'"),
        (["--listen", "nowhere"], "--listen: 'nowhere' is not HOST:PORT"),
        (["--fail-rate", "lots"], "argument --fail-rate: invalid float value: 'lots'"),
    ],
)
def test_bad_demo_arguments(args: list[str], needle: str) -> None:
    """Bad demo options are refused before anything starts."""
    one_line_failure(mailprobe("demo", "--no-live", *args), needle)


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "3x", "1e400"])
def test_bad_probe_once_timeout(valid: dict[str, object], tmp_path: Path, value: str) -> None:
    """--timeout is seconds (or a duration), more than 0 and at most a year."""
    path = write(tmp_path, valid)
    one_line_failure(
        mailprobe("probe-once", "--config", str(path), "--route", "internal", "--timeout", value),
        "mailprobe probe-once: argument --timeout:",
    )


def test_probe_once_unknown_route(valid: dict[str, object], tmp_path: Path) -> None:
    """A route that is not configured is named with the ones that are."""
    one_line_failure(
        mailprobe("probe-once", "--config", str(write(tmp_path, valid)), "--route", "nope"),
        "mailprobe: --route 'nope': no such route (have: internal)",
    )


def test_every_problem_of_a_config_is_its_own_line(valid: dict[str, object], tmp_path: Path) -> None:
    """Several mistakes at once: one line each, every line naming the file and a key."""
    valid["agent"]["max_concurrency"] = True  # type: ignore[index]
    valid["routes"][0]["interval"] = "0s"  # type: ignore[index]
    path = write(tmp_path, valid)
    proc = mailprobe("check-config", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"mailprobe: {path}: agent.max_concurrency: Input should be a valid integer (got true, "
        "a YAML boolean: yes/no/on/off/true/false)",
        f"mailprobe: {path}: routes[0].interval: must be at least 100ms",
    ]
