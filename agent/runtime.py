"""The agent: startup, the main loop of supervised tasks, and shutdown.

Startup opens the books (the ledger, and the probes still in flight from a previous run), binds the
HTTP endpoint and starts, each under the supervisor, a watcher per receiving mailbox, a loop per
route, a loop per webmail check (``mailprobe.agent.webmail_runner``), one per route that sends
anti-virus tests (``mailprobe.agent.antivirus``) and the ticker. Data flows one way: config -> scheduler -> submitter/watchers -> probe
records -> books (ledger, accounting, counts) -> listeners (log, metrics, the demo's view).

``stop()`` only sets an event (safe from a signal handler): submissions that started get
``shutdown_grace`` to finish, then every task is cancelled, the sessions are logged out and the
books closed. A second ``stop()`` skips the grace.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from mailprobe.agent import __version__
from mailprobe.agent.antivirus import AntivirusRunner
from mailprobe.agent.antivirus_test import AntivirusTest
from mailprobe.agent.books import SWEEP_INTERVAL, TICK_INTERVAL, Books, Listener
from mailprobe.agent.clause_metrics import ClauseMetrics
from mailprobe.agent.clock import Clock, SystemClock
from mailprobe.agent.config import Config, Route
from mailprobe.agent.delays import DelaySplitter
from mailprobe.agent.http import MetricsServer
from mailprobe.agent.identity import load_or_create
from mailprobe.agent.metrics import Metrics
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.scheduler import Scheduler
from mailprobe.agent.submitter import Submitter
from mailprobe.agent.supervisor import Supervisor
from mailprobe.agent.tokens import Tokens
from mailprobe.agent.vantage import META_KEY, of_config, register, to_meta
from mailprobe.agent.watchers import Watchers
from mailprobe.agent.webconfig import WebConfig
from mailprobe.agent.webmail_metrics import WebmailMetrics
from mailprobe.agent.webmail_runner import WebmailRunner
from mailprobe.agent.webmail_sample import WebmailSample

log = logging.getLogger(__name__)


class Agent:
    """One agent process: route loops, mailbox watchers, the ticker and the HTTP endpoint."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
        sinks: Iterable[Listener] = (),
        serve_http: bool = True,
        web: WebConfig | None = None,
        identity: str | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.registry = registry or CollectorRegistry()
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self.ready = asyncio.Event()  # set once the HTTP endpoint is bound and loops are running
        secret = config.agent.secret()
        self.secret = secret  # the one in use: a reload that finds another needs a restart
        # Who this agent is among those sharing a mailbox: kept in the state dir across restarts.
        self.identity = identity or load_or_create(config.agent.state_dir)
        # Bearer tokens for OAuth2 sign-in, one cache per source, shared by SMTP and IMAP.
        self.tokens = Tokens(self.clock.time)
        self.vantage = of_config(config.agent.vantage, self.identity)
        self._splitter = DelaySplitter(config)
        self.books = Books(config, self.clock.time, self._receive_failed, self._splitter.apply,
                           meta={META_KEY: to_meta(self.vantage)})  # fmt: skip
        accounts = [
            (name, proto)
            for name, acc in config.accounts.items()
            for proto in ("smtp", "imap")
            if getattr(acc, proto) is not None
        ]
        self.metrics = Metrics(
            self.registry, (r.name for r in config.routes), accounts, self.books, config.sla,
            version=__version__,
        )  # fmt: skip
        register(self.registry, self.vantage, lambda: self.config.fleet.quorum)
        self.submitter = Submitter(
            config, secret, self.clock, self._stopping, self.identity, self.books.attempting,
            self.books.abandoned, self.tokens, vantage=config.agent.vantage.name,
        )  # fmt: skip
        self.scheduler = Scheduler(
            config, self.clock, self._probe_route, self.books.unsettled, self._stopping, rng
        )
        self.clause_metrics = ClauseMetrics(self.registry, config)
        self.antivirus = AntivirusRunner(
            config,
            secret,
            self.identity,
            self.clock,
            self._antivirus_recorded,
            self.probe,
            self.tokens,
        )
        self.watchers = Watchers(
            config, secret, self.clock, self.books, self.metrics,
            lambda route: self.scheduler.wake(route, now=True), self.identity, self.tokens,
            self.antivirus,
        )  # fmt: skip
        self.webmail_metrics = WebmailMetrics(
            self.registry, (c.name for c in config.webmail), self.books, config.sla.webmail.limit
        )
        self.webmail = WebmailRunner(
            config.webmail, config.agent.state_dir, self.clock, self._webmail_loaded,
            self.books.webmail.unsettled, config.sla.confirm_retry, self._stopping,
        )  # fmt: skip
        self.books.listen(self._log)
        self.books.listen(lambda p: self.metrics.probe(p, self.clock.time()))
        for sink in sinks:
            self.books.listen(sink)
        self.http = (
            MetricsServer(
                self.registry, config.agent.listen_host, config.agent.listen_port, self.health, web
            )
            if serve_http
            else None
        )
        self.supervisor: Supervisor | None = None

    @property
    def inflight(self) -> int:
        """Probes accepted and not yet seen."""
        return len(self.books.inflight)

    @property
    def extra_headers(self) -> dict[str, str]:
        """Headers added to every probe (tests use this to have Postfix hold probes)."""
        return self.submitter.extra_headers

    @extra_headers.setter
    def extra_headers(self, headers: dict[str, str]) -> None:
        self.submitter.extra_headers = dict(headers)

    # -- lifecycle

    def stop(self) -> None:
        """Ask the agent to stop (safe from a signal handler); a second call skips the grace."""
        if self._stopping.is_set():
            self._forced.set()
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """stop() was called."""
        return self._stopping.is_set()

    def health(self) -> dict[str, object]:
        """What /healthz reports: the mailboxes, the ledger, the tasks."""
        watchers = self.watchers.health()
        ledger_error = self.books.ledger_error
        journal = self.books.journal
        problems = [f"imap {name} down" for name, up in watchers.items() if not up]
        if ledger_error:
            problems.append(f"ledger not writable: {ledger_error}")
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "imap": watchers,
            "ledger": {
                "writable": ledger_error is None,
                "error": ledger_error,
                "pending_writes": journal.pending if journal is not None else 0,
            },
            "in_flight": self.inflight,
        }

    async def run(self) -> None:
        """Run until stop(): start everything, then drain and cancel within the grace period."""
        try:
            # Before any watcher runs, so probes sent before a restart are matched on arrival.
            self.books.open()
            self.antivirus.restore(self.books.antivirus_history())
            if self.http is not None:
                await self.http.start()
                log.info("serving metrics on %s/metrics", self.http.url)
            await self._main()
        finally:
            try:
                if self.http is not None:
                    await self.http.stop()
            finally:
                self.books.close()
        log.info("stopped")

    async def _main(self) -> None:
        async with asyncio.TaskGroup() as group:
            sup = Supervisor(
                group,
                lambda name: self.metrics.task_restarts.labels(name).inc(),
                sleep=self.clock.sleep,
            )
            self.supervisor = sup
            for name, watch in self.watchers.watches.items():
                sup.start(f"watcher:{name}", watch.watcher.run)
            for route in self.config.routes:
                sup.start(f"route:{route.name}", functools.partial(self.scheduler.run, route))
            for route in self.antivirus.routes:
                sup.start(f"antivirus:{route.name}", functools.partial(self.antivirus.run, route))
            for check in self.config.webmail:
                sup.start(f"webmail:{check.name}", functools.partial(self.webmail.run, check))
            sup.start("ticker", self._ticker)
            self.ready.set()
            await self._stopping.wait()
            log.info("stopping: draining %d submission(s)", self.submitter.active)
            drained = asyncio.ensure_future(self.submitter.idle.wait())
            forced = asyncio.ensure_future(self._forced.wait())
            await asyncio.wait(
                {drained, forced},
                timeout=self.config.agent.shutdown_grace,
                return_when="FIRST_COMPLETED",
            )
            drained.cancel()
            forced.cancel()
            sup.cancel()
        await self.watchers.close()
        await self.tokens.close()

    async def _ticker(self) -> None:
        last_tick = self.clock.time()
        while True:
            await self.clock.sleep(SWEEP_INTERVAL)
            now = self.clock.time()
            if now - last_tick >= TICK_INTERVAL:
                last_tick = now
                self.books.tick(now)
            else:
                self.books.sweep(now)

    # -- probing

    async def load_webmail(self, name: str) -> WebmailSample | None:
        """Load webmail check ``name`` once now and record it (as its loop does)."""
        check = next(c for c in self.config.webmail if c.name == name)
        sample = await self.webmail.load(check)
        if sample is not None:
            self._webmail_loaded(sample)
        return sample

    def _antivirus_recorded(self, test: AntivirusTest) -> None:
        self.books.record_antivirus(test)
        self.clause_metrics.antivirus(test)

    def _webmail_loaded(self, sample: WebmailSample) -> None:
        self.books.record_webmail(sample)
        self.webmail_metrics.sample(sample)

    def _receive_failed(self, route: str) -> None:
        self.scheduler.wake(route)

    async def _probe_route(self, route: Route) -> bool:
        return (await self.probe(route)) is not None

    async def probe(self, route: Route, probe_id: str | None = None) -> Probe | None:
        """Submit one probe of ``route``: its record, or None if the agent is stopping."""
        submitted = await self.submitter.submit(route, probe_id)
        if submitted is None:
            return None
        record, res = submitted
        now = self.clock.time()
        self.metrics.submission(route.name, res.phases if res else {}, ok=res is not None, now=now)
        if res is not None and res.cert_not_after is not None:
            self.metrics.cert_expiry.labels(route.from_, "smtp").set(res.cert_not_after)
        self.books.submitted(record)
        if record.status is not Status.FAILED:
            self.watchers.wake(route.name)
        return record

    # -- results

    def _log(self, probe: Probe) -> None:
        if probe.clock_skew_seconds is not None:
            self.metrics.skew.labels(probe.route).set(probe.clock_skew_seconds)
        if probe.status is Status.SENT:
            level = logging.DEBUG
        elif probe.arrived:
            level = logging.INFO
        else:
            level = logging.WARNING
        log.log(level, probe.describe())
