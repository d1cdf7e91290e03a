"""Running the servers' command-line tools and waiting for conditions with a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
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


def _stat_fields(pid: str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs (zombies count as gone)."""
    fields = _stat_fields(str(pid))
    return fields is not None and fields[0] != "Z"


def children(ppid: int) -> set[int]:
    """Pids of the running (not zombie) children of ``ppid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and fields[0] != "Z" and fields[1] == str(ppid):
                found.add(int(entry))
    return found


def group_alive(pgid: int) -> bool:
    """Whether any process of the group runs (zombies count as gone).

    Orphans are reaped by pid 1 whenever it gets round to it, so kill(-pgid, 0), which
    counts zombies, can report a stopped server as alive for a long time.
    """
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and fields[0] != "Z" and fields[2] == str(pgid):
                return True
    return False


def signal_group(pgid: int, signum: int) -> None:
    """Send a signal to every process of a process group, if any is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def stop_group(
    pgid: int,
    first: Callable[[], None],
    grace: float,
    deadline: float,
    child: subprocess.Popen[bytes] | None = None,
) -> None:
    """Call `first` (e.g. SIGTERM), wait up to `grace` for the group to go, then SIGKILL it.

    `child` is the group leader when it is our own child: it is reaped while waiting.
    """

    def gone() -> bool:
        if child is not None:
            child.poll()
        return not group_alive(pgid)

    first()
    try:
        wait_until(gone, min(time.monotonic() + grace, deadline), f"process group {pgid} to exit")
    except MailStackError:
        signal_group(pgid, signal.SIGKILL)
        wait_until(gone, deadline, f"process group {pgid} to exit after SIGKILL")
    if child is not None:
        # It may have turned zombie between poll() and the scan above: reap it now.
        child.wait(max(0.0, deadline - time.monotonic()))


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
    tls: ssl.SSLContext | None = None,
) -> None:
    """Poll until host:port accepts and greets with a line starting with `prefix`.

    With `tls`, the greeting is read over implicit TLS verified with that context.
    """
    last = b""

    def greets() -> bool:
        nonlocal last
        _check_running(process)
        try:
            with socket.create_connection((host, port), timeout=1) as raw:
                raw.settimeout(max(0.1, deadline - time.monotonic()))
                if tls is None:
                    last = raw.recv(512)
                else:
                    with tls.wrap_socket(raw, server_hostname=host) as sock:
                        last = sock.recv(512)
        except OSError:  # includes ssl.SSLError
            return False
        return last.startswith(prefix)

    try:
        wait_until(greets, deadline, f"{host}:{port} to greet with {prefix!r}")
    except MailStackError as exc:
        raise MailStackError(f"{exc} (last greeting {last!r})") from exc
