"""`mailprobe demo`: the real agent against an embedded mail service, with trouble on demand.

The demo writes an ordinary config file (with password and secret files) into a temporary
directory, loads it through the same validation as `mailprobe run`, and runs the same Agent.
Only the mail service is embedded: aiosmtpd and pymap on 127.0.0.1, in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mailprobe.agent import logs
from mailprobe.agent.config import Config, load_config
from mailprobe.agent.durations import parse_duration
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.runtime import Agent

log = logging.getLogger(__name__)

DEMO_USERS = ("alice@demo.test", "bob@demo.test", "carol@demo.test")
DEMO_ROUTES = (("internal", "alice", "alice"), ("alice-to-bob", "alice", "bob"),
               ("carol-to-alice", "carol", "alice"))  # fmt: skip
_OUTAGE = re.compile(r"(?:(smtp|imap):)?([^:]+):([^:]+)")


@dataclass(frozen=True, slots=True)
class Outage:
    """One side of the mail service stops accepting connections for a while."""

    side: str
    after: float
    duration: float


def parse_outage(text: str) -> Outage:
    """`[smtp|imap:]AFTER:FOR`, e.g. `imap:30s:20s` or `1m:30s` (IMAP by default)."""
    match = _OUTAGE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"--outage {text!r}: use [smtp|imap:]AFTER:FOR, e.g. imap:30s:20s")
    return Outage(match.group(1) or "imap", parse_duration(match.group(2)),
                  parse_duration(match.group(3)))  # fmt: skip


def write_demo_config(
    workdir: Path, *, host: str, smtp_port: int, imap_port: int, ca_file: Path,
    passwords: dict[str, str], listen: str, interval: str,
) -> Path:  # fmt: skip
    """Write a complete, ordinary config (and its secret files) for the embedded service."""
    (workdir / "secret").write_text(secrets.token_urlsafe(32) + "\n")
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
            "ca_file": str(ca_file),
            "timeout": "5s",
        }
        accounts[name] = {"address": address, "smtp": {**common, "port": smtp_port},
                          "imap": {**common, "port": imap_port}}  # fmt: skip
    data = {
        "agent": {"listen": listen, "state_dir": str(workdir / "state"),
                  "secret_file": str(workdir / "secret"), "log_level": "info"},
        "accounts": accounts,
        "routes": [{"name": n, "from": f, "to": t, "interval": interval, "overdue_after": "30s",
                    "lost_after": "2m"} for n, f, t in DEMO_ROUTES],
    }  # fmt: skip
    path = workdir / "mailprobe.yaml"
    path.write_text(
        "# Written by `mailprobe demo`: the same shape a real deployment uses.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return path


class RouteView:
    """What the terminal view shows of one route, fed by the agent's results."""

    def __init__(self) -> None:
        self.delays: deque[float] = deque(maxlen=5)
        self.ok = self.failed = self.overdue = self.lost = 0
        self.last_reason = ""

    def add(self, result: Probe) -> None:
        if result.status in (Status.OK, Status.LATE) and result.delay_seconds is not None:
            self.ok += 1
            self.delays.append(result.delay_seconds)
        elif result.status is Status.FAILED:
            self.failed += 1
            self.last_reason = f"{result.phase}/{result.reason}"
        elif result.status is Status.OVERDUE:
            self.overdue += 1
        elif result.status is Status.LOST:
            self.lost += 1


def _table(agent: Agent, views: dict[str, RouteView]) -> Any:
    from rich.table import Table

    table = Table(title="mailprobe demo: routes", expand=True)
    for col in ("route", "smtp", "imap", "last delays (s)", "ok", "failed", "overdue", "lost",
                "last failure", "down s (month)", "observed s"):  # fmt: skip
        table.add_column(col)
    reg = agent.registry
    for name, view in views.items():
        ups = []
        for proto in ("smtp", "imap"):
            up = reg.get_sample_value("mailprobe_up", {"route": name, "protocol": proto})
            ups.append("[green]up[/]" if up else "[red]down[/]")
        delays = " ".join(f"{d:.3f}" for d in view.delays) or "-"
        # Month-so-far figures from the contract accounting (connectivity = send and receive).
        check = {"route": name, "check": "connectivity"}
        down = reg.get_sample_value("mailprobe_down_seconds_total", check) or 0.0
        observed = reg.get_sample_value("mailprobe_observed_seconds_total", check) or 0.0
        table.add_row(name, *ups, delays, str(view.ok), str(view.failed), str(view.overdue),
                      str(view.lost), view.last_reason, f"{down:.1f}", f"{observed:.0f}")  # fmt: skip
    return table


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


async def run_demo(
    *, fail_rate: float, delay: float, delay_fraction: float, outages: list[Outage],
    listen: str, interval: str, duration: float | None, live: bool, print_config: bool,
) -> int:  # fmt: skip
    """Start the embedded service and the agent; show the view until Ctrl-C or `duration`."""
    from mailprobe.agent.demo.service import EmbeddedMailService

    passwords = {a: secrets.token_urlsafe(12) for a in DEMO_USERS}
    service = EmbeddedMailService(passwords, fail_rate=fail_rate, delay=delay,
                                  delay_fraction=delay_fraction)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mailprobe-demo-") as tmp:
        workdir = Path(tmp)
        async with service:
            path = write_demo_config(
                workdir, host=service.host, smtp_port=service.smtp_port,
                imap_port=service.imap_port, ca_file=service.ca_file, passwords=passwords,
                listen=listen, interval=interval,
            )  # fmt: skip
            if print_config:
                print(path.read_text())
            config = load_config(path)
            with _log_to(workdir / "mailprobe.log", logging.INFO, config):
                return await _run_agent(config, service, outages, duration, live, workdir)


async def _run_agent(
    config: Config, service: Any, outages: list[Outage], duration: float | None, live: bool,
    workdir: Path,
) -> int:  # fmt: skip
    views = {r.name: RouteView() for r in config.routes}

    def feed(result: Probe) -> None:
        views[result.route].add(result)

    agent = Agent(config, sinks=[feed])
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, agent.stop)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(agent.run())
            await agent.ready.wait()
            assert agent.http is not None  # noqa: S101 - the demo always serves HTTP
            print(f"mailprobe demo: metrics at http://{agent.http.address}/metrics", flush=True)
            print(f"mailprobe demo: config and log in {workdir} (Ctrl-C to stop)", flush=True)
            extras = [tg.create_task(_outage(service, o)) for o in outages]
            if duration is not None:
                loop.call_later(duration, agent.stop)
            await _show(agent, views, runner, live)
            for task in extras:
                task.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("mailprobe demo: stopped cleanly", flush=True)
    return 0


async def _show(agent: Agent, views: dict[str, RouteView], runner: asyncio.Task[None],
                live: bool) -> None:  # fmt: skip
    if not live:
        while not runner.done():
            await asyncio.wait({runner}, timeout=2.0)
            summary = "; ".join(
                f"{n}: ok={v.ok} failed={v.failed} last={v.delays[-1]:.3f}s"
                if v.delays else f"{n}: ok={v.ok} failed={v.failed}"
                for n, v in views.items()
            )  # fmt: skip
            print(f"mailprobe demo: {summary}", flush=True)
        return
    from rich.live import Live

    with Live(_table(agent, views), refresh_per_second=4, transient=False) as view:
        while not runner.done():
            await asyncio.wait({runner}, timeout=0.25)
            view.update(_table(agent, views))


def main_demo(args: Any) -> int:
    """CLI glue for `mailprobe demo`."""
    try:
        outages = [parse_outage(o) for o in args.outage or []]
        duration = parse_duration(args.duration) if args.duration else None
        delay = parse_duration(args.delay) if args.delay else 0.0
        parse_duration(args.interval)
    except ValueError as exc:
        print(f"mailprobe demo: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.fail_rate <= 1:
        print("mailprobe demo: --fail-rate must be between 0 and 1", file=sys.stderr)
        return 2
    live = sys.stdout.isatty() if args.live is None else args.live
    return asyncio.run(
        run_demo(fail_rate=args.fail_rate, delay=delay, delay_fraction=args.delay_fraction,
                 outages=outages, listen=args.listen, interval=args.interval, duration=duration,
                 live=live, print_config=args.print_config)
    )  # fmt: skip
