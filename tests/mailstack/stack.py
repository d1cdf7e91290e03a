"""MailStack: a private Postfix + Dovecot on loopback for integration tests and benchmarks."""

from __future__ import annotations

import asyncio
import base64
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.mailstack import antivirus, config
from tests.mailstack.av_filter import JUNK_HEADER
from tests.mailstack.files import make_maildirs, make_queue_dirs, write_postfix_file
from tests.mailstack.maildir import deliver_file
from tests.mailstack.process import (
    MailStackError,
    children,
    pid_alive,
    read_banner,
    run,
    signal_group,
    stop_group,
    wait_until,
    wait_until_connects,
)
from tests.mailstack.tls import make_certificates

POSTFIX = "/usr/sbin/postfix"
POSTSUPER = "/usr/sbin/postsuper"
POSTQUEUE = "/usr/sbin/postqueue"
DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
SIEVEC = "/usr/bin/sievec"  # Pigeonhole (Debian dovecot-sieve): the junk rule
VMAIL_USER = "vmail"
INSTALL_HINT = "run `bash tests/mailstack/install.sh` as root"

# How long a server gets to exit on SIGTERM before the rest of its processes get SIGKILL.
_STOP_GRACE = 0.5
# doveadm's exit code (EX_NOUSER) when kick found no session to end.
_DOVEADM_NO_USER = 68
_QUEUED_AS = re.compile(r"\bqueued as ([0-9A-Za-z]+)")
# Marks replies caused by reject_recipient, so a poll can tell them from other rejections.
_REJECT_MARK = "mailstack-reject"
_REJECT_TRANSPORTS = {
    450: f"retry:4.2.0 {_REJECT_MARK} mailbox temporarily unavailable",
    550: f"error:5.1.1 {_REJECT_MARK} mailbox unavailable",
}
_DEFAULT_USERS = ("alice@probe.test", "bob@probe.test", "carol@probe.test", "dave@other.test")


def queue_id_from_reply(text: str) -> str:
    """Queue id from Postfix's `250 2.0.0 Ok: queued as ID` reply to end of DATA."""
    match = _QUEUED_AS.search(text)
    if match is None:
        raise ValueError(f"no queue id in reply {text!r}")
    return match.group(1)


def missing_prerequisites() -> str | None:
    """Why the stack cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the mail stack needs root"
    for binary in (POSTFIX, POSTSUPER, POSTQUEUE, DOVECOT, DOVEADM, SIEVEC):
        if not Path(binary).exists():
            return f"{binary} is missing: {INSTALL_HINT}"
    try:
        pwd.getpwnam(VMAIL_USER)
    except KeyError:
        return f"user {VMAIL_USER} is missing: {INSTALL_HINT}"
    return None


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports; all sockets stay bound until every port is picked."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((config.HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class MailStack:
    """Postfix and Dovecot with their own configs, spool and mailboxes under a temp directory."""

    host = config.HOST
    domain = "probe.test"
    other_domain = "other.test"
    hold_header = "X-Mailprobe-Hold"
    #: Mail with this header set to ``yes`` is filed into the recipient's Junk folder (Sieve).
    junk_header = JUNK_HEADER  # the content filter's quarantine mode sets it too
    junk_folder = "Junk"
    #: Accepted by Postfix but unknown to Dovecot: mail to it bounces back to the sender.
    bounce_address = "ghost@probe.test"
    #: The `iss` of the tokens Dovecot accepts (a name only: Dovecot never connects to it).
    oauth2_issuer = "https://issuer.test"

    def __init__(self, *, keep_dir: bool = False, timeout: float = 15.0) -> None:
        self.keep_dir = keep_dir
        self.timeout = timeout
        self.users: dict[str, str] = {
            address: secrets.token_urlsafe(12) for address in _DEFAULT_USERS
        }
        self.smtp_port = self.submission_port = self.submissions_port = 0
        self.imap_port = self.imaps_port = 0
        self._layout: config.Layout | None = None
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._postfix_pid: int | None = None
        self._rejects: dict[str, int] = {}
        #: The CA that signed the servers' certificate; written by start().
        self.ca_file = Path()
        #: The HS256 key Dovecot checks bearer tokens (JWTs from oauth2_issuer) with.
        self.oauth2_key = secrets.token_bytes(32)
        self._clamav: antivirus.ClamAV | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def workdir(self) -> Path:
        """Root of every file the stack wrote (configs, spool, mailboxes, logs)."""
        return self.layout.root

    @property
    def layout(self) -> config.Layout:
        """Paths of the running stack's files (configs, spool, logs, sockets)."""
        if self._layout is None:
            raise MailStackError("the mail stack is not started")
        return self._layout

    def start(self) -> None:
        """Write configs, start Postfix and Dovecot; return when every port accepts."""
        problem = missing_prerequisites()
        if problem is not None:
            raise MailStackError(problem)
        if self._layout is not None:
            raise MailStackError("the mail stack is already started")
        root = Path(tempfile.mkdtemp(prefix="mailstack-"))
        # Dovecot's mail processes run as vmail and must traverse to the mailboxes.
        root.chmod(0o755)
        self._layout = config.Layout(root)
        try:
            self._write_files()
            # Dovecot first: Postfix's SASL-enabled listeners need its auth socket.
            self.start_dovecot()
            self.start_postfix()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both servers (only the pids this stack started) and remove the directory."""
        if self._layout is None:
            return
        try:
            if self._clamav is not None:
                self._clamav.stop()
                self._clamav = None
            self.stop_dovecot()
        finally:
            try:
                self.stop_postfix()
            finally:
                if not self.keep_dir:
                    shutil.rmtree(self._layout.root, ignore_errors=True)
                self._layout = None
                self._rejects = {}

    def _write_files(self) -> None:
        layout = self.layout
        ports = config.Ports(*_free_ports(5))
        self.smtp_port = ports.smtp
        self.submission_port = ports.submission
        self.submissions_port = ports.submissions
        self.imap_port = ports.imap
        self.imaps_port = ports.imaps
        tls = make_certificates(layout.tls)
        self.ca_file = tls.ca_cert
        vmail = pwd.getpwnam(VMAIL_USER)
        postfix = pwd.getpwnam("postfix")
        domains = (self.domain, self.other_domain)

        for directory in (layout.postfix_config, layout.postfix_data, layout.root / "log",
                          layout.dovecot_run, layout.dovecot_state):  # fmt: skip
            directory.mkdir(parents=True)
        make_queue_dirs(layout.spool, postfix.pw_uid, grp.getgrnam("postdrop").gr_gid)
        os.chown(layout.postfix_data, postfix.pw_uid, -1)
        layout.postfix_data.chmod(0o700)

        write_postfix_file(
            layout.postfix_config / "main.cf",
            config.postfix_main_cf(
                layout, domains, tls.server_cert, tls.server_key, f"mail.{self.domain}"
            ),
        )
        clamav = layout.root / "clamav"
        transports = antivirus.master_cf_transports(clamav / "clamd.sock", clamav / "av_filter.py",
                                                    ports.smtp)  # fmt: skip
        write_postfix_file(layout.postfix_config / "master.cf",
                           config.postfix_master_cf(ports, transports))  # fmt: skip
        mailboxes = [*self.users, self.bounce_address]
        write_postfix_file(
            layout.mailboxes_map, "".join(f"{address} OK\n" for address in mailboxes)
        )
        write_postfix_file(layout.transport_map, "")
        write_postfix_file(layout.header_checks, f"/^{self.hold_header}:\\s*yes\\b/ HOLD\n")

        layout.dovecot_config.write_text(
            config.dovecot_conf(
                layout, ports, tls.server_cert, tls.server_key,
                vmail.pw_uid, vmail.pw_gid, f"postmaster@{self.domain}",
            )
        )  # fmt: skip
        layout.sieve_before.write_text(config.sieve_script(self.junk_header))
        # Compiled now, as root, next to the script: LMTP (as vmail) only reads the binary.
        run(SIEVEC, "-c", str(layout.dovecot_config), str(layout.sieve_before))
        layout.dovecot_users.write_text(
            "".join(f"{address}:{password}\n" for address, password in self.users.items())
        )
        # Dovecot's auth process reads it as the dovecot user.
        layout.dovecot_users.chmod(0o640)
        os.chown(layout.dovecot_users, 0, pwd.getpwnam("dovecot").pw_gid)
        self._write_oauth2_files()
        # Mailboxes exist before the first delivery, so watchers can be set up right away.
        make_maildirs(layout.vmail, [layout.maildir(address) for address in self.users], vmail)

    def _write_oauth2_files(self) -> None:
        layout = self.layout
        layout.dovecot_oauth2.write_text(config.dovecot_oauth2_conf(layout, self.oauth2_issuer))
        key = layout.oauth2_keys / "default" / "HS256" / "default"
        key.parent.mkdir(parents=True)
        key.write_text(base64.b64encode(self.oauth2_key).decode())
        # Dovecot's auth process reads them as the dovecot user.
        dovecot_gid = pwd.getpwnam("dovecot").pw_gid
        for path in (layout.dovecot_oauth2, key):
            path.chmod(0o640)
            os.chown(path, 0, dovecot_gid)
        for directory in (layout.oauth2_keys, key.parent.parent, key.parent):
            directory.chmod(0o750)
            os.chown(directory, 0, dovecot_gid)

    # -- Postfix -----------------------------------------------------------------------------

    def _postfix(self, *args: str) -> str:
        return run(POSTFIX, "-c", str(self.layout.postfix_config), *args)

    def start_postfix(self) -> None:
        """Start this stack's Postfix; return when its SMTP ports answer."""
        if self._postfix_pid is not None and pid_alive(self._postfix_pid):
            return
        # The queue directories already exist (see _make_queue_dirs): skip `postfix check`
        # and post-install, which cost ~2 s of shell and postconf runs per start.
        (self.layout.spool / "quick-start").touch()
        self._postfix("start")
        pid_file = self.layout.spool / "pid" / "master.pid"
        self._postfix_pid = int(pid_file.read_text().split()[0])
        deadline = time.monotonic() + self.timeout
        read_banner(self.host, self.smtp_port, b"220", deadline)
        read_banner(self.host, self.submission_port, b"220", deadline)
        # Connect only: smtpd with SASL needs Dovecot's auth socket to greet, so a TLS greeting
        # here would fail (and get the service throttled) whenever Dovecot is down.
        wait_until_connects(self.host, self.submissions_port, deadline)

    def stop_postfix(self) -> None:
        """Stop this stack's Postfix; return once none of its processes is left."""
        pid, self._postfix_pid = self._postfix_pid, None
        if pid is None or not pid_alive(pid):
            return
        # What `postfix stop` does, minus its 1 s polling: SIGTERM to the master, which
        # terminates its process group (it is a session leader, so pgid == pid).
        stop_group(
            pid, lambda: os.kill(pid, signal.SIGTERM), _STOP_GRACE, time.monotonic() + self.timeout
        )

    def reload_postfix(self) -> None:
        """Make Postfix re-read main.cf, master.cf and its texthash tables; return once every
        process started under the old settings is gone.

        The master only tells its children to finish: an idle smtpd or cleanup that has not
        noticed yet would take the next connection with the settings of before.
        """
        if _in_event_loop():
            # The wait below would block the loop, and with it a session of the caller's own
            # agent that keeps an old smtpd alive: a deadlock until the timeout.
            raise MailStackError("from async code, call this with asyncio.to_thread")
        master = self._postfix_pid
        old = children(master) if master is not None else set()
        self._postfix("reload")
        try:
            wait_until(lambda: not any(pid_alive(pid) for pid in old),
                       time.monotonic() + self.timeout, "")  # fmt: skip
        except MailStackError:
            left = [_command_line(pid) for pid in sorted(old) if pid_alive(pid)]
            raise MailStackError(f"Postfix processes of before the reload still run: {left}") from None

    def antivirus(self, mode: str) -> None:
        """Scan what the submission listeners accept: `off`, `reject` (clamav-milter refuses
        infected mail at SMTP), `strip` or `replace` (a content filter takes the infected
        attachment out, or puts a notice in its place). ClamAV starts at the first use."""
        if mode != "off" and self._clamav is None:
            root = self.layout.root / "clamav"
            root.mkdir()
            root.chmod(0o755)  # the filter runs as nobody and must read its script
            clamav = antivirus.ClamAV(root, self.timeout)
            try:
                clamav.start()
            except BaseException:
                clamav.stop()
                raise
            self._clamav = clamav
        for name, value in antivirus.settings(mode, self._clamav).items():
            self._postfix_conf(name, value)
        self.reload_postfix()

    def _postfix_conf(self, name: str, value: str) -> None:
        run("/usr/sbin/postconf", "-c", str(self.layout.postfix_config), "-e", f"{name} = {value}")

    def held_queue_ids(self) -> list[str]:
        """Queue ids of messages on hold, sorted."""
        hold = self.layout.spool / "hold"
        if not hold.exists():
            return []
        return sorted(entry.name for entry in hold.iterdir() if entry.name.isalnum())

    def release(self, queue_id: str) -> None:
        """Take a held message off hold and have it delivered now, not at the next queue scan."""
        run(POSTSUPER, "-c", str(self.layout.postfix_config), "-H", queue_id)
        run(POSTQUEUE, "-c", str(self.layout.postfix_config), "-i", queue_id)

    def flush_queue(self) -> None:
        """Retry deferred mail now instead of at the next queue run (e.g. after an outage)."""
        run(POSTQUEUE, "-c", str(self.layout.postfix_config), "-f")

    def reject_recipient(self, address: str, code: int) -> None:
        """Reject RCPT TO:<address> with 450 (temporary) or 550 (permanent) until cleared."""
        if code not in _REJECT_TRANSPORTS:
            raise ValueError(f"reject code must be one of {sorted(_REJECT_TRANSPORTS)}")
        self._rejects[address.lower()] = code
        self._apply_rejects()
        self._wait_for_rcpt(address, str(code))

    def clear_rejects(self) -> None:
        """Accept every recipient that reject_recipient turned away again."""
        cleared, self._rejects = list(self._rejects), {}
        self._apply_rejects()
        for address in cleared:
            self._wait_for_rcpt(address, None)

    def _apply_rejects(self) -> None:
        write_postfix_file(
            self.layout.transport_map,
            "".join(
                f"{address} {_REJECT_TRANSPORTS[code]}\n" for address, code in self._rejects.items()
            ),
        )
        self.reload_postfix()

    def _wait_for_rcpt(self, address: str, rejected_with: str | None) -> None:
        """Poll RCPT on the plain port until the reject marker shows up (or no longer does)."""
        deadline = time.monotonic() + self.timeout

        def settled() -> bool:
            reply = rcpt_reply(self.host, self.smtp_port, address, deadline)
            if rejected_with is None:
                return _REJECT_MARK not in reply
            return reply.startswith(rejected_with) and _REJECT_MARK in reply

        wait_until(settled, deadline, f"RCPT TO:<{address}> to settle after a transport change")

    # -- Dovecot -----------------------------------------------------------------------------

    def _doveadm(self, *args: str, stdin: bytes | None = None) -> str:
        return run(DOVEADM, "-c", str(self.layout.dovecot_config), *args, stdin=stdin)

    def start_dovecot(self) -> None:
        """Start this stack's Dovecot as a child process; return when both IMAP ports answer."""
        if self._dovecot is not None and self._dovecot.poll() is None:
            return
        with self.layout.dovecot_log.open("ab") as log:
            # Its own session and process group, so stop_dovecot can signal all of it at once.
            self._dovecot = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.layout.dovecot_config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.timeout
        try:
            # Full greetings, TLS included: a login process still starting up when the stack
            # is stopped would hold the stop up (see stop_dovecot).
            read_banner(self.host, self.imap_port, b"* OK", deadline, self._dovecot)
            tls = self.client_ssl_context()
            read_banner(self.host, self.imaps_port, b"* OK", deadline, self._dovecot, tls)
        except MailStackError as exc:
            raise MailStackError(f"{exc}; dovecot log:\n{self._log_tail()}") from exc

    def stop_dovecot(self) -> None:
        """Stop this stack's Dovecot; return once none of its processes is left."""
        process, self._dovecot = self._dovecot, None
        if process is None or process.poll() is not None:
            return
        # SIGTERM to the master alone takes 1-6 s: it stops its children one after another.
        # Signalling the whole group ends sessions with "BYE Server shutting down" within
        # milliseconds; a login process caught starting up ignores SIGTERM for its 5 s stats
        # handshake, hence SIGKILL after a short grace.
        stop_group(
            process.pid,
            lambda: signal_group(process.pid, signal.SIGTERM),
            _STOP_GRACE,
            time.monotonic() + self.timeout,
            child=process,
        )

    def restart_dovecot(self) -> None:
        """Stop Dovecot, then start it again."""
        self.stop_dovecot()
        self.start_dovecot()

    def kick(self, address: str) -> bool:
        """Disconnect every IMAP session of `address` (BYE); False when it had none."""
        result = subprocess.run(
            [DOVEADM, "-c", str(self.layout.dovecot_config), "kick", address],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode == _DOVEADM_NO_USER:
            return False
        if result.returncode != 0:
            raise MailStackError(f"doveadm kick {address}: {result.stderr.strip()}")
        return True

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.layout.dovecot_log.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- mailboxes ---------------------------------------------------------------------------

    def maildir(self, address: str) -> Path:
        """The INBOX Maildir root (with cur/ new/ tmp/) of `address`."""
        if address not in self.users:
            raise KeyError(f"{address} is not a user of this stack")
        return self.layout.maildir(address)

    def append_raw(self, address: str, data: bytes, folder: str = "INBOX", flags: str = "") -> Path:
        """Put a message straight into a mailbox, bypassing SMTP; return the file's path.

        `flags` are IMAP system flags separated by spaces, e.g. "\\Seen \\Flagged".
        """
        root = self.maildir(address)
        if folder.upper() != "INBOX":
            root = root / f".{folder}"
            if not root.exists():
                self._doveadm("mailbox", "create", "-s", "-u", address, folder)
        vmail = pwd.getpwnam(VMAIL_USER)
        return deliver_file(root, data, flags, vmail.pw_uid, vmail.pw_gid)

    def delivered(self, address: str, needle: bytes, folder: str = "INBOX") -> list[Path]:
        """Message files in a folder of `address` (new/ and cur/) that contain `needle`."""
        root = self.maildir(address)
        if folder.upper() != "INBOX":
            root = root / f".{folder}"
            if not root.exists():
                return []
        files = [*(root / "new").iterdir(), *(root / "cur").iterdir()]
        return [path for path in files if _contains(path, needle)]

    def wait_for_delivery(self, address: str, needle: bytes, timeout: float = 10.0) -> Path:
        """Poll the INBOX of `address` until a message containing `needle` is there."""
        found: list[Path] = []

        def arrived() -> bool:
            found[:] = self.delivered(address, needle)
            return bool(found)

        wait_until(arrived, time.monotonic() + timeout, f"{needle!r} to arrive for {address}")
        return found[0]

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts exactly this stack's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return f"pid {pid}"


def _contains(path: Path, needle: bytes) -> bool:
    try:
        return needle in path.read_bytes()
    except FileNotFoundError:  # moved from new/ to cur/ by an IMAP session meanwhile
        return False


def rcpt_reply(host: str, port: int, address: str, deadline: float) -> str:
    """The plain SMTP port's reply to RCPT TO:<address> after MAIL FROM:<>."""
    with smtplib.SMTP(host, port, timeout=max(0.1, deadline - time.monotonic())) as smtp:
        smtp.ehlo("mailstack.test")
        smtp.mail("")
        code, text = smtp.rcpt(address)
        smtp.rset()
    return f"{code} {text.decode(errors='replace')}"
