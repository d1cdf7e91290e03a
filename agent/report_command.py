"""`mailprobe report`: a month's SLA report from the agent's ledger: text, JSON, Markdown, HTML, PDF.

The ledger is opened read-only, so a report can be taken while the agent runs without touching its
records (the open run counts up to its last heartbeat). Secrets are not needed to report, so they
are not checked. With ``--ledger`` (once per vantage) or ``--prometheus URL`` the report is a
fleet's, under the quorum (``mailprobe.agent.fleet_command``).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.config import Config
from mailprobe.agent.fleet_command import add_fleet_arguments, build_fleet, wants_fleet
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.report import Report, build_report
from mailprobe.agent.report_render import render
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.startup import config_or_exit
from mailprobe.agent.windows import month_bounds, month_of, parse_month, shift_month

FORMATS = ("text", "json", "markdown", "html", "pdf")
EXIT_OK, EXIT_FAIL = 0, 2


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `mailprobe report`."""
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument(
        "--month",
        help="YYYY-MM (default: the previous calendar month in the contract time zone, or the "
        "current one when the previous has no probes)",
    )
    parser.add_argument("--route", help="report one route only (default: account and routes)")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--output", type=Path, help="write the report here instead of stdout")
    add_fleet_arguments(parser)


def default_month(sla: SlaConfig, now: float) -> str:
    """The previous calendar month in the contract time zone."""
    return shift_month(month_of(now, sla.timezone), -1)


def chosen_month(ledger: Ledger, sla: SlaConfig, now: float, route: str | None) -> tuple[str, str]:
    """The month to report without --month, and why: the previous calendar month, or the
    current one when the previous has no probes of `route` (of any route when None), as after
    a first run."""
    previous = default_month(sla, now)
    start, end = month_bounds(previous, sla.timezone)
    if ledger.probes(start, end, route):
        return previous, "the previous month"
    scope = f"route {route}" if route else "any route"
    current = month_of(now, sla.timezone)
    return current, f"the current month so far: {previous} has no probes of {scope}"


def _fail(message: str) -> int:
    print(f"mailprobe: {message}", file=sys.stderr)
    return EXIT_FAIL


def main_report(args: argparse.Namespace) -> int:
    """Build and write the report; 2 with a one-line reason when it cannot be made."""
    config = config_or_exit(args.config, check_secrets=False)
    if args.format == "pdf" and args.output is None and sys.stdout.isatty():
        return _fail("--format pdf: give --output FILE, or redirect stdout (no PDF to a terminal)")
    if args.month is not None:
        try:
            parse_month(args.month)
        except ValueError as exc:
            return _fail(f"--month: {exc}")
    report = build_fleet(args, config) if wants_fleet(args) else _build(args, config)
    if isinstance(report, int):
        return report
    if args.format == "pdf":
        return _write_pdf(report, args.output)
    return _write_text(report, args.format, args.output)


def _write_text(report: Report, fmt: str, output: Path | None) -> int:
    if fmt == "html":
        # matplotlib is only imported when a chart is drawn.
        from mailprobe.agent.report_html import render_html

        text = render_html(report)
    else:
        text = render(report, fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text)
        except OSError as exc:
            return _fail(f"--output: cannot write {output}: {exc.strerror}")
    return EXIT_OK


def _write_pdf(report: Report, output: Path | None) -> int:
    """The HTML report printed by headless Chromium, to ``output`` or to a non-terminal stdout."""
    from mailprobe.agent.report_html import render_html
    from mailprobe.agent.report_pdf import PdfError, html_to_pdf

    try:
        data = html_to_pdf(render_html(report))
    except PdfError as exc:
        return _fail(str(exc))
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        return EXIT_OK
    try:
        output.write_bytes(data)
    except OSError as exc:
        return _fail(f"--output: cannot write {output}: {exc.strerror}")
    return EXIT_OK


def _build(args: argparse.Namespace, config: Config) -> Report | int:
    """The report from the ledger, or the exit code after saying why there is none."""
    path = config.agent.state_dir / LEDGER_FILE
    try:
        ledger = Ledger.open_readonly(path)
    except FileNotFoundError:
        return _fail(f"no ledger at {path}: has `mailprobe run` run with this config's state_dir?")
    except (OSError, sqlite3.Error) as exc:
        return _fail(f"cannot open the ledger {path}: {exc}")
    try:
        month = args.month
        if month is None:
            month, why = chosen_month(ledger, config.sla, time.time(), args.route)
            print(f"mailprobe: reporting {month} ({why}); choose with --month", file=sys.stderr)
        return build_report(
            ledger,
            config.sla,
            month,
            windows=config.maintenance,
            routes=[r.name for r in config.routes],
            route=args.route,
            kinds={r.name: config.route_kind(r) for r in config.routes},
            webmail=[c.name for c in config.webmail],
            antivirus=[r.name for r in config.routes if r.antivirus is not None],
        )
    except ValueError as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:
        return _fail(f"cannot read the ledger {path}: {exc}")
    finally:
        ledger.close()
