"""`mailprobe report --ledger A --ledger B ...` and `mailprobe report --prometheus URL`: the month
of a fleet of vantage points under the quorum (``mailprobe.agent.fleet_report``).

The two ways read the same thing: from the vantages' ledgers (files copied from the agents), or
from the seconds counters the agents export, through the Prometheus HTTP query API (Prometheus,
Thanos, Mimir and VictoriaMetrics alike). ``--config`` gives the contract (sla, maintenance) and
the quorum (``fleet.quorum``; ``--quorum`` wins).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mailprobe.agent.config import Config
from mailprobe.agent.config_fleet import MAX_QUORUM
from mailprobe.agent.fleet import VantageRecord
from mailprobe.agent.fleet_access import AccessError, prometheus_access
from mailprobe.agent.fleet_ledgers import FleetLedgerError, ledger_records
from mailprobe.agent.fleet_prometheus import (
    DEFAULT_TIMEOUT,
    PrometheusError,
    PrometheusSource,
)
from mailprobe.agent.fleet_report import build_fleet_report
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.report import Report
from mailprobe.agent.windows import month_bounds, month_of, shift_month

LEDGER_PRECISION = (
    "Read from the vantages' ledgers: each vantage's down periods to the sub-second, merged "
    "instant by instant."
)
EXIT_FAIL = 2


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The fleet options of `mailprobe report`."""
    parser.add_argument(
        "--ledger", type=Path, action="append", metavar="FILE",
        help="a vantage point's ledger, copied from its agent; once per vantage: the fleet's "
        "report under the quorum",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus", metavar="URL",
        help="the fleet's report from the agents' counters in Prometheus (or Thanos, Mimir, "
        "VictoriaMetrics): the URL the query API is under, e.g. http://127.0.0.1:9090",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-match", metavar="MATCHERS", default="",
        help='label matchers for the agents\' series, e.g. \'job="mailprobe"\'',
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"timeout of each query (default {DEFAULT_TIMEOUT:g})",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-header", action="append", default=[], metavar="'NAME: VALUE'",
        help="a header for every query, e.g. Mimir's 'X-Scope-OrgID: tenant'; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-bearer-file", type=Path, metavar="FILE",
        help="a file holding the bearer token the query API wants",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-user", metavar="USER",
        help="basic-auth user (with --prometheus-password-file)",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-password-file", type=Path, metavar="FILE",
        help="a file holding the basic-auth password",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-ca-file", type=Path, metavar="FILE",
        help="CA certificates to verify an https:// query API with (default: the system's)",
    )  # fmt: skip
    parser.add_argument(
        "--quorum", type=int, metavar="K",
        help="vantage points that must see a fault at once (default: fleet.quorum, 2)",
    )  # fmt: skip


def wants_fleet(args: argparse.Namespace) -> bool:
    """The command asks for a fleet report."""
    return bool(args.ledger) or args.prometheus is not None


def _fail(message: str) -> int:
    print(f"mailprobe: {message}", file=sys.stderr)
    return EXIT_FAIL


def build_fleet(args: argparse.Namespace, config: Config) -> Report | int:
    """The fleet's report, or the exit code after saying in one line why there is none."""
    if args.ledger and args.prometheus is not None:
        return _fail("give --ledger (one per vantage) or --prometheus URL, not both")
    quorum = config.fleet.quorum if args.quorum is None else args.quorum
    if not 1 <= quorum <= MAX_QUORUM:
        return _fail(f"--quorum: {quorum} is not between 1 and {MAX_QUORUM}")
    now = time.time()
    routes = [r.name for r in config.routes]
    source: PrometheusSource | None = None
    try:
        if args.prometheus is not None:
            access = prometheus_access(
                args.prometheus_header, args.prometheus_bearer_file, args.prometheus_user,
                args.prometheus_password_file, args.prometheus_ca_file,
            )  # fmt: skip
            source = PrometheusSource(args.prometheus, match=args.prometheus_match,
                                      timeout=args.prometheus_timeout, access=access)  # fmt: skip
            month = args.month or _chosen(args, config, now, source)
            records: list[VantageRecord] = source.records(config.sla, month, now=now)
            precision, kind = source.precision(), "prometheus"
        else:
            month = args.month or _chosen(args, config, now, None)
            records = ledger_records(args.ledger, config.sla, month, windows=config.maintenance,
                                     routes=routes, now=now)  # fmt: skip
            precision, kind = LEDGER_PRECISION, "ledgers"
        if not records:
            return _fail(f"--prometheus {args.prometheus}: no mailprobe agent's series found"
                         + (f" matching {args.prometheus_match}" if args.prometheus_match else ""))  # fmt: skip
        return build_fleet_report(
            records, config.sla, month, quorum, source=kind, precision=precision,
            windows=config.maintenance, routes=routes, route=args.route, now=now,
        )  # fmt: skip
    except (FleetLedgerError, PrometheusError, AccessError) as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc))
    finally:
        if source is not None:
            source.close()


def _chosen(
    args: argparse.Namespace, config: Config, now: float, source: PrometheusSource | None
) -> str:
    """Without --month: the previous month, or the current one when no vantage has data of the
    previous; a line on stderr says which."""
    sla = config.sla
    previous = shift_month(month_of(now, sla.timezone), -1)
    start, end = month_bounds(previous, sla.timezone)
    if source is not None:
        has_data = source.observed_in(start, end)
    else:
        has_data = any(_probes_in(path, start, end) for path in args.ledger)
    month = previous if has_data else month_of(now, sla.timezone)
    why = (
        "the previous month"
        if has_data
        else f"the current month so far: no vantage has data of {previous}"
    )
    print(f"mailprobe: reporting {month} ({why}); choose with --month", file=sys.stderr)
    return month


def _probes_in(path: Path, start: float, end: float) -> bool:
    try:
        with Ledger.open_readonly(path) as ledger:
            return bool(ledger.probes(start, end))
    except Exception:  # noqa: BLE001 - the ledger's own error is reported when it is read
        return False
