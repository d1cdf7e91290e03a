"""ClamAV for the test stack: clamd with a local signature for the EICAR test file, clamav-milter
refusing infected mail at SMTP, and a pipe content filter that strips or replaces it.

No signature download is possible here (and none is wanted: a test must not depend on the
day's database): clamd loads one custom signature, written at start from the EICAR bytes the
probe sends (`mailprobe.probes.antivirus.eicar`), as an .ndb body signature that matches the
file anywhere in a scanned part. Modes, switched on the stack's submission listeners only
(`MailStack.antivirus(mode)`): `off` (delivered intact), `reject` (clamav-milter: `OnInfected
Reject`, 5.7.1 at the end of DATA), `strip`, `replace` and `quarantine` (filed into Junk by the
stack's Sieve rule) (tests/mailstack/av_filter.py).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from mailprobe.probes.antivirus import eicar
from tests.mailstack.process import MailStackError, signal_group, stop_group, wait_until

CLAMD = "/usr/sbin/clamd"
MILTER = "/usr/sbin/clamav-milter"
FILTER = Path(__file__).with_name("av_filter.py")
FILTER_MODES = ("strip", "replace", "quarantine")  # through av_filter.py
MODES = ("off", "reject", "strip", "replace", "quarantine")


def missing() -> str | None:
    """Why ClamAV cannot run here, or None."""
    for binary in (CLAMD, MILTER):
        if not Path(binary).exists():
            return f"{binary} is missing: run `bash tests/mailstack/install.sh` as root"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ClamAV:
    """clamd and clamav-milter of one stack, in `root`; started once, stopped with the stack."""

    def __init__(self, root: Path, timeout: float) -> None:
        self.root = root
        self.timeout = timeout
        self.socket = root / "clamd.sock"
        self.milter_port = 0
        self.filter = root / "av_filter.py"
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def milter(self) -> str:
        """The milter's address as Postfix names it."""
        return f"inet:127.0.0.1:{self.milter_port}"

    def start(self) -> None:
        """Write the configs and the signature, start clamd then the milter; wait for both."""
        problem = missing()
        if problem is not None:
            raise MailStackError(problem)
        db = self.root / "db"
        db.mkdir(parents=True)
        (db / "mailprobe-test.ndb").write_text(f"Mailstack.Test.EICAR:0:*:{eicar().hex()}\n")
        self.milter_port = _free_port()
        (self.root / "clamd.conf").write_text(
            f"DatabaseDirectory {db}\nLocalSocket {self.socket}\nLocalSocketMode 666\n"
            f"Foreground yes\nLogFile {self.root / 'clamd.log'}\nUser root\n"
        )
        # The milter's address is port@host: host 127.0.0.1, never every interface.
        (self.root / "milter.conf").write_text(
            f"MilterSocket inet:{self.milter_port}@127.0.0.1\nClamdSocket unix:{self.socket}\n"
            f"OnInfected Reject\nRejectMsg virus found: %v\nForeground yes\nUser root\n"
            f"LogFile {self.root / 'milter.log'}\n"
        )
        # Run by pipe(8) as nobody: a copy in the stack's directory it can read.
        self.filter.write_bytes(FILTER.read_bytes())
        self.filter.chmod(0o644)
        deadline = time.monotonic() + self.timeout
        self._spawn(CLAMD, self.root / "clamd.conf")
        wait_until(self.socket.exists, deadline, "clamd's socket")
        self._spawn(MILTER, self.root / "milter.conf")
        wait_until(self._milter_listens, deadline, "clamav-milter to listen")

    def _spawn(self, binary: str, conf: Path) -> None:
        with (self.root / f"{Path(binary).name}.out").open("ab") as out:
            self._procs.append(subprocess.Popen(
                [binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
            ))  # fmt: skip

    def _milter_listens(self) -> bool:
        for proc in self._procs:
            if proc.poll() is not None:
                raise MailStackError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.milter_port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the milter and clamd (only these processes)."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                stop_group(proc.pid, lambda p=proc: signal_group(p.pid, signal.SIGTERM), 0.5,
                           time.monotonic() + self.timeout, child=proc)  # fmt: skip
        self._procs = []


def master_cf_transports(clamav_socket: Path, filter_script: Path, smtp_port: int) -> str:
    """The pipe transports of the content filter's modes."""
    out = ""
    for mode in FILTER_MODES:
        out += (
            f"mailstack-{mode} unix - n n - 4 pipe flags=Rq user=nobody "
            f"argv=/usr/bin/python3 {filter_script} {mode} {clamav_socket} {smtp_port} "
            "${sender} -- ${recipient}\n"
        )
    return out


def settings(mode: str, clamav: ClamAV | None) -> dict[str, str]:
    """The main.cf parameters the submission listeners read for `mode`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    milters = clamav.milter if mode == "reject" and clamav is not None else ""
    content = f"mailstack-{mode}:dummy" if mode in FILTER_MODES else ""
    return {"mailstack_milters": milters, "mailstack_content_filter": content}


__all__ = ["MODES", "ClamAV", "master_cf_transports", "missing", "settings"]
