"""The systemd unit: `systemd-analyze verify` clean, the exposure README prints, its command
line understood by `mailprobe run`, and the agent running under the unit's
MemoryDenyWriteExecute and NoNewPrivileges (the kernel's own switches for them).

No systemd runs here: `verify` works on a file tree laid out as the README installs it, and
`security --offline=true` on the unit file. Needs systemd-analyze (Debian: systemd).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mailprobe.agent.cli import build_parser
from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers.agents import AgentProcess, free_port, scrape
from tests.helpers.configs import config_data, write_config
from tests.helpers.waits import wait_until
from tests.subprocess.test_prometheus_e2e import tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "config" / "systemd" / "mailprobe.service"
ENV_FILE = ROOT / "config" / "systemd" / "mailprobe.env"
README = ROOT / "README.md"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def directives(path: Path) -> dict[str, list[str]]:
    """Section.Key -> values, in order (a unit may repeat a key)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def verify_installed(tmp_path: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on a tree laid out as README installs the unit: the system's
    own units, this one in /etc/systemd/system, the console script in /opt/mailprobe/bin, and
    the system's kill (ExecReload)."""
    analyze = tool("systemd-analyze")
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/mailprobe.service").write_text(unit_text)
    (root / "opt/mailprobe/bin").mkdir(parents=True)
    shutil.copy(Path(sys.executable).parent / "mailprobe", root / "opt/mailprobe/bin/mailprobe")
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin/kill")  # ExecReload sends SIGHUP with it
    return run(analyze, "verify", f"--root={root}", "/etc/systemd/system/mailprobe.service")


def test_verify_is_clean_on_the_installed_layout(tmp_path: Path) -> None:
    """`systemd-analyze verify` exits 0 and says nothing at all about the unit."""
    done = verify_installed(tmp_path, UNIT.read_text())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_verify_notices_a_broken_unit(tmp_path: Path) -> None:
    """The same check speaks up on a misspelt directive: the silence above means something."""
    done = verify_installed(tmp_path, UNIT.read_text().replace("ProtectHome=", "ProtectHomes="))
    assert "Unknown key 'ProtectHomes' in section [Service]" in done.stderr


def test_security_exposure_is_the_one_readme_prints() -> None:
    """`systemd-analyze security --offline=true` rates the unit OK, with the figure README
    shows (and exactly README's command)."""
    analyze = tool("systemd-analyze")
    command = "systemd-analyze security --offline=true config/systemd/mailprobe.service"
    readme = README.read_text()
    assert command in readme
    done = subprocess.run([analyze, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    overall = re.search(r"Overall exposure level for mailprobe\.service: (\d+\.\d) (\w+)",
                        done.stdout)  # fmt: skip
    assert overall is not None, done.stdout + done.stderr
    exposure, verdict = float(overall.group(1)), overall.group(2)
    assert exposure <= 2.0
    assert verdict == "OK"
    assert f"Overall exposure level for mailprobe.service: {overall.group(1)} OK" in readme


def test_the_unit_has_the_hardening_it_promises() -> None:
    """Type=notify with a watchdog, a dynamic user, a state directory, a read-only system and
    no capabilities, privileges, namespaces or foreign socket families."""
    unit = directives(UNIT)
    wanted = {
        "Type": "notify", "NotifyAccess": "main", "DynamicUser": "yes",
        "StateDirectory": "mailprobe", "ConfigurationDirectory": "mailprobe",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "RestrictNamespaces": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }  # fmt: skip
    for key, value in wanted.items():
        assert unit[f"Service.{key}"] == [value], key
    assert unit["Service.SystemCallFilter"][0] == "@system-service"
    assert unit["Service.WatchdogSec"]


def test_the_command_line_and_the_environment_file_are_mailprobe_run_arguments() -> None:
    """ExecStart= and every MAILPROBE_ARGS of the environment file parse as `mailprobe run`."""
    exec_start = shlex.split(directives(UNIT)["Service.ExecStart"][0])
    assert exec_start[0] == "/opt/mailprobe/bin/mailprobe"
    assert exec_start[-1] == "$MAILPROBE_ARGS"
    examples = [line.lstrip("#").partition("=")[2]
                for line in ENV_FILE.read_text().splitlines()
                if line.lstrip("#").startswith("MAILPROBE_ARGS=")]  # fmt: skip
    assert len(examples) >= 2
    for extra in ["", *examples]:
        args = build_parser().parse_args([*exec_start[1:-1], *shlex.split(extra)])
        assert args.command == "run"
        assert args.config == Path("/etc/mailprobe/mailprobe.yaml")
    assert build_parser().parse_args([*exec_start[1:-1], *shlex.split(examples[0])]).log_format


# ----------------------------------------------------------------------------- the sandbox

PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 1
# What systemd does for NoNewPrivileges= and (on kernels that have it) MemoryDenyWriteExecute=,
# then exec the agent. The kernel keeps both across exec.
SANDBOX = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_NO_NEW_PRIVS}, 1, 0, 0, 0) or libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0):
    sys.exit("prctl: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
"""


def mdwe_supported() -> bool:
    """Whether this kernel has PR_SET_MDWE (Linux 6.3): asked of PR_GET_MDWE."""
    return int(ctypes.CDLL(None, use_errno=True).prctl(66, 0, 0, 0, 0)) >= 0



@pytest.mark.skipif(not mdwe_supported(), reason="the kernel has no PR_SET_MDWE (Linux < 6.3)")
async def test_the_agent_probes_under_memory_deny_write_execute(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """With writable-executable memory refused and no new privileges, `mailprobe run` starts,
    sends and receives a probe over TLS, serves /metrics and stops cleanly: the unit may ask
    for MemoryDenyWriteExecute=yes."""
    port = free_port()
    data = config_data(mail, tmp_path / "state", interval="1s")
    data["agent"]["listen"] = f"127.0.0.1:{port}"
    write_config(data, tmp_path / "c.yaml")
    log = tmp_path / "agent.log"
    agent = AgentProcess(tmp_path / "c.yaml", log, launcher=(sys.executable, "-c", SANDBOX))
    try:
        await agent.start()
        await wait_until(lambda: "status=ok" in log.read_text(), 30, "a delivered probe")
        assert "mailprobe_probes_received_total" in await scrape(port)
        assert agent.proc is not None
        status = (Path("/proc") / str(agent.proc.pid) / "status").read_text()
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE)
        assert await agent.signal(signal.SIGTERM) == 0
    finally:
        await agent.ensure_gone()
    assert "Traceback" not in log.read_text()


def expand(analyze: str, group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a systemd syscall group, its nested groups included."""
    seen = set() if seen is None else seen
    out: set[str] = set()
    listing = run(analyze, "syscall-filter", group).stdout.splitlines()[1:]
    for line in (item.strip() for item in listing):
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            if line not in seen:
                seen.add(line)
                out |= expand(analyze, line, seen)
        else:
            out.add(line)
    return out


def allowed_syscalls(analyze: str) -> set[str]:
    """The unit's SystemCallFilter= lines applied in order: an allow list, then removals."""
    allowed: set[str] = set()
    for value in directives(UNIT)["Service.SystemCallFilter"]:
        deny = value.startswith("~")
        names: set[str] = set()
        for item in value.lstrip("~").split():
            names |= expand(analyze, item) if item.startswith("@") else {item}
        allowed = allowed - names if deny else allowed | names
    return allowed


def first_child(pid: int) -> int:
    """The first child process of `pid` (Linux /proc)."""
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


_CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", re.MULTILINE)
_FAMILY = re.compile(r"\bsocket\((AF_[A-Z0-9]+)")


async def test_every_system_call_of_a_probe_cycle_passes_the_units_filter(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Under strace, `mailprobe run` starts, probes over TLS (SMTP and IMAP), serves a scrape
    and drains on SIGTERM; every system call it made is in the unit's SystemCallFilter= (after
    the exec that systemd itself does) and every socket it opened is of a family
    RestrictAddressFamilies= allows."""
    analyze, strace = tool("systemd-analyze"), tool("strace")
    port = free_port()
    data = config_data(mail, tmp_path / "state", interval="1s")
    data["agent"]["listen"] = f"127.0.0.1:{port}"
    write_config(data, tmp_path / "c.yaml")
    log, trace = tmp_path / "agent.log", tmp_path / "trace"
    agent = AgentProcess(tmp_path / "c.yaml", log,
                         launcher=(strace, "-f", "-qq", "-o", str(trace)))  # fmt: skip
    try:
        await agent.start()
        await wait_until(lambda: "status=ok" in log.read_text(), 60, "a delivered probe")
        assert "mailprobe_probes_received_total" in await scrape(port)
        assert agent.proc is not None
        # The agent is strace's child; strace ends with it and exits with its status.
        os.kill(first_child(agent.proc.pid), signal.SIGTERM)
        assert await asyncio.wait_for(agent.proc.wait(), 30) == 0
    finally:
        await agent.ensure_gone()
    text = trace.read_text()
    # execve: systemd's own exec of ExecStart=. fchown: SQLite gives its WAL and journal the
    # database's owner only when it runs as root, as this test does and the unit's user never.
    used = set(_CALL.findall(text)) - {"execve", "fchown"}
    assert {"connect", "sendto", "recvfrom", "epoll_wait"} <= used  # the trace is of real work
    assert used - allowed_syscalls(analyze) == set()
    families = set(_FAMILY.findall(text))
    assert "AF_INET" in families
    assert families <= set(directives(UNIT)["Service.RestrictAddressFamilies"][0].split())
