"""The `mailprobe` command line: check-config, probe-once, run, demo, report.

Exit codes: 0 ok; 1 overdue (probe-once); 2 failed probe, unusable config or arguments, or a
start-up failure (one line on stderr naming the problem, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from mailprobe.agent import __version__, logs
from mailprobe.agent.config import Config
from mailprobe.agent.config_fleet import vantage_name
from mailprobe.agent.durations import MAX_DURATION, parse_duration
from mailprobe.agent.identity import IdentityError
from mailprobe.agent.logformat import LOG_FORMATS, LogFormat, setup_logging
from mailprobe.agent.probe_once import exit_code, nagios_line, probe_once, result_json, thresholds
from mailprobe.agent.reload import Reloader
from mailprobe.agent.report_command import add_report_arguments, main_report
from mailprobe.agent.runtime import Agent
from mailprobe.agent.sdnotify import Notifier, keep_alive, watchdog_interval
from mailprobe.agent.startup import StartupError, config_or_exit, describe, fail, start_agent
from mailprobe.agent.webconfig import WebConfig, WebConfigError, load_web_config

EXIT_OK, EXIT_FAIL = 0, 2
_MAX_STARTUP = 10.0  # seconds: a start-up that seems longer is not this command's own


def _setup_logging(level: str, fmt: LogFormat = "text", config: Config | None = None) -> None:
    setup_logging(level, fmt)
    logs.install(level, config)  # quiet libraries, rate limit repeats, scrub secrets


def _load_web(path: Path) -> WebConfig:
    try:
        return load_web_config(path)
    except WebConfigError as exc:
        for problem in exc.problems:
            print(f"mailprobe: web config {path}: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_FAIL) from None


def _process_start() -> float:
    """This process's start on the time.monotonic() clock, so probe-once --timeout includes the
    interpreter's start-up and imports (about 0.4 s); now, where /proc does not tell."""
    now = time.monotonic()
    try:
        stat = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        ticks = int(stat[19])  # field 22, starttime: clock ticks after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    # An exec from a long-lived process keeps that process's start: then count from now.
    return now - age if 0 <= age <= _MAX_STARTUP else now


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too, like every other start-up problem."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_FAIL, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    """--timeout: seconds (`3`, `2.5`) or a duration (`90s`, `2m`), finite and positive."""
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < value <= MAX_DURATION:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds, more than 0, at most a year")
    return value


def cmd_probe_once(args: argparse.Namespace) -> int:
    """One full round trip; print the outcome; exit 0/1/2."""
    started = _process_start()  # --timeout counts from here
    config = config_or_exit(args.config)
    _setup_logging("warning" if not args.verbose else "debug", "text", config)
    try:
        route = config.route(args.route)
    except KeyError:
        names = ", ".join(r.name for r in config.routes)
        fail(f"--route {args.route!r}: no such route (have: {names})")
    result = asyncio.run(probe_once(config, args.route, args.timeout, since=started))
    if args.json:
        print(json.dumps(result_json(result), indent=2))
    else:
        warn, crit = thresholds(config, route)
        print(nagios_line(result, warn=warn, crit=crit))
    return exit_code(result)


async def _run(config: Config, web: WebConfig | None, path: Path, vantage: str | None) -> None:
    agent = Agent(config, web=web)
    # SIGHUP and POST /-/reload re-read the config file, with the command line's --vantage.
    reloader = Reloader(agent, path, prepare=lambda new: _with_vantage(new, vantage))
    if agent.http is not None:
        agent.http.reload = reloader.reload
    # Under systemd (Type=notify): READY=1 once /metrics is bound and the loops run, STOPPING=1
    # as soon as shutdown begins, WATCHDOG=1 pings while the event loop turns.
    systemd = Notifier.from_environment()
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            systemd.send("STOPPING=1")
        agent.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, reloader.wanted.set)
    helpers = [
        asyncio.ensure_future(_announce_ready(agent, systemd)),
        asyncio.ensure_future(keep_alive(systemd, watchdog_interval())),
        asyncio.ensure_future(reloader.run()),
    ]
    try:
        await (await start_agent(agent))
    finally:
        stop()  # also when run() ended by an error: systemd must not wait for a ready agent
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        systemd.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _announce_ready(agent: Agent, systemd: Notifier) -> None:
    await agent.ready.wait()
    where = f"; metrics on {agent.http.url}/metrics" if agent.http is not None else ""
    systemd.send("READY=1", f"STATUS=probing {len(agent.config.routes)} route(s){where}")


def _with_vantage(config: Config, name: str | None) -> Config:
    """The config with `run --vantage NAME` in place of agent.vantage.name."""
    if name is None:
        return config
    try:
        vantage_name(name)
    except ValueError as exc:
        fail(f"--vantage: {exc}")
    vantage = config.agent.vantage.model_copy(update={"name": name})
    return config.model_copy(update={"agent": config.agent.model_copy(update={"vantage": vantage})})


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon."""
    config = _with_vantage(config_or_exit(args.config), args.vantage)
    web_path = args.web_config_file or config.agent.web_config_file
    web = _load_web(web_path) if web_path is not None else None
    log_format: LogFormat = args.log_format or config.agent.log_format
    _setup_logging(config.agent.log_level, log_format, config)
    try:
        asyncio.run(_run(config, web, args.config, args.vantage))
    except StartupError as exc:
        fail(f"cannot start: {exc}")
    except IdentityError as exc:
        fail(f"cannot start: {exc}")
    except OSError as exc:  # the identity file in a state dir that cannot be made, say
        fail(f"cannot start: {describe(exc, config) or exc}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file; print a summary."""
    config = config_or_exit(args.file)
    if config.agent.web_config_file is not None:
        _load_web(config.agent.web_config_file)
    routes = []
    for r in config.routes:
        text = f"{r.name} {r.from_}->{r.to} every {r.interval:g}s, {config.route_kind(r)}"
        if r.antivirus is not None:
            text += f", anti-virus test every {r.antivirus.every:g}s"
        routes.append(text)
    webmail = "".join(
        f"; webmail {c.name} ({c.mode}) every {c.interval:g}s" for c in config.webmail
    )
    print(
        f"{args.file}: ok ({len(config.accounts)} account(s), {len(config.routes)} route(s): "
        + "; ".join(routes)
        + webmail
        + ")"
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded demo."""
    from mailprobe.agent.demo import INSTALL_HINT, missing_extra

    missing = missing_extra()
    if missing:
        print(f"mailprobe demo needs the demo extra ({', '.join(missing)} missing): "
              f"{INSTALL_HINT}", file=sys.stderr)  # fmt: skip
        return EXIT_FAIL
    from mailprobe.agent.demo.command import main_demo

    return main_demo(args)


def cmd_report(args: argparse.Namespace) -> int:
    """The monthly SLA report from the ledger."""
    return main_report(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = _Parser(
        prog="mailprobe",
        description="Probe a mail service end to end and check its written service guarantee.",
    )
    parser.add_argument("--version", action="version", version=f"mailprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("probe-once", help="one round trip; Nagios-compatible output and exit code")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--route", required=True)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="bound on the whole run: connect, send, wait, log out (default: the IMAP "
                        "timeout to connect, then overdue_after for delivery)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_probe_once)

    p = sub.add_parser("demo", help="run the agent against an embedded mail service")
    p.add_argument(
        "--fail-rate", type=float, default=0.0, help="refuse submissions with probability P"
    )
    p.add_argument("--delay", help="hold deliveries for this long, e.g. 5s")
    p.add_argument("--delay-fraction", type=float, default=0.3, help="share of deliveries held")
    p.add_argument("--outage", action="append", metavar="[smtp|imap:]AFTER:FOR",
                   help="stop accepting connections after AFTER for FOR (repeatable)")  # fmt: skip
    p.add_argument("--interval", default="5s", help="probe interval per route (default 5s)")
    p.add_argument("--listen", default="127.0.0.1:9478", help="HTTP address for /metrics")
    p.add_argument("--duration", help="stop by itself after this long")
    p.add_argument("--print-config", action="store_true",
                   help="print the config the demo would use and exit")  # fmt: skip
    p.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="keep config, ledger and log in DIR (default: a temporary directory)")  # fmt: skip
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory on exit")  # fmt: skip
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="terminal view (default: when stdout is a terminal)")  # fmt: skip
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run the agent (daemon)")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--web.config.file", dest="web_config_file", type=Path, metavar="FILE",
                   help="TLS and basic auth for /metrics, in the Prometheus exporter-toolkit "
                        "format (default: agent.web_config_file)")  # fmt: skip
    p.add_argument("--log-format", choices=LOG_FORMATS,
                   help="text lines or JSON lines (default: agent.log_format, text)")  # fmt: skip
    p.add_argument("--vantage", metavar="NAME",
                   help="the vantage point this agent probes from (default: agent.vantage.name, "
                        "else the agent's identity)")  # fmt: skip
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="the monthly SLA report from the ledger")
    add_report_arguments(p)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mailprobe` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
