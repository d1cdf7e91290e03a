"""Series of the clauses beside mail delivery: route kinds and anti-virus tests.

``mailprobe_route_info{route,kind}`` is 1 for each configured route, ``kind`` internal or
external. An info series, not a ``kind`` label on every route series: the kind is a property of
the route, not a dimension of its measurements, so the series count stays as it is, a route whose
kind is corrected in the config keeps its series (a label would start new ones and break every
rate across the change), and a query that wants it joins
(``... * on (route) group_left (kind) mailprobe_route_info``).

``mailprobe_antivirus_tests_total{route,outcome}`` counts decided anti-virus tests of the routes
that send them, by outcome (pre-created at 0; it starts again from 0 when the agent restarts,
the ledger keeps every test).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from mailprobe.agent.antivirus_test import OUTCOMES, AntivirusTest
from mailprobe.agent.config import Config


class ClauseMetrics:
    """Route kinds and anti-virus outcomes in one registry."""

    def __init__(self, registry: CollectorRegistry, config: Config) -> None:
        info = Gauge(
            "mailprobe_route_info", "1 for each route, with its kind: internal or external.",
            ["route", "kind"], registry=registry,
        )  # fmt: skip
        for route in config.routes:
            info.labels(route.name, config.route_kind(route)).set(1)
        self.tests = Counter(
            "mailprobe_antivirus_tests",
            "Anti-virus tests (probes with the EICAR test file) by what the provider did.",
            ["route", "outcome"], registry=registry,
        )  # fmt: skip
        for route in config.routes:
            if route.antivirus is not None:
                for outcome in OUTCOMES:
                    self.tests.labels(route.name, outcome)
        self._counted: set[str] = set()

    def antivirus(self, test: AntivirusTest) -> None:
        """A test's record: counted once, when its outcome is known."""
        if test.decided and test.probe_id not in self._counted:
            self._counted.add(test.probe_id)
            self.tests.labels(test.route, test.outcome).inc()
