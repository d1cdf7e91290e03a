"""The webmail checks' series: load time, up, failures by reason, certificate, month figures.

Live instruments (reset when the agent restarts, as Prometheus expects of a restarted target):
``mailprobe_webmail_load_seconds{webmail}`` (the loads that opened; buckets through the 10 s
limit and past it), ``mailprobe_webmail_up{webmail}`` (1 when the last load opened within the
limit), ``mailprobe_webmail_failures_total{webmail,reason}`` (WEBMAIL_REASONS, pre-created),
``mailprobe_webmail_over_limit_total{webmail}`` (loads that did not open within the limit, slow
or failed) and ``mailprobe_webmail_tls_cert_expiry_timestamp_seconds{webmail}``.

From the books, at each scrape, for the contract month to date (continued from the ledger
across a restart, equal to the report): ``mailprobe_contract_month_webmail_loads{webmail}``,
``..._over_limit{webmail}`` and ``..._down_seconds{webmail}`` (confirmed down outside
maintenance, apart from mail).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailprobe.agent.books import Books
from mailprobe.agent.webmail_sample import WebmailSample
from mailprobe.probes.errors import WEBMAIL_REASONS

LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 12.5, 15, 20, 30, 60)
"""Seconds: fine below the contract's 10 s, and past it, so the loads over it are counted."""


class WebmailMetrics:
    """The webmail instruments of one agent, every configured check present at 0."""

    def __init__(
        self, registry: CollectorRegistry, checks: Iterable[str], books: Books, limit: float
    ) -> None:
        r = registry
        self.checks = tuple(checks)
        self._limit = limit
        buckets = tuple(sorted({*LOAD_BUCKETS, limit}))
        self.load = Histogram(
            "mailprobe_webmail_load_seconds",
            "Time the webmail took to open (loads that opened; failures are counted apart).",
            ["webmail"], buckets=buckets, registry=r,
        )  # fmt: skip
        self.up = Gauge(
            "mailprobe_webmail_up", "1 when the last webmail load opened within the limit.",
            ["webmail"], registry=r,
        )  # fmt: skip
        self.failures = Counter(
            "mailprobe_webmail_failures", "Webmail loads that failed, by a fixed reason.",
            ["webmail", "reason"], registry=r,
        )  # fmt: skip
        self.over = Counter(
            "mailprobe_webmail_over_limit",
            "Webmail loads that did not open within the contract's limit (slower, or failed).",
            ["webmail"], registry=r,
        )  # fmt: skip
        self.cert_expiry = Gauge(
            "mailprobe_webmail_tls_cert_expiry_timestamp_seconds",
            "notAfter of the webmail's certificate (final host), Unix seconds.",
            ["webmail"], registry=r,
        )  # fmt: skip
        for check in self.checks:
            self.load.labels(check)
            self.up.labels(check).set(0)
            self.over.labels(check)
            for reason in WEBMAIL_REASONS:
                self.failures.labels(check, reason)
        if self.checks:
            r.register(_MonthCollector(books, self.checks))

    def sample(self, sample: WebmailSample) -> None:
        """A load's figures."""
        name = sample.check
        if sample.ok:
            self.load.labels(name).observe(sample.seconds)
        elif sample.reason is not None:
            self.failures.labels(name, sample.reason).inc()
        over = sample.over(self._limit)
        if over:
            self.over.labels(name).inc()
        self.up.labels(name).set(0 if over else 1)
        if sample.cert_not_after is not None:
            self.cert_expiry.labels(name).set(sample.cert_not_after)


class _MonthCollector(Collector):
    """The contract month's webmail figures, from the books at each scrape."""

    def __init__(self, books: Books, checks: tuple[str, ...]) -> None:
        self._books, self._checks = books, checks

    def collect(self) -> Iterator[Metric]:
        """Loads, loads over the limit and down seconds of each check, month to date."""
        books = self._books
        now = books.exported.at
        stats = books.webmail.month(now, books.acc.observed_spans())
        loads = GaugeMetricFamily(
            "mailprobe_contract_month_webmail_loads",
            "Webmail loads in the contract month to date (sla.timezone).", labels=["webmail"],
        )  # fmt: skip
        over = GaugeMetricFamily(
            "mailprobe_contract_month_webmail_over_limit",
            "Webmail loads that did not open within the limit, in the contract month to date.",
            labels=["webmail"],
        )  # fmt: skip
        down = GaugeMetricFamily(
            "mailprobe_contract_month_webmail_down_seconds",
            "Seconds the webmail check was confirmed down outside maintenance, contract month "
            "to date (apart from mail connectivity).",
            labels=["webmail"],
        )  # fmt: skip
        for check in self._checks:
            figures = stats[check]
            loads.add_metric([check], float(figures.samples))
            over.add_metric([check], float(figures.over_limit))
            down.add_metric([check], figures.down_seconds)
        yield loads
        yield over
        yield down
