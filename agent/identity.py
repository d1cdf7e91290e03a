"""The agent's instance identity: how it tells its own probes from another agent's.

Agents that share a secret and a mailbox (a fleet, or `probe-once` beside the daemon) sign their
probes with their identity (X-Mailprobe-Agent). The daemon's identity is a random id created once
in its state dir and read back at every start, so probes in flight across a restart stay its own;
`probe-once` gets a fresh one each run, so it never takes the daemon's probes nor the daemon its.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from mailprobe.probes.message import AGENT_ID

FILE_NAME = "agent-id"


class IdentityError(Exception):
    """The identity file exists but does not hold an identity (edited or damaged)."""


def load_or_create(state_dir: Path) -> str:
    """The identity stored in `state_dir`, created (atomically, exactly once) if there is none."""
    path = state_dir / FILE_NAME
    # The state dir first, so a path that cannot be one is reported as itself.
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    tmp = state_dir / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        with tmp.open("x", encoding="ascii") as handle:
            handle.write(secrets.token_hex(8) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link() never replaces: if another process got there first, its identity stands.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        _sync_dir(state_dir)
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def ephemeral() -> str:
    """A fresh identity for one short run (probe-once), never stored."""
    return "once-" + secrets.token_hex(8)


def _read(path: Path) -> str:
    try:
        value = path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        value = ""
    if not AGENT_ID.fullmatch(value):
        raise IdentityError(
            f"{path}: not an agent identity (letters, digits, '_', '-', '.'; at most 64); "
            "remove the file to make a new one"
        )
    return value


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
