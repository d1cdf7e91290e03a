"""The test installers beside a running system Postfix and Dovecot (issue 11 item 9): installing a
missing package leaves them running, with the same pid, and their init scripts as enabled as
they were. (tests/mailstack/install.sh used to stop both and disable their init scripts.)

The "system" daemons are the default instances the old installer went for: a Postfix whose pid
file is in Debian's queue directory (what `postfix status` finds) and a Dovecot whose base_dir is
/run/dovecot. When they already run here they are used and left alone; otherwise the test starts
them itself, on free loopback ports from configs of its own, and stops exactly those pids. The
installer runs in a private mount namespace whose /etc/rc?.d are copies with Postfix and Dovecot
enabled, so a disable would show there and touch nothing outside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mailstack.process import pid_alive, read_banner, signal_group, stop_group, wait_until

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "tests" / "mailstack" / "install.sh"
POLICY = Path("/usr/sbin/policy-rc.d")
RC_DIRS = [Path(f"/etc/rc{level}.d") for level in (*"0123456", "S")]
SERVICES = ("postfix", "dovecot")
# Small, no daemon, no maintainer scripts worth the name: something for the installer to do.
HARMLESS = "hello"
DEFAULT_PACKAGES = "postfix dovecot-core dovecot-imapd dovecot-lmtpd dovecot-sieve openssl inotify-tools"
_HOST = "127.0.0.1"
_DEADLINE = 15.0


@dataclass(frozen=True)
class Daemon:
    """A running system daemon: its master's pid and a port it greets on."""

    name: str
    pid: int
    port: int | None  # None: it was already running, listening wherever it was told to


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _need(*binaries: str) -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "the installer test needs root"
    for binary in binaries:
        if shutil.which(binary) is None:
            problem = problem or f"{binary} is missing: run `bash tests/mailstack/install.sh`"
    if problem is not None:
        if os.environ.get("MAILPROBE_REQUIRE_MAILSTACK"):
            pytest.fail(problem)
        pytest.skip(problem)


def _postconf(name: str) -> str:
    return subprocess.run(["postconf", "-h", name], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


@contextlib.contextmanager
def system_postfix(tmp: Path) -> Iterator[Daemon]:
    """The default Postfix instance, running: the one found, or one started here."""
    queue = Path(_postconf("queue_directory"))
    pid_file = queue / "pid" / "master.pid"
    if subprocess.run(["postfix", "status"], capture_output=True, check=False).returncode == 0:
        yield Daemon("postfix", int(pid_file.read_text().split()[0]), None)
        return
    port = _free_port()
    config = tmp / "postfix"
    config.mkdir()
    # The default queue and data directories make it the instance `postfix status` reports;
    # the rest is ours: one plain SMTP listener on loopback, nothing else.
    (config / "main.cf").write_text(
        f"compatibility_level = 3.6\nqueue_directory = {queue}\n"
        f"data_directory = {_postconf('data_directory')}\nmail_owner = postfix\n"
        f"setgid_group = postdrop\ninet_interfaces = {_HOST}\ninet_protocols = ipv4\n"
        "mydestination =\nsmtpd_banner = $myhostname ESMTP installer-test\n"
        # Nothing smtpd would ask another service for (their sockets would go into the system
        # spool): no client limits (anvil), no local recipient table (proxymap).
        "smtpd_client_connection_count_limit = 0\nsmtpd_peername_lookup = no\n"
        "local_recipient_maps =\n"
    )
    (config / "master.cf").write_text(f"{_HOST}:{port} inet n - n - - smtpd\n")
    past = time.time() - 60  # Postfix waits for young config files to "cool down"
    for path in config.iterdir():
        os.utime(path, (past, past))
    (queue / "quick-start").touch()  # skip `postfix check`: it would fix up the system spool
    subprocess.run(["postfix", "-c", str(config), "start"], capture_output=True, check=True)
    pid = int(pid_file.read_text().split()[0])
    try:
        read_banner(_HOST, port, b"220", time.monotonic() + _DEADLINE)
        yield Daemon("postfix", pid, port)
    finally:
        # It may be gone already: stopping it is the failure this test is about.
        stop_group(pid, lambda: signal_group(pid, signal.SIGTERM), 0.5,
                   time.monotonic() + _DEADLINE)  # fmt: skip
        # The master's lock file for our listener; master.pid stays, as after any stop.
        (queue / "pid" / f"inet.{_HOST}:{port}").unlink(missing_ok=True)


@contextlib.contextmanager
def system_dovecot(tmp: Path) -> Iterator[Daemon]:
    """A Dovecot with Debian's base_dir /run/dovecot, running: the one found, or one started here."""
    base = Path("/run/dovecot")
    pid_file = base / "master.pid"
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid = int(pid_file.read_text().split()[0])
        if pid_alive(pid):
            yield Daemon("dovecot", pid, None)
            return
    had_base = base.exists()
    port = _free_port()
    (tmp / "dovecot-state").mkdir()
    (tmp / "users").write_text("")
    conf = tmp / "dovecot.conf"
    conf.write_text(
        f"protocols = imap\nlisten = {_HOST}\nbase_dir = {base}\n"
        f"state_dir = {tmp / 'dovecot-state'}\nlog_path = {tmp / 'dovecot.log'}\nssl = no\n"
        f"passdb {{\n  driver = passwd-file\n  args = {tmp / 'users'}\n}}\n"
        "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}\n"
        "service imap-login {\n  inet_listener imap {\n"
        f"    address = {_HOST}\n    port = {port}\n  }}\n"
        "  inet_listener imaps {\n    port = 0\n  }\n}\n"
    )
    process = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    try:
        read_banner(_HOST, port, b"* OK", time.monotonic() + _DEADLINE, process)
        wait_until(pid_file.exists, time.monotonic() + _DEADLINE, "dovecot's master.pid")
        assert int(pid_file.read_text().split()[0]) == process.pid
        yield Daemon("dovecot", process.pid, port)
    finally:
        stop_group(process.pid, lambda: signal_group(process.pid, signal.SIGTERM), 0.5,
                   time.monotonic() + _DEADLINE, child=process)  # fmt: skip
        if not had_base:
            shutil.rmtree(base, ignore_errors=True)


def _rc_links() -> dict[str, list[str]]:
    """Every /etc/rc?.d link of the services, per directory."""
    return {
        str(d): sorted(e.name for e in d.iterdir() if e.name.lstrip("SK0123456789") in SERVICES)
        for d in RC_DIRS
        if d.is_dir()
    }


def _enabled_copies(tmp: Path) -> dict[Path, Path]:
    """Copies of /etc/rc?.d in which postfix and dovecot start in runlevels 2-5."""
    copies = {}
    for rc in RC_DIRS:
        if not rc.is_dir():
            continue
        copy = tmp / "rc" / rc.name
        shutil.copytree(rc, copy, symlinks=True)
        for service in SERVICES:
            for link in copy.glob(f"[SK][0-9][0-9]{service}"):
                link.unlink()
            if rc.name in ("rc2.d", "rc3.d", "rc4.d", "rc5.d"):
                (copy / f"S01{service}").symlink_to(f"../init.d/{service}")
            elif rc.name in ("rc0.d", "rc1.d", "rc6.d"):
                (copy / f"K01{service}").symlink_to(f"../init.d/{service}")
        copies[rc] = copy
    return copies


def _installed(package: str) -> bool:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                            text=True, check=False).stdout  # fmt: skip
    return status == "install ok installed"


def _run_installer(copies: dict[Path, Path]) -> subprocess.CompletedProcess[str]:
    """install.sh with a missing package to install, its /etc/rc?.d the enabled copies."""
    binds = "".join(f"mount --bind '{copy}' '{rc}' && " for rc, copy in copies.items())
    env = {**os.environ, "MAILSTACK_PACKAGES": f"{DEFAULT_PACKAGES} {HARMLESS}"}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"{binds}exec sh '{INSTALLER}'"],
        capture_output=True, text=True, check=False, env=env, timeout=900,
    )  # fmt: skip


def test_installer_leaves_the_system_postfix_and_dovecot_running_and_enabled(
    tmp_path: Path,
) -> None:
    """Installing a missing package: the system Postfix and Dovecot keep their pids and answer,
    their init scripts stay enabled, and policy-rc.d is as it was."""
    _need("postfix", "postconf", "dovecot", "dpkg-query", "apt-get", "unshare")
    if _installed(HARMLESS):
        pytest.skip(f"{HARMLESS} is installed here: the installer would have nothing to do")
    host_links = _rc_links()
    policy = POLICY.read_bytes() if POLICY.exists() else None
    try:
        with system_postfix(tmp_path) as postfix, system_dovecot(tmp_path) as dovecot:
            copies = _enabled_copies(tmp_path)
            enabled = {rc: sorted(p.name for p in c.iterdir()) for rc, c in copies.items()}
            proc = _run_installer(copies)
            output = proc.stdout[-2000:] + proc.stderr[-2000:]
            for daemon in (postfix, dovecot):
                assert pid_alive(daemon.pid), f"{daemon.name} (pid {daemon.pid}) was stopped"
            assert {rc: sorted(p.name for p in c.iterdir()) for rc, c in copies.items()} == enabled
            assert proc.returncode == 0, output
            assert _installed(HARMLESS), output  # it had something to do, and did it
            if postfix.port is not None:
                read_banner(_HOST, postfix.port, b"220", time.monotonic() + 5)
            if dovecot.port is not None:
                read_banner(_HOST, dovecot.port, b"* OK", time.monotonic() + 5)
    finally:
        if _installed(HARMLESS):
            subprocess.run(["apt-get", "purge", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600",
                            HARMLESS], capture_output=True, check=False)  # fmt: skip
    assert _rc_links() == host_links
    assert (POLICY.read_bytes() if POLICY.exists() else None) == policy
