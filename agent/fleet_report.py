"""The fleet's monthly report: the vantages' records merged by the quorum, judged as one agent's.

The merged fleet (``mailprobe.agent.fleet.merge``) is handed to ``build_report`` in the shape of a
ledger (``_FleetSource``: the fleet's observed spans as runs, its down spans as base-check
transitions), so the figures, the clauses, the outages, the remedies and every renderer are the
one-agent report's. The probe figures, which a ledger has per probe but Prometheus only as
counters, come from the records' month figures instead:

- counts (sent, delivered, lost, failed) are the fleet's: the sum over vantages;
- each delay figure is one at least ``k`` vantages measured: the k-th worst vantage's average
  (with its count and maximum), and the k-th largest count of probes over the maximum, so a
  vantage's slow line alone breaches nothing.

The report then carries a ``FleetSummary``: the quorum, each vantage with its coverage and its
local (excluded) minutes, the provider outages with the vantages that saw them, and the local
faults, excluded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace

from mailprobe.agent.antivirus_test import AntivirusTest
from mailprobe.agent.checks import ALL_ROUTES, Transition
from mailprobe.agent.clauses import DelayStats, Scope, evaluate
from mailprobe.agent.config_fleet import quorum_for
from mailprobe.agent.fleet import (
    FleetOutage,
    FleetSummary,
    Merged,
    VantageRecord,
    VantageSummary,
    kth_worst,
    local_seconds,
    merge,
)
from mailprobe.agent.probe import Probe
from mailprobe.agent.remedies import remedies
from mailprobe.agent.report import Report, ScopeReport, accounting_rules, build_report
from mailprobe.agent.report_precision import precision_notes
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.webmail_sample import WebmailSample
from mailprobe.agent.windows import (
    OneOffWindow,
    RecurringWindow,
    Span,
    clip,
    days_between,
    month_bounds,
    normalize,
    total,
)


class _FleetSource:
    """The merged fleet, read the way ``build_report`` reads a ledger."""

    def __init__(self, merged: Merged) -> None:
        self._merged = merged

    def routes(self) -> list[str]:
        return list(self._merged.routes)

    def runs(self) -> list[Span]:
        return list(self._merged.observed)

    def transitions(self, until: float = math.inf) -> list[Transition]:
        out = [
            Transition(route, check, up, at)
            for (route, check), spans in self._merged.down.items()
            for span in spans
            for up, at in ((False, span[0]), (True, span[1]))
            if at < until
        ]
        return sorted(out, key=lambda t: t.at)

    def probes(self, start: float, end: float, route: str | None = None) -> list[Probe]:
        return []  # probe figures come from the records' month figures

    # Webmail and anti-virus are judged per agent (each vantage's own report), not by quorum.
    def webmail_transitions(self, until: float = math.inf) -> list[Transition]:
        return []

    def webmail(self, start: float, end: float) -> list[WebmailSample]:
        return []

    def antivirus(self, start: float = -math.inf, end: float = math.inf) -> list[AntivirusTest]:
        return []


def quorum_delay(stats: Sequence[DelayStats], k: int) -> DelayStats:
    """The delay figure at least ``k`` of the vantages measured (see the module doc)."""
    over = kth_worst([float(s.over_max) for s in stats], k)
    measured = [s for s in stats if s.count and s.average is not None]
    if not measured:
        return DelayStats(over_max=int(over or 0))
    ranked = sorted(measured, key=lambda s: s.average or 0.0, reverse=True)
    base = ranked[quorum_for(k, len(ranked)) - 1]
    return replace(base, over_max=int(over or 0))


def build_fleet_report(
    records: Sequence[VantageRecord],
    sla: SlaConfig,
    month: str,
    quorum: int,
    *,
    source: str,
    precision: str,
    windows: Sequence[OneOffWindow | RecurringWindow] = (),
    routes: Sequence[str] = (),
    route: str | None = None,
    now: float | None = None,
) -> Report:
    """The month's report of the fleet of ``records`` under the quorum."""
    if not records:
        raise ValueError("a fleet report needs at least one vantage")
    now = time.time() if now is None else now
    merged = merge(records, quorum)
    report = build_report(
        _FleetSource(merged),
        sla, month, windows=windows, routes=routes, route=route, now=now,
    )  # fmt: skip
    scopes = tuple(_fleet_scope(scope, records, sla, quorum) for scope in report.scopes)
    start, end = month_bounds(month, sla.timezone)
    until = report.evaluated_until
    summary = FleetSummary(
        source=source,
        quorum=quorum,
        vantages=tuple(
            VantageSummary(
                r.vantage.name, r.vantage.site, r.vantage.region, r.source,
                total(clip(normalize(r.observed), start, until)),
                local_seconds(merged, r.vantage.name, start, until),
            )
            for r in records
        ),
        provider=_in_month(merged.provider, start, until, route),
        local=_in_month(merged.local, start, until, route),
        precision=precision,
    )  # fmt: skip
    first = scopes[0].figures
    return replace(
        report,
        scopes=scopes,
        remedy=remedies(scopes[0].clauses, sla, month, len(days_between(start, end, sla.timezone))),
        rules=(*accounting_rules(sla), _quorum_rule(quorum)),
        precision=(*precision_notes(sla, first), precision),
        fleet=summary,
    )


def _fleet_scope(
    scope: ScopeReport, records: Sequence[VantageRecord], sla: SlaConfig, quorum: int
) -> ScopeReport:
    stats = [r.stats[scope.route] for r in records if scope.route in r.stats]
    k = quorum_for(quorum, len(stats))
    figures = replace(
        scope.figures,
        delivery=quorum_delay([s.delivery for s in stats], k),
        send=quorum_delay([s.send for s in stats], k),
        receive=quorum_delay([s.receive for s in stats], k),
    )
    delays = tuple(d for r in records for d in r.delays.get(scope.route, ()))
    kind = Scope.ACCOUNT if scope.route == ALL_ROUTES else Scope.ROUTE
    return replace(
        scope,
        figures=figures,
        probes_sent=sum(s.sent for s in stats),
        probes_delivered=sum(s.delivered for s in stats),
        probes_lost=sum(s.lost for s in stats),
        probes_failed=sum(s.failed for s in stats),
        clauses=evaluate(figures, sla, kind),
        delays=delays,
    )


def _in_month(
    outages: Sequence[FleetOutage], start: float, until: float, route: str | None
) -> tuple[FleetOutage, ...]:
    out = []
    for o in outages:
        if route is not None and o.route != route:
            continue
        lo, hi = max(o.start, start), min(o.end, until)
        if hi > lo:
            out.append(replace(o, start=lo, end=hi))
    return tuple(out)


def _quorum_rule(quorum: int) -> str:
    return (
        f"Several vantage points: a send or receive check is down for the provider while at "
        f"least {quorum} of the vantage points that probe the route (all of them, when fewer "
        "probe it) see it down at the same instant, to the sub-second. Down time fewer of them "
        "share is local to those vantages (the customer's own equipment and lines, which the "
        f"contract excludes) and is listed apart. The fleet observes while at least {quorum} "
        "vantages observe (all of them, when there are fewer). Probe counts are the fleet's "
        f"sum; a delay figure is one that {quorum} vantages reached (the k-th worst)."
    )
