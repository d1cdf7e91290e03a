"""Prometheus metrics: names in base units, bounded labels, every configured route present at 0."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailprobe.agent.accounting import Snapshot
from mailprobe.agent.results import ProbeResult, Status
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import month_bounds, month_of
from mailprobe.probes.errors import PHASES, REASONS

# Bounds include the contract's 60 s average and 3600 s maximum, and reach past the maximum.
DELAY_BUCKETS = (
    0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400,
)  # fmt: skip
PHASE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SMTP_PHASES = ("smtp_connect", "smtp_tls", "smtp_auth", "smtp_submit")
PROTOCOLS = ("smtp", "imap")


class Metrics:
    """All series the agent exports, registered in the registry it is given."""

    def __init__(
        self,
        registry: CollectorRegistry,
        routes: Iterable[str],
        accounts: Iterable[tuple[str, str]] = (),
        version: str = "0",
    ) -> None:
        r = registry
        self.routes = tuple(routes)
        Info("mailprobe_build", "Version of the running agent.", registry=r).info(
            {"version": version}
        )
        self.sent = Counter(
            "mailprobe_probes_sent", "Probe submissions attempted.", ["route"], registry=r
        )
        self.failed = Counter(
            "mailprobe_probes_failed",
            "Probes that failed, by the phase that failed and a fixed reason.",
            ["route", "phase", "reason"],
            registry=r,
        )
        self.received = Counter(
            "mailprobe_probes_received", "Probes seen in the mailbox.", ["route"], registry=r
        )
        self.overdue = Counter(
            "mailprobe_probes_overdue",
            "Probes still undelivered when overdue_after passed.",
            ["route"],
            registry=r,
        )
        self.lost = Counter(
            "mailprobe_probes_lost",
            "Probes given up as lost after lost_after.",
            ["route"],
            registry=r,
        )
        self.late = Counter(
            "mailprobe_probes_late",
            "Probes that arrived after they had become overdue.",
            ["route"],
            registry=r,
        )
        self.unmatched = Counter(
            "mailprobe_probes_unmatched",
            "Verified probes that arrived but were not in flight (e.g. sent before a restart).",
            registry=r,
        )
        self.in_flight = Gauge(
            "mailprobe_probes_in_flight",
            "Probes submitted and not yet seen.",
            ["route"],
            registry=r,
        )
        self.delay = Histogram(
            "mailprobe_delivery_delay_seconds",
            "End-to-end delay from probe send time to seen in the mailbox.",
            ["route"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.send_delay = Histogram(
            "mailprobe_send_delay_seconds",
            "Submission accepted until the message left the sender's service.",
            ["route"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.receive_delay = Histogram(
            "mailprobe_receive_delay_seconds",
            "Received by the recipient's service until seen in the mailbox.",
            ["route"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.skew = Gauge(
            "mailprobe_clock_skew_seconds",
            "Largest backwards step between Received hops of the last probe.",
            ["route"],
            registry=r,
        )
        self.phase = Histogram(
            "mailprobe_smtp_phase_duration_seconds",
            "Duration of each SMTP submission phase.",
            ["route", "phase"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.up = Gauge(
            "mailprobe_up",
            "1 when the last attempt of this protocol on this route worked.",
            ["route", "protocol"],
            registry=r,
        )
        self.last_probe = Gauge(
            "mailprobe_last_probe_timestamp_seconds",
            "When the route last finished a submission attempt.",
            ["route"],
            registry=r,
        )
        self.last_success = Gauge(
            "mailprobe_last_success_timestamp_seconds",
            "When a probe of the route last arrived.",
            ["route"],
            registry=r,
        )
        self.cert_expiry = Gauge(
            "mailprobe_tls_cert_expiry_timestamp_seconds",
            "notAfter of the server certificate, Unix seconds.",
            ["account", "protocol"],
            registry=r,
        )
        for route in self.routes:
            for c in (self.sent, self.received, self.overdue, self.lost, self.late):
                c.labels(route)
            self.in_flight.labels(route).set(0)
            self.delay.labels(route)
            self.send_delay.labels(route)
            self.receive_delay.labels(route)
            self.skew.labels(route).set(0)
            for phase in SMTP_PHASES:
                self.phase.labels(route, phase)
            for proto in PROTOCOLS:
                self.up.labels(route, proto).set(0)
            for phase in PHASES:
                for reason in REASONS:
                    if _plausible(phase, reason):
                        self.failed.labels(route, phase, reason)
        for account, proto in accounts:
            self.cert_expiry.labels(account, proto)

    def submitted(self, route: str) -> None:
        """A submission attempt started."""
        self.sent.labels(route).inc()

    def result(self, result: ProbeResult, now: float) -> None:
        """Account one probe outcome."""
        route = result.route
        if result.status is Status.FAILED:
            self.failed.labels(route, result.phase or "smtp_submit", result.reason or "error").inc()
        elif result.status is Status.OVERDUE:
            self.overdue.labels(route).inc()
        elif result.status is Status.LOST:
            self.lost.labels(route).inc()
            self.failed.labels(route, "delivery", "lost").inc()
        else:
            if result.status is Status.LATE:
                self.late.labels(route).inc()
            self.received.labels(route).inc()
            self.last_success.labels(route).set(now)
            if result.delay_seconds is not None:
                self.delay.labels(route).observe(result.delay_seconds)
            if result.send_delay_seconds is not None:
                self.send_delay.labels(route).observe(result.send_delay_seconds)
            if result.receive_delay_seconds is not None:
                self.receive_delay.labels(route).observe(result.receive_delay_seconds)

    def submission(self, route: str, phases: dict[str, float], ok: bool, now: float) -> None:
        """Record the phases of a submission attempt and whether SMTP worked."""
        for phase, seconds in phases.items():
            if phase in SMTP_PHASES:
                self.phase.labels(route, phase).observe(seconds)
        self.up.labels(route, "smtp").set(1 if ok else 0)
        self.last_probe.labels(route).set(now)


def _plausible(phase: str, reason: str) -> bool:
    """Pre-create only label pairs that can occur, so dashboards show zeros, not gaps."""
    if phase == "delivery":
        return reason == "lost"
    if reason == "lost":
        return False
    if reason == "auth":
        return phase in ("smtp_auth", "imap")
    if reason == "rejected":
        return phase in ("smtp_submit", "smtp_auth")
    return True


_SECONDS = (
    ("observed", "mailprobe_observed_seconds",
     "Seconds the agent was running and observing this check (time not running is not counted)."),
    ("down", "mailprobe_down_seconds",
     "Seconds this check was confirmed down outside maintenance windows."),
    ("maintenance", "mailprobe_maintenance_seconds",
     "Seconds this check was down inside an agreed maintenance window."),
)  # fmt: skip


class AccountingCollector(Collector):
    """Contract accounting series, read from the books' latest snapshot at each scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot], sla: SlaConfig) -> None:
        self._snapshot = snapshot
        self._sla = sla

    def describe(self) -> Iterator[Metric]:
        """Names only, so the registry can refuse duplicates without taking a snapshot."""
        return iter(self._families(None))

    def collect(self) -> Iterator[Metric]:
        """One consistent snapshot per scrape."""
        return iter(self._families(self._snapshot()))

    def _families(self, snap: Snapshot | None) -> list[Metric]:
        seconds = {
            kind: CounterMetricFamily(name, doc, labels=["route", "check"])
            for kind, name, doc in _SECONDS
        }
        up = GaugeMetricFamily(
            "mailprobe_check_up",
            "1 while the check is up, 0 while it is confirmed down.",
            labels=["route", "check"],
        )
        over = CounterMetricFamily(
            "mailprobe_probes_over_max",
            "Accepted probes that passed the contract's delay maximum undelivered (counted once).",
            labels=["route"],
        )
        active = GaugeMetricFamily(
            "mailprobe_maintenance_active",
            "1 while the maintenance window is open.",
            labels=["window"],
        )
        target = GaugeMetricFamily(
            "mailprobe_sla_target_seconds",
            "Monthly limit per contract clause (the contract states minutes; exported in seconds).",
            labels=["clause"],
        )
        families: list[Metric] = [*seconds.values(), up, over, active, target]
        if snap is None:
            return families
        for (route, check), totals in sorted(snap.totals.items()):
            labels = [route, str(check)]
            seconds["observed"].add_metric(labels, totals.observed)
            seconds["down"].add_metric(labels, totals.down)
            seconds["maintenance"].add_metric(labels, totals.maintenance)
        for (route, check), is_up in sorted(snap.up.items()):
            up.add_metric([route, str(check)], 1.0 if is_up else 0.0)
        for route, count in sorted(snap.over_max.items()):
            over.add_metric([route], float(count))
        for window, is_open in sorted(snap.maintenance_active.items()):
            active.add_metric([window], 1.0 if is_open else 0.0)
        month = month_of(snap.at, self._sla.timezone)
        start, end = month_bounds(month, self._sla.timezone)
        target.add_metric(
            ["disconnection"], 60.0 * self._sla.disconnection_limit_minutes(end - start)
        )
        target.add_metric(["failure"], 60.0 * self._sla.failure_minutes)
        target.add_metric(["maintenance"], 60.0 * self._sla.maintenance_minutes)
        return families
