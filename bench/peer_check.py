"""The peer, check_email_delivery (Debian monitoring-plugins-contrib): its command and timed runs.

It runs in --plugin mode: check_smtp_send submits a message whose Subject carries a fresh
%TOKEN1%, then check_imap_receive polls the mailbox for that token, so it can never match an
older message. With --hires its token starts with its own start time (format `U`), and the delay
it reports is `elapsed` (start -> found, deleted and logged out): in --plugin mode its `delay`
figure is always 0.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

PLUGINS = Path("/usr/lib/nagios/plugins")
CHECK_EMAIL_DELIVERY = PLUGINS / "check_email_delivery"
INSTALL_HINT = "run `bash bench/install.sh` as root"
# Its own start time, then 8 random hex digits so two runs in the same instant differ.
TOKEN_FORMAT = "U-hhhhhhhh"  # noqa: S105 - a format for a message marker, not a secret
_TOKEN = r"(\d+(?:\.\d+)?-[0-9a-f]{8})"  # noqa: S105 - a pattern, not a secret
_ELAPSED = re.compile(r"elapsed=([0-9.]+)s")


def token_pattern(marker: str) -> re.Pattern[bytes]:
    """Matches the Subject of a peer message sent with `marker`; group 1 is the token."""
    return re.compile(rb"Subject: " + re.escape(marker).encode() + rb" " + _TOKEN.encode())


def token_sent_at(token: str) -> float:
    """The peer's start time (Unix seconds) carried at the front of its token."""
    return float(token.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """Where and how the peer sends and receives; `marker` starts its Subject."""

    host: str
    smtp_port: int  # submission with STARTTLS (check_smtp_send --tls)
    imaps_port: int  # implicit TLS (check_imap_receive --tls)
    ca_file: Path
    sender: str
    sender_password: str
    recipient: str
    recipient_password: str
    marker: str
    extra_header: str  # e.g. "X-Mailprobe-Hold: yes"
    wait: int = 1  # whole seconds between sending and the first IMAP check
    interval: int = 1  # whole seconds between IMAP checks
    retries: int = 30  # IMAP checks before it gives up


def peer_command(s: PeerSettings) -> list[str]:
    """check_email_delivery in --plugin mode with a token, both plugins over TLS, --hires."""
    q = shlex.quote
    smtp = " ".join([
        q(str(PLUGINS / "check_smtp_send")), "-H", s.host, "-p", str(s.smtp_port), "--tls",
        "-U", q(s.sender), "-P", q(s.sender_password),
        "--mailto", q(s.recipient), "--mailfrom", q(s.sender),
        "--header", q(f"Subject: {s.marker} %TOKEN1%"), "--header", q(s.extra_header),
        "--body", q("delay benchmark"), "--hires",
    ])  # fmt: skip
    imap = " ".join([
        q(str(PLUGINS / "check_imap_receive")), "-H", s.host, "-p", str(s.imaps_port), "--tls",
        "--ssl-ca-file", q(str(s.ca_file)), "-U", q(s.recipient), "-P", q(s.recipient_password),
        "-s", "SUBJECT", "-s", "%TOKEN1%",
        "--imap-check-interval", str(s.interval), "--imap-retries", str(s.retries), "--hires",
    ])  # fmt: skip
    return [str(CHECK_EMAIL_DELIVERY), "--hires", "--wait", str(s.wait), "-T", TOKEN_FORMAT,
            "-p", smtp, "-p", imap]  # fmt: skip


@dataclass(frozen=True, slots=True)
class PeerRun:
    """One run of the peer as it reported it."""

    exit_code: int
    output: str
    elapsed: float | None  # its reported delay (perfdata elapsed=), seconds
    cpu_seconds: float | None  # user + system time of it and its plugin processes


class PeerRunner:
    """Runs the peer as child processes it can account for (CPU via wait4) and kill at exit."""

    def __init__(self, env: dict[str, str], timeout: float) -> None:
        self._env = env
        self._timeout = timeout
        self._live: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def run(self, argv: list[str]) -> PeerRun:
        """Run once (blocking, call it in a thread); kill it after the timeout."""
        # Own process group, so its plugin processes can be ended with it.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=self._env, start_new_session=True)  # fmt: skip
        with self._lock:
            self._live[proc.pid] = proc
        timer = threading.Timer(self._timeout, self._kill, (proc.pid,))
        timer.start()
        cpu: float | None = None
        try:
            assert proc.stdout is not None
            output = proc.stdout.read().decode(errors="replace")
            # wait4, not Popen.wait: it also returns the child's resource usage, which
            # includes the plugin processes it waited for.
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
        finally:
            timer.cancel()
            with self._lock:
                self._live.pop(proc.pid, None)
            if proc.stdout is not None:
                proc.stdout.close()
        first = output.splitlines()[0] if output else ""
        match = _ELAPSED.search(first)
        elapsed = float(match.group(1)) if match and first.startswith("EMAIL DELIVERY OK") else None
        return PeerRun(proc.returncode, output.strip(), elapsed, cpu)

    def _kill(self, pid: int) -> None:
        with self._lock:
            if pid in self._live:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

    def kill_all(self) -> None:
        """Kill every run still going (the process groups this runner started)."""
        with self._lock:
            pids = list(self._live)
        for pid in pids:
            self._kill(pid)


def versions() -> dict[str, str]:
    """check_email_delivery's and check_imap_receive's own version strings."""
    found = {}
    for name in ("check_email_delivery", "check_imap_receive", "check_smtp_send"):
        try:
            out = subprocess.run([str(PLUGINS / name), "--version"], capture_output=True,
                                 text=True, timeout=10, check=False).stdout.strip()  # fmt: skip
        except OSError:
            out = "missing"
        found[name] = out
    return found


def missing() -> str | None:
    """Why the peer cannot run here, or None."""
    if not CHECK_EMAIL_DELIVERY.exists():
        return f"{CHECK_EMAIL_DELIVERY} is missing: {INSTALL_HINT}"
    probe = subprocess.run(
        ["perl", "-MMail::IMAPClient", "-MNet::SMTP::TLS", "-MIO::Socket::SSL", "-e", "1"],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"the peer's Perl libraries are missing: {INSTALL_HINT}"
    return None
