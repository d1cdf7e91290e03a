"""Several vantage points, one verdict: the quorum rule over each vantage's down periods.

The contract excludes faults of the customer's own equipment and lines. One agent cannot tell a
provider outage from its own network's; several agents in different places can. What each
vantage point measured (``VantageRecord``: when it observed, and when each base check of each
route was down, maintenance included) comes from its ledger (``mailprobe.agent.fleet_ledgers``)
or from Prometheus (``mailprobe.agent.fleet_prometheus``); this module merges them, to the
sub-second, the same way whatever the source:

- A base check (send, receive) of a route is down for the provider while at least ``k`` of the
  vantages that probe the route see it down at the same instant, ``k`` being the quorum
  (``fleet.quorum``, at most the number of such vantages: one vantage alone counts every fault it
  sees). Down seconds of a vantage count only while it observed (its agent was running).
- Down seconds of a vantage that fewer than ``k`` share are local: the customer's side,
  excluded from every figure and listed apart, per vantage.
- The fleet observes while at least ``k`` vantages observe: with fewer, a provider fault could
  not be confirmed, so that time is unobserved (it lowers coverage) rather than up.

Connectivity, the account's ``any`` and maintenance then follow from the merged base checks as
for one agent (``mailprobe.agent.checks.breakdown``), in ``mailprobe.agent.fleet_report``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mailprobe.agent.checks import BASE_CHECKS, Check
from mailprobe.agent.clauses import DelayStats
from mailprobe.agent.config_fleet import quorum_for
from mailprobe.agent.vantage import Vantage
from mailprobe.agent.windows import Span, intersect, normalize, subtract, total, union


@dataclass(frozen=True, slots=True)
class ScopeStats:
    """A vantage's probe figures of the report month for one scope (a route, or ``all``)."""

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    failed: int = 0
    delivery: DelayStats = field(default_factory=DelayStats)
    send: DelayStats = field(default_factory=DelayStats)
    receive: DelayStats = field(default_factory=DelayStats)


@dataclass(frozen=True, slots=True)
class VantageRecord:
    """What one vantage point measured, however it was read.

    ``down`` holds the base checks' confirmed down spans (inside maintenance windows too: the
    report applies the windows); ``stats`` the month's probe figures per scope; ``delays`` the
    month's measured delivery delays where the source has each probe (a ledger).
    """

    vantage: Vantage
    source: str  # the ledger file, or the Prometheus target (job/instance)
    observed: tuple[Span, ...]
    down: Mapping[tuple[str, Check], tuple[Span, ...]]
    routes: tuple[str, ...]
    stats: Mapping[str, ScopeStats] = field(default_factory=dict)
    delays: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def down_observed(self, route: str, check: Check) -> list[Span]:
        """Down spans of a base check while this vantage observed."""
        return intersect(normalize(self.down.get((route, check), ())), normalize(self.observed))


@dataclass(frozen=True, slots=True)
class FleetOutage:
    """A down period of a route's base check, and the vantages that saw it."""

    route: str
    check: str
    start: float
    end: float
    vantages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Merged:
    """The fleet's observation and down spans after the quorum, and the local faults apart."""

    quorum: int  # as configured; per route it is at most the vantages probing it
    observed: list[Span]
    down: dict[tuple[str, Check], list[Span]]
    provider: list[FleetOutage]
    local: list[FleetOutage]
    routes: list[str]


@dataclass(frozen=True, slots=True)
class VantageSummary:
    """One vantage of the fleet in the report month."""

    name: str
    site: str
    region: str
    source: str
    observed_seconds: float
    local_seconds: float


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """What the fleet report adds to the one-agent report."""

    source: str  # "ledgers" or "prometheus"
    quorum: int
    vantages: tuple[VantageSummary, ...]
    provider: tuple[FleetOutage, ...]
    local: tuple[FleetOutage, ...]
    precision: str


def at_least(k: int, groups: Sequence[Sequence[Span]]) -> list[Span]:
    """The time covered by at least ``k`` of the normalized span lists (``k`` >= 1)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    events = sorted(
        (t, delta) for spans in groups for s, e in spans for t, delta in ((s, 1), (e, -1))
    )  # at one instant an end (-1) sorts before a start: half-open spans do not overlap there
    out: list[Span] = []
    depth, since = 0, 0.0
    for at, delta in events:
        before = depth
        depth += delta
        if before < k <= depth:
            since = at
        elif depth < k <= before:
            out.append((since, at))
    return normalize(out)


def merge(records: Sequence[VantageRecord], quorum: int) -> Merged:
    """Apply the quorum rule to the vantages' records (see the module doc)."""
    names = [r.vantage.name for r in records]
    if len(set(names)) != len(names):
        raise ValueError(f"two vantage records have the same name: {sorted(names)}")
    routes = sorted({route for r in records for route in r.routes})
    observed = at_least(quorum_for(quorum, len(records)), [normalize(r.observed) for r in records])
    down: dict[tuple[str, Check], list[Span]] = {}
    provider: list[FleetOutage] = []
    local: list[FleetOutage] = []
    for route in routes:
        members = [r for r in records if route in r.routes]
        k = quorum_for(quorum, len(members))
        for check in BASE_CHECKS:
            seen = {r.vantage.name: r.down_observed(route, check) for r in members}
            shared = at_least(k, list(seen.values()))
            down[(route, check)] = shared
            provider += _outages(route, check, shared, seen)
            for name, spans in seen.items():
                local += _outages(route, check, subtract(spans, shared), {name: spans})
    local.sort(key=lambda o: (o.start, o.route, o.check, o.vantages))
    provider.sort(key=lambda o: (o.start, o.route, o.check))
    return Merged(quorum, observed, down, provider, local, routes)


def _outages(
    route: str, check: Check, spans: Iterable[Span], seen: Mapping[str, Sequence[Span]]
) -> list[FleetOutage]:
    out = []
    for span in spans:
        by = tuple(sorted(name for name, own in seen.items() if total(intersect(own, [span]))))
        out.append(FleetOutage(route, str(check), span[0], span[1], by))
    return out


def kth_worst(values: Sequence[float], k: int) -> float | None:
    """The figure at least ``k`` of the values reach (the k-th largest; k at most their number)."""
    if not values:
        return None
    return sorted(values, reverse=True)[quorum_for(k, len(values)) - 1]


def local_seconds(merged: Merged, vantage: str, start: float, end: float) -> float:
    """Seconds of ``[start, end)`` a vantage had a local fault of any route and check."""
    spans = union((o.start, o.end) for o in merged.local if vantage in o.vantages)
    return total(intersect(spans, [(start, end)])) if end > start else 0.0
