"""The receiving mailboxes: one watcher per account that routes deliver to, wired to the books.

A verified probe seen by a watcher becomes a sighting for the books. A watcher's state becomes the
mailbox state of each route into it: a failed attempt to open the mailbox is a receive down-sample
of those routes from the moment the mailbox went away; the watcher back up is recorded too, and the
routes are probed at once, so the first probe sent after the mailbox came back ends the outage. An
open session that ends and reconnects is counted as a reconnect, not as a failure. Probes of
other agents sharing the mailbox (same secret, another identity) are left alone, and counted.
Anti-virus tests (``mailprobe.agent.antivirus``) are fetched whole and go to their runner, never
to the books; one found in the junk folder is ``quarantined`` there.
A reload (``reconfigure``) starts and stops watchers as the routes into each mailbox change.

Each watcher gets the account's command budget (``imap.max_commands_per_probe`` and
``max_commands_per_minute``) and its junk folder; its sparse checks (the junk folder among them)
end well inside ``sla.receive_deadline``, so a probe filed as spam is found while its receive
sample is still open: it was delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailprobe.agent.antivirus import AntivirusRunner
from mailprobe.agent.books import Books
from mailprobe.agent.clock import Clock
from mailprobe.agent.config import Config
from mailprobe.agent.endpoints import imap_endpoint
from mailprobe.agent.metrics import Metrics
from mailprobe.agent.probe import Sighting
from mailprobe.agent.tokens import Tokens
from mailprobe.probes.errors import ProbeError, Reason
from mailprobe.probes.imap import Arrival, MailboxWatcher, WatchHooks, WatchPolicy, WatchState
from mailprobe.probes.poll import Budget, Sparse

log = logging.getLogger(__name__)
SPARSE_UNTIL = 240.0
"""Seconds after sending of the last sparse check (junk folder), or 80 % of the receive deadline."""


@dataclass
class Watch:
    """One account's watcher and the routes that deliver to it."""

    account: str
    watcher: MailboxWatcher
    routes: frozenset[str]
    error: ProbeError | None = None
    away: bool = False  # an attempt to open the mailbox failed and none has worked since


class Watchers:
    """Every receiving mailbox of the config."""

    def __init__(
        self,
        config: Config,
        secret: bytes,
        clock: Clock,
        books: Books,
        metrics: Metrics,
        on_back: Callable[[str], None],
        identity: str | None = None,
        tokens: Tokens | None = None,
        tests: AntivirusRunner | None = None,
    ) -> None:
        self._tests = tests
        self._books = books
        self._metrics = metrics
        self._on_back = on_back
        self._clock = clock
        self._secret = secret
        self._identity = identity
        self._tokens = tokens
        self.watches: dict[str, Watch] = {}
        self._by_route: dict[str, Watch] = {}
        self._config = config
        for name, routes in self._receiving(config).items():
            self.watches[name] = self._watch(config, name, routes)
        self._index()

    @staticmethod
    def _receiving(config: Config) -> dict[str, frozenset[str]]:
        """Each account that routes deliver to and has IMAP: the routes into it."""
        out = {}
        for name, acc in config.accounts.items():
            routes = frozenset(r.name for r in config.routes if r.to == name)
            if acc.imap is not None and routes:
                out[name] = routes
        return out

    def _watch(self, config: Config, name: str, routes: frozenset[str]) -> Watch:
        acc = config.accounts[name]
        ep = acc.imap
        assert ep is not None  # noqa: S101 - only receiving accounts with IMAP get here
        budget = Budget(ep.max_commands_per_probe, ep.max_commands_per_minute)
        policy = WatchPolicy(
            idle=ep.idle,
            poll_interval=ep.poll_interval,
            budget=budget,
            sparse=Sparse.within(budget, min(SPARSE_UNTIL, 0.8 * config.sla.receive_deadline)),
            move_to=ep.move_to,
            # While a mailbox is away, a reconnect attempt at least every confirm_retry (its
            # backoff has up to 20 % jitter on top) tells its comeback that closely.
            reconnect_max=max(1.0, min(60.0, config.sla.confirm_retry / 1.2)),
            foreign_probe_max_age=config.agent.foreign_probe_max_age,
            watch_junk=ep.watch_junk,
            junk_folder=ep.junk_folder,
        )
        # The state callback is this watch's, not the account's: after a reload replaced it,
        # the old watcher's state goes nowhere; its arrivals still count until it hands over.
        box: list[Watch] = []
        watcher = MailboxWatcher(
            imap_endpoint(ep, acc.address, self._tokens),
            self._secret,
            self._on_arrival,
            lambda state: self._state(box[0], state),
            awaited=lambda: self._awaited(box[0].routes),
            policy=policy,
            clock=self._clock.time,
            sleep=self._clock.sleep,
            agent_id=self._identity,
            hooks=self._hooks(name),
        )
        box.append(Watch(name, watcher, routes))
        return box[0]

    def _index(self) -> None:
        self._by_route = {r: w for w in self.watches.values() for r in w.routes}

    def reconfigure(
        self, config: Config, changed: frozenset[str]
    ) -> tuple[list[Watch], list[Watch]]:
        """A reload: (watches to start, watches to stop and close).

        A mailbox no route delivers to any more is no longer watched, a new one is; one whose
        account ``changed`` gets a new watcher; the others keep their session and only learn
        which routes deliver to them now.
        """
        receiving = self._receiving(config)
        started: list[Watch] = []
        stopped: list[Watch] = []
        for name in list(self.watches):
            if name not in receiving or name in changed:
                stopped.append(self.watches.pop(name))
        for name, routes in receiving.items():
            if name in self.watches:
                self.watches[name].routes = routes
            else:
                self.watches[name] = self._watch(config, name, routes)
                started.append(self.watches[name])
        self._config = config
        self._index()
        return started, stopped

    def _awaited(self, routes: frozenset[str]) -> list[float]:
        """Send times of what the watcher of ``routes`` waits for: probes, and test viruses
        (they may land in the junk folder, which is checked only while something is awaited)."""
        sent = self._books.inflight.awaited(routes)
        if self._tests is not None:
            sent += [t.sent_at for t in self._tests.pending.values() if t.route in routes]
        return sent

    def _hooks(self, account: str) -> WatchHooks:
        metrics = self._metrics
        commands = metrics.imap_commands.labels(account)
        return WatchHooks(
            on_commands=commands.inc,
            on_reconnect=lambda reason: metrics.reconnects.labels(account, reason).inc(),
            on_unremoved=lambda stamp, why: metrics.unremoved.labels(account, why).inc(),
            on_foreign=lambda stamp, removed: metrics.foreign.labels(
                account, "removed" if removed else "seen"
            ).inc(),
            wants_message=self._tests.wants_message if self._tests is not None else None,
        )

    def wake(self, route: str) -> None:
        """A probe of ``route`` was just submitted: its mailbox watches closely."""
        watch = self._by_route.get(route)
        if watch is not None:
            watch.watcher.wake()

    def up(self, account: str) -> bool:
        """The account's watcher has a session."""
        return self.watches[account].watcher.up

    def health(self) -> dict[str, bool]:
        """Each watched account: has a session."""
        return {name: w.watcher.up for name, w in self.watches.items()}

    async def wait_up(self, accounts: Iterable[str], timeout: float) -> bool:
        """Wait until the named accounts' watchers have a session."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        names = list(accounts)
        while loop.time() < deadline:
            if all(self.watches[n].watcher.up for n in names):
                return True
            await asyncio.sleep(0.01)
        return False

    async def close(self) -> None:
        """Log out of every session, within two seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(w.watcher.close() for w in self.watches.values())), 2.0
            )

    def _on_arrival(self, arrival: Arrival) -> None:
        if self._tests is not None:
            if arrival.junked and self._tests.junked(arrival.stamp.probe_id, arrival.arrived_at):
                return  # a test virus filed as spam: quarantined, not a mail sample
            if self._tests.arrived(arrival):
                return
        seen = Sighting(arrival.stamp.probe_id, arrival.arrived_at, arrival.internaldate,
                        arrival.received, found_late=arrival.found_late, error=arrival.error,
                        junked=arrival.junked)  # fmt: skip
        if self._books.arrival(seen) is None:
            self._metrics.unmatched.inc()
            log.info("probe id=%s route=%s arrived but was not in flight (sent %.3f)",
                     arrival.stamp.probe_id[:12], arrival.stamp.route, arrival.stamp.sent_at)  # fmt: skip

    def _state(self, watch: Watch, state: WatchState) -> None:
        account = watch.account
        if self.watches.get(account) is not watch:
            return  # a reload stopped this watcher
        watch.error = state.error
        reason = state.error.reason if state.error is not None else Reason.ERROR
        for route in watch.routes:
            self._metrics.up.labels(route, "imap").set(1 if state.up else 0)
        if state.up:
            log.info("state account=%s imap=up", account)
            if watch.watcher.cert_not_after is not None:
                self._metrics.cert_expiry.labels(account, "imap").set(watch.watcher.cert_not_after)
            self._books.mailbox(watch.routes, up=True, at=state.at)
            if watch.away:
                watch.away = False
                for route in watch.routes:
                    self._on_back(route)
        elif state.lost_session:
            log.info("account=%s imap session lost (%s): %s; reconnecting", account, reason,
                     state.error)  # fmt: skip
        else:
            log.warning("state account=%s imap=down reason=%s: %s", account, reason, state.error)
            watch.away = True
            self._books.mailbox(watch.routes, up=False, at=state.at, reason=reason)
