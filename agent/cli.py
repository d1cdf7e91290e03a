"""The `mailprobe` command line: check-config, probe-once, run, demo, report.

Exit codes: 0 ok; 1 overdue (probe-once) ; 2 failed probe or unusable config (no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from mailprobe.agent import __version__, logs
from mailprobe.agent.config import Config, ConfigError, load_config
from mailprobe.agent.identity import IdentityError
from mailprobe.agent.logformat import LOG_FORMATS, LogFormat, setup_logging
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.probe_once import probe_once
from mailprobe.agent.report_command import add_report_arguments, main_report
from mailprobe.agent.runtime import Agent
from mailprobe.agent.sdnotify import Notifier, keep_alive, watchdog_interval
from mailprobe.agent.webconfig import WebConfig, WebConfigError, load_web_config

EXIT_OK, EXIT_WARN, EXIT_FAIL = 0, 1, 2
NAGIOS_STATE = {Status.OK: "OK", Status.LATE: "WARNING", Status.OVERDUE: "WARNING"}


def _setup_logging(level: str, fmt: LogFormat, config: Config | None = None) -> None:
    setup_logging(level, fmt)
    logs.install(level, config)  # quiet libraries, rate limit repeats, scrub secrets


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"mailprobe: config {path} is not usable:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(EXIT_FAIL) from None


def _load_web(path: Path) -> WebConfig:
    try:
        return load_web_config(path)
    except WebConfigError as exc:
        for problem in exc.problems:
            print(f"mailprobe: web config {path}: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_FAIL) from None


def result_json(result: Probe) -> dict[str, object]:
    """The JSON shape of a probe result (probe-once --json)."""
    status = "ok" if result.status is Status.OK else result.status.value
    if result.status is Status.LATE:
        status = "overdue"
    return {
        "route": result.route,
        "probe_id": result.probe_id,
        "status": status,
        "delay_seconds": result.delay_seconds,
        "sent_at": result.sent_at,
        "accepted_at": result.accepted_at,
        "arrived_at": result.arrived_at,
        "reason": result.reason,
        "phase": result.phase,
        "reply_code": result.reply_code,
        "phases": dict(result.phases),
        "send_delay_seconds": result.send_delay_seconds,
        "receive_delay_seconds": result.receive_delay_seconds,
    }


def nagios_line(result: Probe, warn: float, crit: float) -> str:
    """A Nagios/Icinga plugin line with perfdata."""
    state = NAGIOS_STATE.get(result.status, "CRITICAL")
    if result.status in (Status.OK, Status.LATE):
        text = f"route {result.route} delivered in {result.delay_seconds:.3f}s"
    elif result.status is Status.OVERDUE:
        text = f"route {result.route} probe not delivered yet (overdue)"
    else:
        text = f"route {result.route} failed in {result.phase}: {result.reason}"
        if result.reply_code:
            text += f" (reply {result.reply_code})"
    perf = []
    if result.delay_seconds is not None:
        perf.append(f"delay={result.delay_seconds:.6f}s;{warn:g};{crit:g};0")
    perf += [f"{name}={sec:.6f}s;;;0" for name, sec in result.phases.items()]
    return f"MAILPROBE {state} - {text}" + (" | " + " ".join(perf) if perf else "")


def exit_code(result: Probe) -> int:
    """0 ok, 1 overdue (or arrived late), 2 failed or lost."""
    if result.status is Status.OK:
        return EXIT_OK
    if result.status in (Status.OVERDUE, Status.LATE):
        return EXIT_WARN
    return EXIT_FAIL


def cmd_probe_once(args: argparse.Namespace) -> int:
    """One full round trip; print the outcome; exit 0/1/2."""
    config = _load(args.config)
    _setup_logging("warning" if not args.verbose else "debug", "text", config)
    try:
        config.route(args.route)
    except KeyError:
        names = ", ".join(r.name for r in config.routes)
        print(f"mailprobe: --route {args.route!r}: no such route (have: {names})", file=sys.stderr)
        return EXIT_FAIL
    route = config.route(args.route)
    timeout = args.timeout if args.timeout is not None else route.overdue_after
    result = asyncio.run(probe_once(config, args.route, timeout))
    if args.json:
        print(json.dumps(result_json(result), indent=2))
    else:
        print(nagios_line(result, warn=60.0, crit=route.overdue_after))
    return exit_code(result)


async def _run(config: Config, web: WebConfig | None) -> None:
    agent = Agent(config, web=web)
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
    helpers = [
        asyncio.ensure_future(_announce_ready(agent, systemd)),
        asyncio.ensure_future(keep_alive(systemd, watchdog_interval())),
    ]
    try:
        await agent.run()
    finally:
        stop()  # also when run() ended by an error: systemd must not wait for a ready agent
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        systemd.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _announce_ready(agent: Agent, systemd: Notifier) -> None:
    await agent.ready.wait()
    where = f"; metrics on {agent.http.url}/metrics" if agent.http is not None else ""
    systemd.send("READY=1", f"STATUS=probing {len(agent.config.routes)} route(s){where}")


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon."""
    config = _load(args.config)
    web_path = args.web_config_file or config.agent.web_config_file
    web = _load_web(web_path) if web_path is not None else None
    log_format: LogFormat = args.log_format or config.agent.log_format
    _setup_logging(config.agent.log_level, log_format, config)
    try:
        asyncio.run(_run(config, web))
    except (OSError, IdentityError, sqlite3.DatabaseError) as exc:
        print(f"mailprobe: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file; print a summary."""
    config = _load(args.file)
    if config.agent.web_config_file is not None:
        _load_web(config.agent.web_config_file)
    print(
        f"{args.file}: ok ({len(config.accounts)} account(s), {len(config.routes)} route(s): "
        + ", ".join(f"{r.name} {r.from_}->{r.to} every {r.interval:g}s" for r in config.routes)
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
    parser = argparse.ArgumentParser(
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
    p.add_argument("--timeout", type=float, help="seconds to wait (default: overdue_after)")
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
    p.add_argument("--print-config", action="store_true", help="show the config the demo uses")
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
