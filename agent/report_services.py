"""The report's figures beside mail: the webmail checks and the anti-virus tests, from the ledger.

Webmail: the month's loads per check and together, and each check's confirmed down periods
(its ``webmail`` transitions), observed and outside maintenance: outage minutes of webmail,
counted apart from mail connectivity. Anti-virus: the tests sent in the month, by outcome, and
for each test's clean follow-up its delay minus the route's median delay of the month's other
probes (the delay the scanning added).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailprobe.agent.antivirus_test import OUTCOMES, AntivirusTest
from mailprobe.agent.clauses import AntivirusStats, WebmailStats
from mailprobe.agent.probe import Probe
from mailprobe.agent.report_source import ServiceSource
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.webmail_books import down_spans, month_stats
from mailprobe.agent.windows import OneOffWindow, RecurringWindow, Span, clip, intersect


@dataclass(frozen=True, slots=True)
class WebmailOutage:
    """One confirmed down period of a webmail check, cut to the month."""

    check: str
    start: float
    end: float
    down_seconds: float


def webmail_figures(
    ledger: ServiceSource,
    sla: SlaConfig,
    span: Span,
    observed: Sequence[Span],
    windows: Sequence[OneOffWindow | RecurringWindow],
    checks: Sequence[str],
) -> tuple[dict[str, WebmailStats], list[WebmailOutage]]:
    """Per check (and ``""`` for all) the month's webmail figures; the checks' outages."""
    start, until = span
    down = down_spans(ledger.webmail_transitions(until), until)
    stats = month_stats(ledger.webmail(start, until), down, observed, windows, sla, span, checks)
    outages = [
        WebmailOutage(name, lo, hi, sum(b - a for a, b in intersect([(lo, hi)], observed)))
        for name, spans in sorted(down.items())
        for lo, hi in clip(spans, start, until)
    ]
    return stats, outages


def _extra_delays(tests: Sequence[AntivirusTest], probes: Sequence[Probe]) -> list[float]:
    follow = {t.follow_up for t in tests if t.follow_up is not None}
    by_id = {p.probe_id: p for p in probes}
    out: list[float] = []
    for test in tests:
        probe = by_id.get(test.follow_up or "")
        if probe is None or probe.measured_delay is None:
            continue
        clean = [p.measured_delay for p in probes if p.route == test.route
                 and p.probe_id not in follow and p.measured_delay is not None]  # fmt: skip
        if clean:
            out.append(probe.measured_delay - statistics.median(clean))
    return out


def antivirus_figures(
    tests: Sequence[AntivirusTest], probes: Sequence[Probe], configured: int
) -> AntivirusStats:
    """The figures of these tests (of one route, or all) and the month's probes of their routes."""
    counts = {o: sum(t.outcome is o for t in tests) for o in OUTCOMES}
    extra = _extra_delays(tests, probes)
    return AntivirusStats(
        routes=configured,
        outcomes=tuple((str(o), n) for o, n in counts.items()),
        pending=sum(not t.decided for t in tests),
        follow_ups=len(extra),
        extra_delay_average=sum(extra) / len(extra) if extra else None,
        extra_delay_maximum=max(extra) if extra else None,
    )


def antivirus_by_scope(
    ledger: ServiceSource, span: Span, probes: Sequence[Probe], routes: Mapping[str, bool]
) -> dict[str, AntivirusStats]:
    """Per route (``routes``: name -> tests configured) and ``""`` for all: the month's tests."""
    tests = ledger.antivirus(*span)
    out = {
        route: antivirus_figures([t for t in tests if t.route == route],
                                 [p for p in probes if p.route == route], int(on))
        for route, on in routes.items()
    }  # fmt: skip
    out[""] = antivirus_figures(tests, probes, sum(routes.values()))
    return out
