"""`mailprobe demo`: the real agent against an embedded mail service, with trouble on demand.

The demo writes an ordinary config file (with password and secret files) into its directory,
loads it through the same validation as `mailprobe run`, and runs the same Agent. Only the mail
service is embedded: aiosmtpd and pymap on 127.0.0.1, in this process.

The directory is `--state-dir DIR` when given: config, ledger and log stay there, so
`mailprobe report --config DIR/mailprobe.yaml` shows what the demo measured, and a second demo in
the same directory continues the ledger. Without it the demo uses a temporary directory, says
where, and removes it on exit unless `--keep` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mailprobe.agent import logs
from mailprobe.agent.config import Config, check_listen, load_config
from mailprobe.agent.config_base import ConfigError
from mailprobe.agent.config_checks import MIN_STEP
from mailprobe.agent.demo.view import RouteView, samples, summary, table
from mailprobe.agent.durations import format_duration, parse_duration
from mailprobe.agent.probe import Probe
from mailprobe.agent.runtime import Agent
from mailprobe.agent.startup import StartupError, config_lines, start_agent

log = logging.getLogger(__name__)

DEMO_USERS = ("alice@demo.test", "bob@demo.test", "carol@demo.test")
DEMO_ROUTES = (("internal", "alice", "alice"), ("alice-to-bob", "alice", "bob"),
               ("carol-to-alice", "carol", "alice"))  # fmt: skip
_OUTAGE = re.compile(r"(?:(smtp|imap):)?([^:]+):([^:]+)")
CONFIG_FILE = "mailprobe.yaml"
_MARKER = "# Written by `mailprobe demo`"
# On Ctrl-C, how long the demo lets probes in flight arrive before it stops the agent, so a
# second demo in the same --state-dir does not start with probes that can never arrive.
_SETTLE = 2.0
PROG = "mailprobe demo"


@dataclass(frozen=True, slots=True)
class Outage:
    """One side of the mail service stops accepting connections for a while."""

    side: str
    after: float
    duration: float


def parse_outage(text: str) -> Outage:
    """`[smtp|imap:]AFTER:FOR`, e.g. `imap:30s:20s` or `1m:30s` (IMAP by default)."""
    match = _OUTAGE.fullmatch(text.strip())
    if not match or (text.strip().split(":")[0] in ("smtp", "imap") and match.group(1) is None):
        raise ValueError(f"--outage {text!r}: use [smtp|imap:]AFTER:FOR, e.g. imap:30s:20s")
    try:
        outage = Outage(match.group(1) or "imap", parse_duration(match.group(2)),
                        parse_duration(match.group(3)))  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"--outage {text!r}: {exc}") from None
    if outage.duration <= 0:
        raise ValueError(f"--outage {text!r}: the outage must last longer than 0s")
    return outage


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """The demo's command line, checked."""

    fail_rate: float = 0.0
    delay: float = 0.0
    delay_fraction: float = 0.3
    outages: tuple[Outage, ...] = ()
    listen: str = "127.0.0.1:9478"
    interval: str = "5s"
    duration: float | None = None
    live: bool = False
    print_config: bool = False
    state_dir: Path | None = None
    keep: bool = False


def _share(flag: str, value: float) -> float:
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"{flag}: {value:g} is not between 0 and 1")
    return value


def _duration(flag: str, text: str, minimum: float = 0.0, *, positive: bool = False) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None
    if seconds < minimum:
        raise ValueError(f"{flag}: {text!r} is too short (at least {format_duration(minimum)})")
    if positive and seconds == 0:
        raise ValueError(f"{flag}: {text!r} is too short (it must be longer than 0s)")
    return seconds


def options(args: Any) -> DemoOptions:
    """The parsed command line as DemoOptions; ValueError naming the flag otherwise."""
    try:
        check_listen(args.listen)
    except ValueError as exc:
        raise ValueError(f"--listen: {exc}") from None
    _duration("--interval", args.interval, MIN_STEP)
    live = sys.stdout.isatty() if args.live is None else args.live
    return DemoOptions(
        fail_rate=_share("--fail-rate", args.fail_rate),
        delay=_duration("--delay", args.delay) if args.delay else 0.0,
        delay_fraction=_share("--delay-fraction", args.delay_fraction),
        outages=tuple(parse_outage(o) for o in args.outage or []),
        listen=args.listen,
        interval=args.interval,
        duration=_duration("--duration", args.duration, positive=True) if args.duration else None,
        live=live and not args.print_config,
        print_config=args.print_config,
        state_dir=args.state_dir,
        keep=args.keep,
    )


def write_demo_config(
    workdir: Path, *, host: str, smtp_port: int, imap_port: int, ca_file: Path,
    passwords: dict[str, str], listen: str, interval: str,
) -> Path:  # fmt: skip
    """Write a complete, ordinary config (and its secret files) for the embedded service.

    The signing secret of an earlier demo in the same directory is kept, so its ledger's
    probes stay verifiable; passwords and ports are the embedded service's of this run.
    """
    secret = workdir / "secret"
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(32) + "\n")
        secret.chmod(0o600)
    # The service's CA file goes when it stops; the config refers to a copy that stays.
    ca_copy = workdir / "ca.pem"
    shutil.copyfile(ca_file, ca_copy)
    accounts: dict[str, Any] = {}
    for address in DEMO_USERS:
        name = address.split("@")[0]
        pw_file = workdir / f"{name}.pw"
        pw_file.write_text(passwords[address] + "\n")
        pw_file.chmod(0o600)
        common = {
            "host": host,
            "security": "starttls",
            "username": address,
            "password_file": str(pw_file),
            "ca_file": str(ca_copy),
            "timeout": "5s",
        }
        accounts[name] = {"address": address, "smtp": {**common, "port": smtp_port},
                          "imap": {**common, "port": imap_port}}  # fmt: skip
    data = {
        "agent": {"listen": listen, "state_dir": str(workdir),
                  "secret_file": str(secret), "log_level": "info"},
        "accounts": accounts,
        "routes": [{"name": n, "from": f, "to": t, "interval": interval, "overdue_after": "30s",
                    "lost_after": "2m"} for n, f, t in DEMO_ROUTES],
    }  # fmt: skip
    path = workdir / CONFIG_FILE
    path.write_text(
        f"{_MARKER}: the same shape a real deployment uses.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return path


async def _outage(service: Any, outage: Outage) -> None:
    await asyncio.sleep(outage.after)
    log.warning("demo: %s outage begins for %gs", outage.side, outage.duration)
    await service.set_outage(outage.side, True)
    await asyncio.sleep(outage.duration)
    await service.set_outage(outage.side, False)
    log.warning("demo: %s is back", outage.side)


@contextlib.contextmanager
def _log_to(path: Path, level: int, config: Config) -> Iterator[None]:
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter (aiosmtpd per connection, aioimaplib per untagged line) stays out.
    logs.install(logging.getLevelName(level), config, [handler])
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def _workdir(opts: DemoOptions) -> Iterator[Path]:
    """The demo's directory: --state-dir, or a temporary one removed on exit unless --keep."""
    if opts.state_dir is not None:
        path = opts.state_dir.absolute()
        config = path / CONFIG_FILE
        try:
            path.mkdir(parents=True, exist_ok=True)
            if config.exists() and not config.read_text(errors="replace").startswith(_MARKER):
                raise StartupError(
                    f"--state-dir {path}: {CONFIG_FILE} there was not written by the demo; "
                    "give the demo a directory of its own"
                )
        except OSError as exc:
            raise StartupError(f"--state-dir {path}: {exc.strerror or exc}") from None
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="mailprobe-demo-"))
    try:
        yield path
    finally:
        if not opts.keep:
            shutil.rmtree(path, ignore_errors=True)


async def run_demo(opts: DemoOptions) -> int:
    """Start the embedded service and the agent; show the view until Ctrl-C or the duration."""
    from mailprobe.agent.demo.service import EmbeddedMailService

    passwords = {a: secrets.token_urlsafe(12) for a in DEMO_USERS}
    service = EmbeddedMailService(passwords, fail_rate=opts.fail_rate, delay=opts.delay,
                                  delay_fraction=opts.delay_fraction)  # fmt: skip
    with _workdir(opts) as workdir:
        async with service:
            path = write_demo_config(
                workdir, host=service.host, smtp_port=service.smtp_port,
                imap_port=service.imap_port, ca_file=service.ca_file, passwords=passwords,
                listen=opts.listen, interval=opts.interval,
            )  # fmt: skip
            if opts.print_config:
                sys.stdout.write(path.read_text())
                return 0
            try:
                config = load_config(path)
            except ConfigError as exc:  # the options were checked: this is the demo's own bug
                raise StartupError("; ".join(config_lines(exc))) from None
            with _log_to(workdir / "mailprobe.log", logging.INFO, config):
                code = await _run_agent(config, service, opts, workdir)
        kept = opts.state_dir is not None or opts.keep
        where = "kept in" if kept else "removed with"
        print(f"{PROG}: stopped cleanly; config, ledger and log {where} {workdir}", flush=True)
        if kept:
            print(f"{PROG}: the month's report: mailprobe report --config {path}", flush=True)
    return code


async def _run_agent(config: Config, service: Any, opts: DemoOptions, workdir: Path) -> int:
    views = {r.name: RouteView() for r in config.routes}
    drained = asyncio.Event()  # set when a result leaves nothing in flight

    def feed(result: Probe) -> None:
        views[result.route].add(result)
        if not agent.inflight:
            drained.set()

    agent = Agent(config, sinks=[feed])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        runner = await start_agent(agent, listen_key="--listen")
        assert agent.http is not None  # noqa: S101 - the demo always serves HTTP
        print(f"{PROG}: metrics at http://{agent.http.address}/metrics", flush=True)
        note = "" if opts.state_dir is not None or opts.keep else (
            " (a temporary directory, removed on exit: --keep or --state-dir DIR keeps it)"
        )  # fmt: skip
        print(f"{PROG}: config, ledger and log in {workdir}{note}; Ctrl-C stops", flush=True)
        async with asyncio.TaskGroup() as tg:
            extras = [tg.create_task(_outage(service, o)) for o in opts.outages]
            extras.append(tg.create_task(_stop_when_asked(agent, stop, drained)))
            if opts.duration is not None:
                loop.call_later(opts.duration, stop.set)
            await _show(agent, views, runner, opts.live)
            for task in extras:
                task.cancel()
        await runner
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


async def _stop_when_asked(agent: Agent, stop: asyncio.Event, drained: asyncio.Event) -> None:
    """On Ctrl-C (or at --duration): let probes in flight arrive, briefly, then stop the agent."""
    await stop.wait()
    if agent.inflight:
        drained.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), _SETTLE)
    agent.stop()


async def _show(agent: Agent, views: dict[str, RouteView], runner: asyncio.Task[None],
                live: bool) -> None:  # fmt: skip
    if not live:
        while not runner.done():
            await asyncio.wait({runner}, timeout=2.0)
            print(f"{PROG}: {summary(views, samples(agent.registry))}", flush=True)
        return
    from rich.live import Live

    with Live(table(views, samples(agent.registry)), refresh_per_second=4,
              transient=False) as view:  # fmt: skip
        while not runner.done():
            await asyncio.wait({runner}, timeout=0.25)
            view.update(table(views, samples(agent.registry)))


def main_demo(args: Any) -> int:
    """CLI glue for `mailprobe demo`: one line and exit 2 for anything that keeps it from starting."""
    try:
        opts = options(args)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_demo(opts))
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
