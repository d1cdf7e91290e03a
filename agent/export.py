"""What /metrics serves of the books: the accounting's totals and the probe counts, each passed
once through the floors (``mailprobe.agent.floors``) so that no exported counter ever goes down.

Seconds are taken whole on each refresh (a tick, or a new transition); counts on every new
record, so the probe counters are current at each scrape. The floors reach ``exported.json``
before the figures that needed them are served; when that file cannot be written the figures
are still served and ``error`` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from mailprobe.agent.accounting import Snapshot
from mailprobe.agent.checks import Check, CheckTotals
from mailprobe.agent.floors import Floors
from mailprobe.agent.tally import COUNTED, Tally

log = logging.getLogger(__name__)

EXPORTED_FILE = "exported.json"
_KINDS = ("observed", "down", "maintenance")
_SECONDS = {k: f"mailprobe_{k}_seconds_total" for k in _KINDS}
_MONTH_SECONDS = {k: f"mailprobe_contract_month_{k}_seconds" for k in _KINDS}


@dataclass(frozen=True, slots=True)
class Exported:
    """What the metrics serve of the books, floored: it never goes down between scrapes."""

    at: float
    seconds: Mapping[tuple[str, Check], CheckTotals]
    up: Mapping[tuple[str, Check], bool]
    over_max: Mapping[str, float]
    maintenance_active: Mapping[str, bool]
    month: str
    month_start: float
    month_seconds: Mapping[tuple[str, Check], CheckTotals]
    month_over_max: Mapping[str, float]
    counts: Mapping[tuple[str, str], float] = field(default_factory=dict)
    failures: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    # Lone failures a quick retry cleared, this run (not in the ledger: they start again at 0).
    glitches: Mapping[tuple[str, Check], int] = field(default_factory=dict)


class Export:
    """The floored figures of the configured routes, refreshed from snapshots and counts."""

    def __init__(self, routes: Iterable[str], floors: Floors, snap: Snapshot, tally: Tally) -> None:
        self._routes = tuple(routes)
        self.floors = floors
        self.error: str | None = None
        self.exported = self._export(snap, tally)  # floors not loaded yet: nothing to commit

    def set_routes(self, routes: Iterable[str]) -> None:
        """The configured routes changed (a reload): the counts of these are exported."""
        self._routes = tuple(routes)

    def refresh(self, snap: Snapshot, tally: Tally) -> None:
        """New figures from a snapshot and the counts; the floors are written first."""
        exported = self._export(snap, tally)
        try:
            self.floors.commit(keep_month=exported.month)
            self.error = None
        except OSError as exc:
            if self.error is None:
                log.error("cannot write %s: %s", EXPORTED_FILE, exc)  # noqa: TRY400 - a full disk is no bug
            self.error = f"{type(exc).__name__}: {exc}"
        self.exported = exported

    def refresh_counts(self, tally: Tally) -> None:
        """New counts only (a probe record came), the seconds as they were."""
        counts, failures = self._counts(tally)
        self.exported = replace(self.exported, counts=counts, failures=failures)

    def _export(self, snap: Snapshot, tally: Tally) -> Exported:
        f = self.floors.apply
        seconds: dict[tuple[str, Check], CheckTotals] = {}
        month_seconds: dict[tuple[str, Check], CheckTotals] = {}
        for (route, check), t in snap.totals.items():
            labels = {"route": route, "check": str(check)}
            seconds[(route, check)] = CheckTotals(
                *(f(_SECONDS[k], labels, getattr(t, k)) for k in _KINDS)
            )
            m = snap.month_totals[(route, check)]
            month_labels = {**labels, "month": snap.month}
            month_seconds[(route, check)] = CheckTotals(
                *(f(_MONTH_SECONDS[k], month_labels, getattr(m, k)) for k in _KINDS)
            )
        over = {
            r: f("mailprobe_probes_over_max_total", {"route": r}, float(n))
            for r, n in snap.over_max.items()
        }
        month_over = {
            r: f("mailprobe_contract_month_probes_over_max", {"route": r, "month": snap.month},
                 float(n))
            for r, n in snap.month_over_max.items()
        }  # fmt: skip
        counts, failures = self._counts(tally)
        return Exported(
            at=snap.at,
            seconds=seconds,
            up=snap.up,
            over_max=over,
            maintenance_active=snap.maintenance_active,
            month=snap.month,
            month_start=snap.month_start,
            month_seconds=month_seconds,
            month_over_max=month_over,
            counts=counts,
            failures=failures,
            glitches=snap.glitches,
        )

    def _counts(
        self, tally: Tally
    ) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str, str], float]]:
        f = self.floors.apply
        counts = {
            (route, kind): f(f"mailprobe_probes_{kind}_total", {"route": route},
                             tally.get(route, kind))
            for route in self._routes for kind in COUNTED
        }  # fmt: skip
        failures: dict[tuple[str, str, str], float] = {}
        for route in self._routes:
            for (phase, reason), value in tally.failures(route).items():
                labels = {"route": route, "phase": phase, "reason": reason}
                failures[(route, phase, reason)] = f("mailprobe_probes_failed_total", labels, value)
        return counts, failures
