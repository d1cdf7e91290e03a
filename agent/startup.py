"""Clean failure at start-up: what keeps a command from starting is one line on stderr and exit 2.

Every command (run, demo, probe-once, report, check-config) reads its config through
`config_or_exit` and starts the agent through `start_agent`, so a bad config, a taken port or an
unwritable state directory reads the same everywhere: `mailprobe: WHERE: WHAT`, no traceback.
Errors after start-up are not dressed up here: they are bugs or outages and are logged as such.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from mailprobe.agent.config import Config, load_config
from mailprobe.agent.config_base import ConfigError

if TYPE_CHECKING:  # the report command uses this module too, and needs no agent
    from mailprobe.agent.runtime import Agent

EXIT_USAGE = 2
"""Exit code of every start-up failure (and of a config that cannot be used)."""

_ADDRESS_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}
_HINTS = {
    errno.EADDRINUSE: " (another mailprobe, or another program, listens there)",
    errno.EADDRNOTAVAIL: " (no interface of this machine has that address)",
    errno.EACCES: " (ports below 1024 need privileges)",
}


class StartupError(Exception):
    """The command cannot start; the message is one line naming the problem."""


def fail(message: str, prog: str = "mailprobe") -> NoReturn:
    """Print `prog: message` on stderr and exit 2."""
    print(f"{prog}: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def config_lines(exc: ConfigError) -> list[str]:
    """One line per config problem, each naming the file (when there is one) and the key."""
    where = f"{exc.path}: " if exc.path is not None else ""
    return [f"{where}{problem}" for problem in exc.problems or ["unusable config"]]


def config_or_exit(path: Path, *, check_secrets: bool = True, prog: str = "mailprobe") -> Config:
    """The validated config at `path`, or every problem on stderr (one line each) and exit 2."""
    try:
        return load_config(path, check_secrets=check_secrets)
    except ConfigError as exc:
        for line in config_lines(exc):
            print(f"{prog}: {line}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def describe(exc: BaseException, config: Config, listen_key: str = "agent.listen") -> str | None:
    """One line for an error raised while the agent starts; None when it is not one we know."""
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        return f"agent.state_dir: {exc.filename}: {reason}"
    if isinstance(exc, OSError) and exc.errno in _ADDRESS_ERRORS:
        # asyncio's text repeats the address as a tuple; say it as it was configured.
        reason = os.strerror(exc.errno).lower() + _HINTS[exc.errno]
        return f"{listen_key} {config.agent.listen}: cannot listen: {reason}"
    if isinstance(exc, OSError | sqlite3.Error):
        return f"agent.state_dir {config.agent.state_dir}: {exc}"
    return None


async def start_agent(agent: Agent, *, listen_key: str = "agent.listen") -> asyncio.Task[None]:
    """Start `agent.run()` and return its task once the agent is up.

    StartupError (one line) when it fails before that: a taken port, a state directory or
    ledger that cannot be opened. Anything else propagates unchanged.
    """
    runner = asyncio.ensure_future(agent.run())
    ready = asyncio.ensure_future(agent.ready.wait())
    try:
        await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if agent.ready.is_set():
        return runner
    exc = runner.exception() if not runner.cancelled() else None
    if exc is None:
        return runner  # stopped before it was up: nothing failed
    message = describe(exc, agent.config, listen_key)
    if message is None:
        raise exc
    raise StartupError(message) from exc
