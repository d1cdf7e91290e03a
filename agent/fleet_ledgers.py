"""A vantage's record from its ledger: a copy of ``state_dir/ledger.sqlite3`` taken from its agent.

Each ledger is opened read-only. Its runs are when the vantage observed, its base-check
transitions when each check was down (a period still open ends with the ledger's evaluation,
and counts only while the agent ran), and its month figures are its own one-agent report's.
The vantage is named by the ledger's meta row (written at each start of its agent); a ledger
from before vantages is named after its file (``berlin.sqlite3`` -> ``berlin``, or the folder of
a ``ledger.sqlite3``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.checks import spans_from_transitions
from mailprobe.agent.fleet import ScopeStats, VantageRecord
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.report import ScopeReport, build_report
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.vantage import META_KEY, Vantage, from_meta
from mailprobe.agent.windows import OneOffWindow, RecurringWindow


class FleetLedgerError(Exception):
    """A ledger given to the fleet report cannot be used; the message names it."""


def fallback_name(path: Path) -> str:
    """The vantage name of a ledger without a vantage row: its file, or its folder."""
    return (path.parent.name or str(path)) if path.name == LEDGER_FILE else path.stem


def ledger_record(
    path: Path,
    sla: SlaConfig,
    month: str,
    *,
    windows: Sequence[OneOffWindow | RecurringWindow] = (),
    routes: Sequence[str] = (),
    now: float | None = None,
) -> VantageRecord:
    """What the ledger at ``path`` measured, for ``month`` and the rolling year before it."""
    try:
        ledger = Ledger.open_readonly(path)
    except FileNotFoundError:
        raise FleetLedgerError(f"--ledger {path}: no such file") from None
    except (OSError, sqlite3.Error) as exc:
        raise FleetLedgerError(f"--ledger {path}: cannot open it: {exc}") from None
    try:
        own = build_report(ledger, sla, month, windows=windows, routes=routes, now=now)
        until = own.evaluated_until
        down = spans_from_transitions(ledger.transitions(until), until)
        vantage = from_meta(ledger.meta(META_KEY)) or Vantage(fallback_name(path))
        return VantageRecord(
            vantage=vantage,
            source=str(path),
            observed=tuple(ledger.runs()),
            down={key: tuple(spans) for key, spans in down.items()},
            routes=tuple(ledger.routes()),
            stats={scope.route: _stats(scope) for scope in own.scopes},
            delays={scope.route: scope.delays for scope in own.scopes},
        )
    except sqlite3.Error as exc:
        raise FleetLedgerError(f"--ledger {path}: cannot read it: {exc}") from None
    finally:
        ledger.close()


def _stats(scope: ScopeReport) -> ScopeStats:
    figures = scope.figures
    return ScopeStats(
        scope.probes_sent, scope.probes_delivered, scope.probes_lost, scope.probes_failed,
        figures.delivery, figures.send, figures.receive,
    )  # fmt: skip


def ledger_records(
    paths: Sequence[Path],
    sla: SlaConfig,
    month: str,
    *,
    windows: Sequence[OneOffWindow | RecurringWindow] = (),
    routes: Sequence[str] = (),
    now: float | None = None,
) -> list[VantageRecord]:
    """One record per ledger; two ledgers of one vantage are refused (they would count twice)."""
    records: list[VantageRecord] = []
    for path in paths:
        record = ledger_record(path, sla, month, windows=windows, routes=routes, now=now)
        twin = next((r for r in records if r.vantage.name == record.vantage.name), None)
        if twin is not None:
            raise FleetLedgerError(
                f"--ledger {twin.source} and --ledger {path} are both vantage "
                f"{record.vantage.name!r}: give each vantage's ledger once"
            )
        records.append(record)
    return records
