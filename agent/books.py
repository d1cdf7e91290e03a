"""The agent's books: each probe record into the in-flight registry, the ledger, the accounting and
the counts, once, in that order, and then to whoever listens (log, metrics, the demo's view).

Order per record, because the ledger is the evidence a provider is billed on: the ledger row (or,
while the ledger cannot be written, the journal keeps it), then the counts and the accounting, then
the transitions the accounting returns go to the ledger too, and only then does the record reach
the listeners. Webmail loads take the same way (ledger, then their ``webmail`` checks' confirmation
in ``mailprobe.agent.webmail_books``, then the transitions); anti-virus tests are recorded as they
are. What /metrics serves is ``exported``: the accounting's totals and the counts, each
passed once through the floors so no exported counter ever goes down.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from mailprobe.agent.accounting import MailboxEvent
from mailprobe.agent.accounting_routes import RouteAccounting
from mailprobe.agent.antivirus_test import AntivirusTest
from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.compaction import compact
from mailprobe.agent.config import Config
from mailprobe.agent.export import EXPORTED_FILE, Export, Exported
from mailprobe.agent.floors import Floors
from mailprobe.agent.inflight import InFlight, Marks
from mailprobe.agent.journal import Journal
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Sighting, Status
from mailprobe.agent.tally import Tally
from mailprobe.agent.webmail_books import WebmailAccounting
from mailprobe.agent.webmail_sample import WebmailSample
from mailprobe.agent.windows import month_bounds, month_of

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"
TICK_INTERVAL = 5.0
"""Seconds between ticks: observed time advances, deadlines expire, the run's heartbeat is written."""
SWEEP_INTERVAL = 1.0
"""Seconds between sweeps of the in-flight probes for the marks they passed (overdue, lost, ...)."""
COMPACT_EVERY = 86400.0

Listener = Callable[[Probe], None]


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


class Books:
    """Registry + ledger + accounting + counts of one agent run; records nothing until ``open``."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float],
        on_failure: Callable[[str], None] = lambda route: None,
        enrich: Callable[[Probe], Probe] = lambda probe: probe,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._meta = dict(meta or {})  # written into the ledger's meta table at every open
        self._enrich = enrich
        self._clock = clock
        sla = config.sla
        self.inflight = InFlight(
            {r.name: Marks(r.overdue_after, r.lost_after) for r in config.routes},
            sla.delay_maximum,
        )
        self.acc = RouteAccounting(
            [r.name for r in config.routes], sla, config.maintenance, clock, on_failure
        )
        self.webmail = WebmailAccounting([c.name for c in config.webmail], sla, config.maintenance)
        self.tally = Tally()
        self.export = Export(
            [r.name for r in config.routes],
            Floors(None),  # on disk once the ledger is open: probe-once keeps neither
            self.acc.snapshot(clock()),
            self.tally,
        )
        self.journal: Journal | None = None
        self._ledger: Ledger | None = None
        self._listeners: list[Listener] = []
        self._next_compact = -math.inf

    @property
    def path(self) -> str:
        """Where the ledger lives."""
        return str(self._config.agent.state_dir / LEDGER_FILE)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every new record from now on; returns the way to stop."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- lifecycle

    def open(self) -> list[Probe]:
        """Open the ledger, continue from it, start a run; return the probes still in flight.

        Lost probes, and probes of routes no longer configured, stay in the ledger and are
        matched from there (``arrival``) should they turn up after all.
        """
        maximum = self._config.sla.delay_maximum
        path = self._config.agent.state_dir / LEDGER_FILE
        ledger = Ledger.open(path, over_max=lambda p: p.over_maximum_at(maximum))
        self._ledger = ledger
        for key, value in self._meta.items():
            ledger.set_meta(key, value)
        self.journal = Journal(ledger)
        self.export.floors.attach(self._config.agent.state_dir / EXPORTED_FILE)
        self.export.floors.load()
        self.tally = Tally(ledger.counts())
        now = self._clock()
        self._write_all(self.acc.restore(ledger.history(replay_seconds=self.acc.replay_seconds)))
        month_start = month_bounds(month_of(now, self._config.sla.timezone),
                                   self._config.sla.timezone)[0]  # fmt: skip
        self.webmail.restore(ledger.webmail_transitions(), ledger.webmail(month_start, math.inf))
        ledger.started(now)
        self.acc.started(now)
        self._compact(now)
        pending: list[Probe] = []
        for probe in ledger.in_flight(include_lost=True):
            if not self.inflight.tracks(probe.route):
                continue
            if probe.status is Status.LOST and probe.over_max_at is not None:
                continue
            self.inflight.add(probe)
            pending.append(probe)
        self.refresh(now)
        log.info("ledger %s: run started, %d probe(s) still in flight", path, len(pending))
        return pending

    def close(self) -> None:
        """End the run: last tick, the run's end into the ledger, close it."""
        ledger, now = self._ledger, self._clock()
        if ledger is None or self.journal is None:
            return
        try:
            self._write_all(self.acc.tick(now))
            self.journal.heartbeat(now)
            self.acc.stopped(now)
            self.refresh(now)
            if self.journal.flush():
                ledger.stopped(now)
            else:
                log.error("stopping with %d record(s) the ledger could not take: %s",
                          self.journal.pending, self.journal.error)  # fmt: skip
        finally:
            self._ledger = None
            ledger.close()

    def reconfigure(self, config: Config, retired: Iterable[str] = ()) -> None:
        """A reload: the routes of ``config`` from now on; ``retired`` are no longer probed (gone,
        or moved to other accounts). Probes in flight, counts and totals stay as they are."""
        now = self._clock()
        for name in retired:
            self._write_all(self.acc.retire(name, now))
        self._config = config
        self.inflight.set_marks(
            {r.name: Marks(r.overdue_after, r.lost_after) for r in config.routes}
        )
        for route in config.routes:
            self.acc.add_route(route.name)
        self.export.set_routes(r.name for r in config.routes)
        self.refresh(now)

    def sweep(self, now: float) -> None:
        """Record the marks in-flight probes passed (overdue, lost, over the maximum)."""
        for old, new in self.inflight.sweep(now):
            self._commit(old, new, now)

    def tick(self, now: float) -> None:
        """Advance time: marks, deadlines, heartbeat, compaction once a day, a fresh export."""
        self.sweep(now)
        self._write_all(self.acc.tick(now))
        self._write_all(self.webmail.tick(now))
        if self.journal is not None:
            self.journal.heartbeat(now)
        self._compact(now)
        self.refresh(now)

    # -- records

    def attempting(self, probe_id: str, route: str, sent_at: float) -> None:
        """A submission of ``route`` starts now (its record follows in ``submitted``)."""
        self.acc.attempt(probe_id, route, sent_at)

    def abandoned(self, probe_id: str, route: str) -> None:
        """A submission was cancelled before it ended."""
        self._write_all(self.acc.abandon(probe_id, route))

    def submitted(self, probe: Probe) -> None:
        """A submission ended: ``probe`` was accepted (sent) or failed."""
        if probe.in_flight and self.inflight.tracks(probe.route):
            self.inflight.add(probe)
        self._commit(None, probe, self._clock())

    def arrival(self, seen: Sighting) -> Probe | None:
        """A verified probe was seen; its arrived record, or None if it is not ours to count."""
        old = self.inflight.get(seen.probe_id)
        new = self.inflight.arrive(seen)
        if new is None and self.journal is not None:
            old = self.journal.kept_probe(seen.probe_id) or self.journal.read(
                "late arrival", lambda ledger: ledger.probe(seen.probe_id)
            )
            if old is None or not old.accepted or old.status not in (
                Status.SENT, Status.OVERDUE, Status.LOST,
            ):  # fmt: skip
                return None
            new = old.arrive(seen.arrived_at, internaldate=seen.internaldate,
                             received=seen.received, found_late=seen.found_late,
                             error=seen.error, junked=seen.junked)  # fmt: skip
        if new is None:
            return None
        return self._commit(old, self._enrich(new), self._clock())

    def mailbox(self, routes: Iterable[str], *, up: bool, at: float, reason: str = "") -> None:
        """The mailbox these routes receive at could (``up``) or could not be opened at ``at``."""
        for route in routes:
            event = MailboxEvent(route, up, at, reason)
            if self.journal is not None:
                self.journal.write(event)
            self._write_all(self.acc.mailbox(event))

    def record_webmail(self, sample: WebmailSample) -> None:
        """A webmail load: into the ledger, then its check's confirmation."""
        if self.journal is not None:
            self.journal.write(sample)
        self._write_all(self.webmail.record(sample))

    def antivirus_history(self) -> list[AntivirusTest]:
        """The ledger's anti-virus tests (to continue their schedule and pending ones)."""
        if self._ledger is None:
            return []
        try:
            return self._ledger.antivirus()
        except sqlite3.Error as exc:
            log.warning("ledger read (anti-virus tests) failed: %s", exc)
            return []

    def record_antivirus(self, test: AntivirusTest) -> None:
        """An anti-virus test sent, decided, or given its follow-up: into the ledger."""
        if self.journal is not None:
            self.journal.write(test)

    def _commit(self, old: Probe | None, new: Probe, now: float) -> Probe | None:
        if old is not None and not new.supersedes(old):
            return None
        if new.over_max_at is None:
            mark = new.over_maximum_at(self._config.sla.delay_maximum)
            if mark is not None and mark <= now and new.arrived:
                new = new.past_maximum(mark)
        if self.journal is not None:  # without a ledger (probe-once) nothing is recorded
            self.journal.write(new)
        self.tally.add(old, new)
        self._write_all(self.acc.record(new))
        self.export.refresh_counts(self.tally)
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception:
                log.exception("listener failed for probe %s", new.probe_id)
        return new

    def _write_all(self, transitions: Iterable[Transition]) -> None:
        wrote = False
        for tr in transitions:
            wrote = True
            if self.journal is not None:
                self.journal.write(tr)
            if tr.check in (Check.SEND, Check.RECEIVE):
                log.info("transition route=%s check=%s state=%s at=%s", tr.route, tr.check,
                         tr.state, _when(tr.at))  # fmt: skip
        if wrote:
            self.refresh(self._clock())

    def _compact(self, now: float) -> None:
        if self._ledger is None or now < self._next_compact:
            return
        self._next_compact = now + COMPACT_EVERY
        try:
            cut = compact(self._ledger, now, retention=self._config.agent.ledger_retention,
                          windows=self._config.maintenance)  # fmt: skip
        except (sqlite3.Error, OSError) as exc:
            log.warning("ledger compaction failed (tried again tomorrow): %s", exc)
            return
        log.debug("ledger compacted up to %s", _when(cut))

    # -- what is exported

    def refresh(self, now: float) -> None:
        """Take the figures /metrics serves; the floors they need reach the disk first."""
        self.export.refresh(self.acc.snapshot(now), self.tally)

    @property
    def exported(self) -> Exported:
        """What /metrics serves now."""
        return self.export.exported

    # -- reading

    @property
    def ledger_error(self) -> str | None:
        """Why the ledger or the floors cannot be written right now, or None."""
        journal_error = self.journal.error if self.journal is not None else None
        return journal_error or self.export.error

    def unsettled(self, route: str) -> bool:
        """The route's send or receive is suspect or down: it wants a quick retry."""
        return self.acc.unsettled(route)
