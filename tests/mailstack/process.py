"""Running the servers' command-line tools and waiting for conditions with a deadline."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

# Short enough that start-up is not padded noticeably, long enough not to spin a core.
POLL_INTERVAL = 0.01


class MailStackError(RuntimeError):
    """The test mail stack could not do what was asked."""


def run(*argv: str, stdin: bytes | None = None) -> str:
    """Run a command, return its stdout; raise MailStackError with its output on failure."""
    # Files, not pipes: daemons started by the command can hold inherited pipes open for
    # seconds (`postfix start` took 2 s instead of 0.3 s waiting for EOF on a pipe).
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        result = subprocess.run(list(argv), input=stdin, stdout=out, stderr=err, check=False)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if result.returncode != 0:
        output = (stderr or stdout).strip()
        raise MailStackError(f"{' '.join(argv)} exited with {result.returncode}: {output}")
    return stdout


def wait_until(condition: Callable[[], bool], deadline: float, what: str) -> None:
    """Call `condition` every POLL_INTERVAL until it is true; raise once `deadline` passed."""
    while not condition():
        if time.monotonic() >= deadline:
            raise MailStackError(f"timed out waiting for {what}")
        time.sleep(POLL_INTERVAL)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (zombies of our own children count as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until_gone(pid: int, deadline: float) -> None:
    """Wait for a process that is not our child to exit."""
    wait_until(lambda: not pid_alive(pid), deadline, f"pid {pid} to exit")


def signal_group(pgid: int, signum: int) -> None:
    """Send a signal to every process of a process group, if any is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def wait_until_group_gone(pgid: int, deadline: float) -> None:
    """Wait until no process of the group is left."""

    def gone() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, deadline, f"process group {pgid} to exit")


def _check_running(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is not None:
        raise MailStackError(f"{process.args!r} exited with {process.returncode} while starting")


def wait_until_connects(
    host: str, port: int, deadline: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until a TCP connect to host:port succeeds (and `process` is still running)."""

    def connects() -> bool:
        _check_running(process)
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_until(connects, deadline, f"{host}:{port} to accept connections")


def read_banner(
    host: str,
    port: int,
    prefix: bytes,
    deadline: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll until host:port accepts and greets with a line starting with `prefix`."""
    last = b""

    def greets() -> bool:
        nonlocal last
        _check_running(process)
        try:
            with socket.create_connection((host, port), timeout=1) as sock:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                last = sock.recv(512)
        except OSError:
            return False
        return last.startswith(prefix)

    try:
        wait_until(greets, deadline, f"{host}:{port} to greet with {prefix!r}")
    except MailStackError as exc:
        raise MailStackError(f"{exc} (last greeting {last!r})") from exc
