"""Prometheus metrics: names in base units, bounded labels, every configured route present at 0.

Two kinds of series. Counts and contract seconds are the books' (``BooksCollector``): read at each
scrape from ``Books.exported``, continued from the ledger after a restart and never lower than what
was exported before. Live figures are prometheus_client instruments updated as probes go:
histograms of delays and SMTP phases, the up/last-probe gauges, certificate expiry. Histograms
start again from zero when the agent restarts, as Prometheus expects of a restarted target.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailprobe.agent.books import Books
from mailprobe.agent.clauses import sla_targets
from mailprobe.agent.probe import Probe
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.tally import COUNTED
from mailprobe.agent.windows import month_bounds
from mailprobe.probes.errors import Phase, Reason

# Bounds include the contract's 60 s average and 3600 s maximum, and reach past the maximum.
DELAY_BUCKETS = (
    0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400,
)  # fmt: skip
PHASE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# From the watcher's finest bound (22 ms) to minutes (a probe that arrived past its looks).
ERROR_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SMTP_PHASES = tuple(p for p in Phase if p.submission)
PROTOCOLS = ("smtp", "imap")


def plausible(phase: Phase, reason: Reason) -> bool:
    """Label pairs that can occur, pre-created so dashboards show zeros, not gaps."""
    if phase is Phase.DELIVERY:
        return reason is Reason.LOST
    if reason is Reason.LOST:
        return False
    if reason is Reason.AUTH:
        return phase in (Phase.SMTP_AUTH, Phase.IMAP)
    if reason is Reason.REJECTED:
        return phase in (Phase.SMTP_SUBMIT, Phase.SMTP_AUTH)
    return True


class Metrics:
    """The live instruments, and the books' series, registered in the registry given."""

    def __init__(
        self,
        registry: CollectorRegistry,
        routes: Iterable[str],
        accounts: Iterable[tuple[str, str]],
        books: Books,
        sla: SlaConfig,
        version: str = "0",
    ) -> None:
        # _created series double the counters' size on /metrics and nothing reads them.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        r = registry
        self.routes = tuple(routes)
        Info("mailprobe_build", "Version of the running agent.", registry=r).info(
            {"version": version}
        )
        self.unmatched = Counter(
            "mailprobe_probes_unmatched",
            "Verified probes that arrived but were not ours to count (not in flight, not in the ledger).",
            registry=r,
        )
        self.reconnects = Counter(
            "mailprobe_imap_reconnects",
            "Mailbox sessions that ended and were opened again, by the reason the session ended.",
            ["account", "reason"],
            registry=r,
        )
        self.unremoved = Counter(
            "mailprobe_probes_unremoved",
            "Own probes a server would not let the watcher remove (unsupported or refused).",
            ["account", "why"],
            registry=r,
        )
        self.foreign = Counter(
            "mailprobe_foreign_probes",
            "Other agents' verified probes in a watched mailbox: seen, and removed once stale.",
            ["account", "action"],
            registry=r,
        )
        self.imap_commands = Counter(
            "mailprobe_imap_commands",
            "IMAP commands the mailbox watcher sent (its budget: imap.max_commands_per_*).",
            ["account"],
            registry=r,
        )
        self.task_restarts = Counter(
            "mailprobe_task_restarts",
            "Long-lived tasks of the agent that raised and were restarted.",
            ["task"],
            registry=r,
        )
        self.delay = self._delay("delivery", "End-to-end delay from probe send time to seen in the mailbox.", r)  # fmt: skip
        self.send_delay = self._delay("send", "Submission accepted until the message left the sender's service.", r)  # fmt: skip
        self.receive_delay = self._delay("receive", "Received by the recipient's service until seen in the mailbox.", r)  # fmt: skip
        self.arrival_error = Histogram(
            "mailprobe_arrival_error_seconds",
            "How far each arrival stamp can be off: half the bracket between the last look that "
            "did not see the probe and the one that did.",
            ["route"],
            buckets=ERROR_BUCKETS,
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
            self._precreate(route)
        for account, proto in accounts:
            self._precreate_account(account, proto)
        self._books = BooksCollector(books, self.routes, sla)
        r.register(self._books)

    def _histograms(self) -> tuple[Histogram, ...]:
        return (self.delay, self.send_delay, self.receive_delay, self.arrival_error)

    def _precreate(self, route: str) -> None:
        for histogram in self._histograms():
            histogram.labels(route)
        self.skew.labels(route).set(0)
        for phase in SMTP_PHASES:
            self.phase.labels(route, phase)
        for proto in PROTOCOLS:
            self.up.labels(route, proto).set(0)

    def _precreate_account(self, account: str, proto: str) -> None:
        self.cert_expiry.labels(account, proto)
        if proto == "imap":
            self.imap_commands.labels(account)
            for action in ("seen", "removed"):
                self.foreign.labels(account, action)

    def set_routes(self, routes: Iterable[str], accounts: Iterable[tuple[str, str]]) -> None:
        """A reload: series of new routes and accounts start at 0, a removed route's live series
        go (its books' seconds stay, as after a restart); nothing else is reset."""
        new = tuple(routes)
        for route in set(self.routes) - set(new):
            for histogram in self._histograms():
                histogram.remove(route)
            self.skew.remove(route)
            for phase in SMTP_PHASES:
                self.phase.remove(route, phase)
            for proto in PROTOCOLS:
                self.up.remove(route, proto)
            for gauge in (self.last_probe, self.last_success):
                gauge.remove(route)  # a label set never set is no error
        for route in new:
            if route not in self.routes:
                self._precreate(route)
        for account, proto in accounts:
            self._precreate_account(account, proto)
        self.routes = new
        self._books.routes = new

    @staticmethod
    def _delay(kind: str, doc: str, registry: CollectorRegistry) -> Histogram:
        return Histogram(
            f"mailprobe_{kind}_delay_seconds", doc, ["route"], buckets=DELAY_BUCKETS,
            registry=registry,
        )  # fmt: skip

    def probe(self, probe: Probe, now: float) -> None:
        """A probe's new record: arrivals feed the delay histograms."""
        if not probe.arrived:
            return
        route = probe.route
        self.last_success.labels(route).set(now)
        if probe.arrival_error_seconds is not None:
            self.arrival_error.labels(route).observe(probe.arrival_error_seconds)
        if probe.measured_delay is not None:
            self.delay.labels(route).observe(probe.measured_delay)
            if probe.receive_delay_seconds is not None:
                self.receive_delay.labels(route).observe(probe.receive_delay_seconds)
        if probe.send_delay_seconds is not None:
            self.send_delay.labels(route).observe(probe.send_delay_seconds)

    def submission(self, route: str, phases: Mapping[str, float], ok: bool, now: float) -> None:
        """Record the phases of a submission attempt and whether SMTP worked."""
        for phase, seconds in phases.items():
            if phase in SMTP_PHASES:
                self.phase.labels(route, phase).observe(seconds)
        self.up.labels(route, "smtp").set(1 if ok else 0)
        self.last_probe.labels(route).set(now)


_SECONDS = (
    ("observed", "mailprobe_observed_seconds",
     "Seconds the agent was running and observing this check (time not running is not counted)."),
    ("down", "mailprobe_down_seconds",
     "Seconds this check was confirmed down outside maintenance windows."),
    ("maintenance", "mailprobe_maintenance_seconds",
     "Seconds this check was down inside an agreed maintenance window."),
)  # fmt: skip
_COUNT_DOCS = {
    "sent": "Probe submissions attempted.",
    "received": "Probes seen in the mailbox.",
    "overdue": "Probes still undelivered when overdue_after passed.",
    "late": "Probes that arrived after they had become overdue.",
    "lost": "Probes given up as lost after lost_after.",
    "junked": "Probes delivered into the junk folder instead of the inbox (anti-spam).",
}


class BooksCollector(Collector):
    """The books' series, from one consistent ``Books.exported`` per scrape."""

    def __init__(self, books: Books, routes: tuple[str, ...], sla: SlaConfig) -> None:
        self._books = books
        self.routes = routes  # the configured routes (a reload changes them)
        self._sla = sla

    def collect(self) -> Iterator[Metric]:
        """Every books series, pre-created at 0 for each configured route."""
        books = self._books
        exp = books.exported
        yield from self._counts()
        seconds = {
            kind: CounterMetricFamily(name, doc, labels=["route", "check"])
            for kind, name, doc in _SECONDS
        }
        month = {
            kind: GaugeMetricFamily(
                f"mailprobe_contract_month_{kind}_seconds",
                f"{doc.rstrip('.')}, in the contract month to date (sla.timezone).",
                labels=["route", "check"],
            )
            for kind, _, doc in _SECONDS
        }
        for (route, check), totals in sorted(exp.seconds.items()):
            labels = [route, str(check)]
            m = exp.month_seconds[(route, check)]
            for kind in ("observed", "down", "maintenance"):
                seconds[kind].add_metric(labels, getattr(totals, kind))
                month[kind].add_metric(labels, getattr(m, kind))
        yield from seconds.values()
        yield from month.values()
        # The zone as a label, so a dashboard can name the month it shows.
        zone = [self._sla.timezone]
        start = GaugeMetricFamily(
            "mailprobe_contract_month_start_timestamp_seconds",
            "Start of the contract month the contract_month series count, in the zone labelled.",
            labels=["timezone"],
        )
        start.add_metric(zone, exp.month_start)
        end = GaugeMetricFamily(
            "mailprobe_contract_month_end_timestamp_seconds",
            "End of the contract month the contract_month series count, in the zone labelled.",
            labels=["timezone"],
        )
        month_end = month_bounds(exp.month, self._sla.timezone)[1] if exp.month else 0.0
        end.add_metric(zone, month_end)
        yield start
        yield end
        up = GaugeMetricFamily(
            "mailprobe_check_up",
            "1 while the check is up, 0 while it is confirmed down.",
            labels=["route", "check"],
        )
        for (route, check), is_up in sorted(exp.up.items()):
            up.add_metric([route, str(check)], 1.0 if is_up else 0.0)
        yield up
        glitches = CounterMetricFamily(
            "mailprobe_glitches",
            "Lone failures a retry within confirm_within cleared: no downtime (counted since the "
            "agent started).",
            labels=["route", "check"],
        )
        for (route, check), cleared in sorted(exp.glitches.items()):
            glitches.add_metric([route, str(check)], float(cleared))
        yield glitches
        over = CounterMetricFamily(
            "mailprobe_probes_over_max",
            "Accepted probes that passed the contract's delay maximum undelivered (counted once).",
            labels=["route"],
        )
        month_over = GaugeMetricFamily(
            "mailprobe_contract_month_probes_over_max",
            "Probes that passed the delay maximum in the contract month to date.",
            labels=["route"],
        )
        for route, count in sorted(exp.over_max.items()):
            over.add_metric([route], count)
            month_over.add_metric([route], exp.month_over_max.get(route, 0.0))
        yield over
        yield month_over
        active = GaugeMetricFamily(
            "mailprobe_maintenance_active", "1 while the maintenance window is open.",
            labels=["window"],
        )  # fmt: skip
        for window, is_open in sorted(exp.maintenance_active.items()):
            active.add_metric([window], 1.0 if is_open else 0.0)
        yield active
        target = GaugeMetricFamily(
            "mailprobe_sla_target_seconds",
            "Monthly limit per contract clause (the contract states minutes; exported in seconds).",
            labels=["clause"],
        )
        targets = sla_targets(self._sla, max(month_end - exp.month_start, 0.0) or 30 * 86400.0)
        for clause, seconds_limit in sorted(targets.items()):
            target.add_metric([clause], seconds_limit)
        yield target
        yield from self._health()

    def _counts(self) -> Iterator[Metric]:
        exp = self._books.exported
        for kind in COUNTED:
            family = CounterMetricFamily(f"mailprobe_probes_{kind}", _COUNT_DOCS[kind],
                                         labels=["route"])  # fmt: skip
            for route in self.routes:
                family.add_metric([route], exp.counts.get((route, kind), 0.0))
            yield family
        failed = CounterMetricFamily(
            "mailprobe_probes_failed",
            "Probes that failed, by the phase that failed and a fixed reason.",
            labels=["route", "phase", "reason"],
        )
        for route in self.routes:
            for phase in Phase:
                for reason in Reason:
                    if not plausible(phase, reason):
                        continue
                    if phase is Phase.DELIVERY:  # a lost probe is a failed delivery
                        value = exp.counts.get((route, "lost"), 0.0)
                    else:
                        value = exp.failures.get((route, phase, reason), 0.0)
                    failed.add_metric([route, phase, reason], value)
        yield failed
        flying = GaugeMetricFamily(
            "mailprobe_probes_in_flight", "Probes submitted and not yet seen.", labels=["route"]
        )
        for route in self.routes:
            flying.add_metric([route], float(self._books.inflight.count(route)))
        yield flying

    def _health(self) -> Iterator[Metric]:
        journal = self._books.journal
        healthy = GaugeMetricFamily(
            "mailprobe_ledger_writable",
            "1 while the ledger and the exported floors can be written, 0 while they cannot.",
        )
        healthy.add_metric([], 0.0 if self._books.ledger_error else 1.0)
        yield healthy
        pending = GaugeMetricFamily(
            "mailprobe_ledger_pending_writes",
            "Records kept in memory because the ledger could not take them yet.",
        )
        pending.add_metric([], float(journal.pending if journal else 0))
        yield pending
        errors = CounterMetricFamily(
            "mailprobe_ledger_write_errors", "Ledger writes that failed (and were kept to retry)."
        )
        errors.add_metric([], float(journal.failures if journal else 0))
        yield errors
