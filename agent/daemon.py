"""The agent: schedules probes per route, watches mailboxes, tracks probes in flight, reports results.

Data flows one way: config -> scheduler -> probes -> results -> ledger/accounting -> sinks (log,
metrics). Every long-lived loop is a task in the agent's TaskGroup; stop() only sets an event, and
run() drains in-flight submissions within the configured grace before cancelling the rest.

A failed probe (refused submission, or a receive failure: late, lost, unreadable mailbox) is
followed by the next one after ``sla.confirm_retry`` rather than a whole interval, so accounting
can confirm or clear the failure quickly and a down period ends within seconds of the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from mailprobe.agent import __version__
from mailprobe.agent.bookkeeping import TICK_INTERVAL, Bookkeeping
from mailprobe.agent.clock import Clock, SystemClock
from mailprobe.agent.config import Account, Config, ImapEndpointConfig, Route, SmtpEndpointConfig
from mailprobe.agent.delays import DelaySplitter
from mailprobe.agent.http import MetricsServer
from mailprobe.agent.inflight import InFlight, Pending, Sighting
from mailprobe.agent.metrics import AccountingCollector, Metrics
from mailprobe.agent.results import ProbeResult, Status
from mailprobe.probes.errors import ProbeError
from mailprobe.probes.imap import Arrival, MailboxWatcher, WatchPolicy
from mailprobe.probes.imap_session import ImapEndpoint
from mailprobe.probes.message import build_probe
from mailprobe.probes.smtp import SmtpEndpoint, submit
from mailprobe.probes.tls import client_context

log = logging.getLogger(__name__)

ResultSink = Callable[[ProbeResult], None]
SWEEP_INTERVAL = 1.0


def smtp_endpoint(ep: SmtpEndpointConfig) -> SmtpEndpoint:
    """Config -> protocol-layer SMTP endpoint."""
    return SmtpEndpoint(
        host=ep.host,
        port=ep.port,
        security=ep.security,
        username=ep.username,
        password=ep.password(),
        tls_context=client_context(ep.ca_file, verify=ep.verify),
        timeout=ep.timeout,
        source_address=ep.source_address,
        helo_name=ep.helo_name,
    )


def imap_endpoint(ep: ImapEndpointConfig, address: str) -> ImapEndpoint:
    """Config -> protocol-layer IMAP endpoint."""
    return ImapEndpoint(
        host=ep.host,
        port=ep.port,
        security=ep.security,
        username=ep.username or address,
        password=ep.password() or "",
        tls_context=client_context(ep.ca_file, verify=ep.verify),
        timeout=ep.timeout,
        mailbox=ep.mailbox,
        source_address=ep.source_address,
    )


def describe(result: ProbeResult) -> str:
    """One log line (logfmt) for a probe outcome."""
    parts = [f"probe route={result.route} id={result.probe_id[:12]} status={result.status}"]
    if result.delay_seconds is not None:
        parts.append(f"delay={result.delay_seconds:.3f}s")
    if result.reason:
        parts.append(f"phase={result.phase} reason={result.reason}")
    if result.reply_code:
        parts.append(f"reply_code={result.reply_code}")
    parts.extend(f"{k}={v:.3f}s" for k, v in result.phases.items())
    return " ".join(parts)


@dataclass
class _Watch:
    account: str
    watcher: MailboxWatcher
    routes: tuple[str, ...]
    error: ProbeError | None = None


class Agent:
    """One agent process: route loops, mailbox watchers, the sweeper and the HTTP endpoint."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
        sinks: Iterable[ResultSink] = (),
        serve_http: bool = True,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.registry = registry or CollectorRegistry()
        self._rng = rng or random.Random()
        self._secret = config.agent.secret()
        accounts = [
            (name, proto)
            for name, acc in config.accounts.items()
            for proto in ("smtp", "imap")
            if getattr(acc, proto) is not None
        ]
        self.metrics = Metrics(
            self.registry, (r.name for r in config.routes), accounts, version=__version__
        )
        self.inflight = InFlight()
        self.extra_headers = dict(config.agent.extra_headers) or None
        self._splitter = DelaySplitter(config)
        self._retry = {r.name: asyncio.Event() for r in config.routes}
        self.books = Bookkeeping(config, self.clock.time, self._receive_failed)
        self.registry.register(AccountingCollector(lambda: self.books.snapshot, config.sla))
        self._sinks = [self._log_result, self._metrics_result, *sinks]
        self._waiters: dict[str, asyncio.Future[ProbeResult]] = {}
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once the HTTP endpoint is bound and loops are running
        self._sem = asyncio.Semaphore(config.agent.max_concurrency)
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._smtp = {
            name: smtp_endpoint(acc.smtp) for name, acc in config.accounts.items() if acc.smtp
        }
        self._watches: dict[str, _Watch] = {}
        for name, acc in config.accounts.items():
            routes = tuple(r.name for r in config.routes if r.to == name)
            if acc.imap is not None and routes:
                self._watches[name] = self._make_watch(name, acc, routes)
        self.http = (
            MetricsServer(
                self.registry, config.agent.listen_host, config.agent.listen_port, self.health
            )
            if serve_http
            else None
        )

    def _make_watch(self, name: str, acc: Account, routes: tuple[str, ...]) -> _Watch:
        assert acc.imap is not None  # noqa: S101 - callers check
        ep = acc.imap
        policy = WatchPolicy(idle=ep.idle, poll_interval=ep.poll_interval, move_to=ep.move_to)

        def on_state(up: bool, error: ProbeError | None) -> None:
            self._watch_state(name, up, error)

        watcher = MailboxWatcher(
            imap_endpoint(ep, acc.address),
            self._secret,
            self._on_arrival,
            on_state,
            policy=policy,
            clock=self.clock.time,
        )
        return _Watch(name, watcher, routes)

    # -- lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the agent to stop (safe from a signal handler)."""
        self._stopping.set()

    def health(self) -> dict[str, object]:
        """What /healthz reports."""
        watchers = {name: w.watcher.up for name, w in self._watches.items()}
        return {
            "status": "ok" if all(watchers.values()) else "degraded",
            "imap": watchers,
            "in_flight": len(self.inflight),
        }

    async def run(self) -> None:
        """Run until stop(): start everything, then drain and cancel within the grace period."""
        try:
            # Before any watcher runs, so probes sent before a restart are matched on arrival.
            self._track(self.books.open())
            if self.http is not None:
                await self.http.start()
                log.info("serving metrics on http://%s/metrics", self.http.address)
            await self._run_tasks()
        finally:
            try:
                if self.http is not None:
                    await self.http.stop()
            finally:
                self.books.close()
        log.info("stopped")

    def _track(self, pending: Iterable[Pending]) -> None:
        for probe in pending:
            self.inflight.add(probe)
            route = next((r for r in self.config.routes if r.name == probe.route), None)
            watch = self._watches.get(route.to) if route is not None else None
            if watch is not None:
                watch.watcher.expect(probe.probe_id, probe.sent_at)
        for route in self.config.routes:
            self.metrics.in_flight.labels(route.name).set(self.inflight.count(route.name))

    async def _run_tasks(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(w.watcher.run()) for w in self._watches.values()]
            tasks += [tg.create_task(self._route_loop(r)) for r in self.config.routes]
            tasks.append(tg.create_task(self._sweeper()))
            tasks.append(tg.create_task(self._ticker()))
            self.ready.set()
            await self._stopping.wait()
            log.info("stopping: draining %d submission(s)", self._active)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.config.agent.shutdown_grace)
            for task in tasks:
                task.cancel()
        await self._logout()

    async def run_watchers(self, accounts: Iterable[str]) -> None:
        """Run only the named accounts' watchers (probe-once), until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for name in accounts:
                tg.create_task(self._watches[name].watcher.run())

    def last_watch_error(self, account: str) -> ProbeError | None:
        """The last error of an account's watcher, if its session is down."""
        return self._watches[account].error

    async def close_watchers(self) -> None:
        """Log out of every watcher session."""
        await self._logout()

    async def _logout(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(w.watcher.close() for w in self._watches.values())), 2.0
            )

    async def wait_watchers_up(self, accounts: Iterable[str], timeout: float) -> bool:
        """Wait until the named accounts' watchers have a session (for probe-once and tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        names = list(accounts)
        while loop.time() < deadline:
            if all(self._watches[n].watcher.up for n in names):
                return True
            await asyncio.sleep(0.01)
        return False

    # -- scheduling ---------------------------------------------------------------------------
    async def _route_loop(self, route: Route) -> None:
        retry = self._retry[route.name]
        quick = min(route.interval, self.config.sla.confirm_retry)
        # Spread the first probes so routes do not all start in the same instant.
        await self._pause(self._rng.uniform(0, min(route.interval, 2.0)))
        while not self._stopping.is_set():
            started = self.clock.time()
            retry.clear()
            submitted = await self.probe(route) is not None
            jitter = route.jitter_seconds
            wait = route.interval + self._rng.uniform(-jitter, jitter)
            due = started + (wait if submitted else quick)
            # A receive failure seen meanwhile brings the next probe forward the same way.
            while await self._pause(due - self.clock.time(), retry):
                retry.clear()
                due = min(due, self.clock.time() + quick)

    def _receive_failed(self, route: str) -> None:
        event = self._retry.get(route)
        if event is not None:
            event.set()

    async def _pause(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        """Sleep on the agent's clock; True when `wake` cut it short (False on timeout or stop)."""
        sleeper = asyncio.ensure_future(self.clock.sleep(max(0.0, seconds)))
        stopper = asyncio.ensure_future(self._stopping.wait())
        waits = {sleeper, stopper}
        waker = asyncio.ensure_future(wake.wait()) if wake is not None else None
        if waker is not None:
            waits.add(waker)
        try:
            done, _ = await asyncio.wait(waits, return_when="FIRST_COMPLETED")
        finally:
            for task in waits:
                task.cancel()
        return waker in done and not self._stopping.is_set()

    async def _ticker(self) -> None:
        while True:
            await self.clock.sleep(TICK_INTERVAL)
            try:
                self.books.tick(self.clock.time())
            except Exception:
                # The ledger may be briefly unwritable (disk full, locked): keep probing.
                log.exception("ledger tick failed")

    async def _sweeper(self) -> None:
        while True:
            await self.clock.sleep(SWEEP_INTERVAL)
            for result in self.inflight.sweep(self.clock.time()):
                if result.status is Status.LOST:
                    for w in self._watches.values():
                        w.watcher.forget(result.probe_id)
                self._emit(result)
            for route in self.config.routes:
                self.metrics.in_flight.labels(route.name).set(self.inflight.count(route.name))

    async def probe(self, route: Route) -> str | None:
        """Submit one probe for `route`; return its id once the server accepted it."""
        async with self._sem:
            self._active += 1
            self._idle.clear()
            try:
                return await self._submit(route)
            finally:
                self._active -= 1
                if self._active == 0:
                    self._idle.set()

    async def _submit(self, route: Route) -> str | None:
        sender = self.config.accounts[route.from_]
        receiver = self.config.accounts[route.to]
        sent_at = self.clock.time()
        stamp, data = build_probe(
            secret=self._secret,
            route=route.name,
            sender=sender.address,
            recipient=receiver.address,
            sent_at=sent_at,
            extra_headers=self.extra_headers,
        )
        self.metrics.submitted(route.name)
        try:
            res = await submit(
                self._smtp[route.from_],
                sender.address,
                receiver.address,
                data,
                clock=self.clock.time,
            )
        except asyncio.CancelledError:
            raise
        except ProbeError as exc:
            now = self.clock.time()
            self.metrics.submission(route.name, {}, ok=False, now=now)
            log.warning("submit route=%s failed: %s", route.name, exc)
            self._emit(
                ProbeResult(
                    probe_id=stamp.probe_id,
                    route=route.name,
                    status=Status.FAILED,
                    sent_at=sent_at,
                    phase=exc.phase,
                    reason=exc.reason,
                    reply_code=exc.reply_code,
                )
            )
            return None
        except Exception:
            # Never let one odd server answer kill the route loop; map it to a generic reason.
            log.exception("submit route=%s: unexpected error", route.name)
            self._emit(
                ProbeResult(stamp.probe_id, route.name, Status.FAILED, sent_at, reason="error",
                            phase="smtp_submit")
            )  # fmt: skip
            return None
        try:
            self.books.submitted(stamp.probe_id, route.name, sent_at, res.accepted_at,
                                 phases=res.phases, reply_code=res.reply_code)  # fmt: skip
        except Exception:
            log.exception("ledger: could not record probe %s as sent", stamp.probe_id)
        self.metrics.submission(route.name, res.phases, ok=True, now=self.clock.time())
        if res.cert_not_after is not None:
            self.metrics.cert_expiry.labels(route.from_, "smtp").set(res.cert_not_after)
        self.inflight.add(
            Pending(
                probe_id=stamp.probe_id,
                route=route.name,
                sent_at=sent_at,
                accepted_at=res.accepted_at,
                overdue_after=route.overdue_after,
                lost_after=route.lost_after,
                phases=res.phases,
                reply_code=res.reply_code,
            )
        )
        self.metrics.in_flight.labels(route.name).set(self.inflight.count(route.name))
        watch = self._watches.get(route.to)
        if watch is not None:
            watch.watcher.expect(stamp.probe_id, sent_at)
        log.debug("submitted route=%s id=%s queue_id=%s", route.name, stamp.probe_id, res.queue_id)
        return stamp.probe_id

    extra_headers: dict[str, str] | None = None
    """Headers added to every probe (tests use this to have Postfix hold probes)."""

    async def round_trip(self, route: Route, timeout: float) -> ProbeResult:
        """Send one probe and wait for its final result (probe-once)."""
        loop = asyncio.get_running_loop()
        collected: asyncio.Future[ProbeResult] = loop.create_future()

        def catch_failure(result: ProbeResult) -> None:
            mine = result.status is Status.FAILED or result.probe_id in self._waiters
            if result.route == route.name and mine and not collected.done():
                collected.set_result(result)

        self._sinks.append(catch_failure)
        try:
            pid = await self.probe(route)
            if pid is not None:
                self._waiters[pid] = collected
            try:
                return await asyncio.wait_for(asyncio.shield(collected), timeout)
            except TimeoutError:
                pending = next((p for p in self.inflight.pending() if p.probe_id == pid), None)
                assert pending is not None  # noqa: S101 - still in flight, by construction
                return InFlight._result(pending, Status.OVERDUE, reason=None)
        finally:
            self._sinks.remove(catch_failure)

    # -- results ------------------------------------------------------------------------------
    def _on_arrival(self, arrival: Arrival) -> None:
        seen = Sighting(
            arrival.stamp.probe_id, arrival.arrived_at, arrival.internaldate, arrival.received
        )
        result = self.inflight.arrive(seen) or self.books.late_arrival(seen)
        if result is None:
            self.metrics.unmatched.inc()
            log.info(
                "probe id=%s route=%s arrived but was not in flight (sent %.3f)",
                arrival.stamp.probe_id[:12],
                arrival.stamp.route,
                arrival.stamp.sent_at,
            )
            return
        result, skew = self._splitter.apply(result)
        if skew is not None:
            self.metrics.skew.labels(result.route).set(skew)
        self._emit(result)

    def _watch_state(self, account: str, up: bool, error: ProbeError | None) -> None:
        watch = self._watches[account]
        watch.error = error
        for route in watch.routes:
            self.metrics.up.labels(route, "imap").set(1 if up else 0)
            if error is not None:
                self.metrics.failed.labels(route, "imap", error.reason).inc()
        if up:
            log.info("state account=%s imap=up", account)
            if watch.watcher.cert_not_after is not None:
                self.metrics.cert_expiry.labels(account, "imap").set(watch.watcher.cert_not_after)
        else:
            reason = error.reason if error else "error"
            log.warning("state account=%s imap=down reason=%s: %s", account, reason, error)

    def _emit(self, result: ProbeResult) -> None:
        try:
            fresh = self.books.record(result)
        except Exception:
            log.exception("ledger: could not record probe %s", result.probe_id)
            fresh = True
        if not fresh:
            log.debug("probe id=%s status=%s: already in the ledger", result.probe_id[:12],
                      result.status)  # fmt: skip
            return
        for sink in list(self._sinks):
            try:
                sink(result)
            except Exception:
                log.exception("result sink failed for probe %s", result.probe_id)

    def _log_result(self, result: ProbeResult) -> None:
        level = logging.INFO if result.status in (Status.OK, Status.LATE) else logging.WARNING
        log.log(level, describe(result))

    def _metrics_result(self, result: ProbeResult) -> None:
        self.metrics.result(result, self.clock.time())
        self.metrics.in_flight.labels(result.route).set(self.inflight.count(result.route))
