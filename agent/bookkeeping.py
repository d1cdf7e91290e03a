"""The agent's books: every probe and up/down transition into the ledger, then into accounting.

Order per event, because the ledger is the evidence a provider is billed on: the ledger row first,
then accounting, then the transitions accounting returns go back into the ledger, and only then
does anything reach metrics (a snapshot refreshed after the writes; /metrics serves that snapshot).

Counters exported to Prometheus must never go down, not even across a restart: a decrease reads
as a counter reset and ``increase()`` would count the whole total again. Accounting keeps its own
totals monotonic within a process (a down period closed by a probe sent before the last snapshot
would shrink them); what it exported is written to ``exported.json`` in the state dir before it is
exported, and a restarted agent exports at least that.

SQLite calls are synchronous on the event loop. Each is one small transaction with one fsync
(about a millisecond on local disk), a few per probe and one heartbeat per tick, so the loop is
never held long; the daily compaction is the one larger transaction.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from mailprobe.agent.accounting import (
    RECEIVE_PHASES,
    Accounting,
    Check,
    CheckTotals,
    Snapshot,
    Transition,
)
from mailprobe.agent.config import Config, Route
from mailprobe.agent.inflight import InFlight, Pending, Sighting
from mailprobe.agent.ledger import Ledger, StoredProbe
from mailprobe.agent.results import ProbeResult, Status

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"
EXPORTED_FILE = "exported.json"
TICK_INTERVAL = 5.0
"""Seconds between ticks: observed time advances, deadlines expire, the run's heartbeat is written."""
COMPACT_EVERY = 86400.0


def ledger_path(config: Config) -> Path:
    """Where the agent keeps its ledger."""
    return config.agent.state_dir / LEDGER_FILE


def open_ledger_readonly(path: Path) -> Ledger:
    """Open a ledger for reading only: a report must not touch a running agent's runs."""
    if not path.is_file():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
        check_same_thread=False,
    )  # fmt: skip
    conn.row_factory = sqlite3.Row
    return Ledger(conn)


def pending_of(stored: StoredProbe, route: Route | None, fallback: float) -> Pending:
    """A ledger row of a probe still on its way, as the in-flight tracker wants it."""
    assert stored.accepted_at is not None  # noqa: S101 - ledger.in_flight only returns accepted
    return Pending(
        probe_id=stored.probe_id,
        route=stored.route,
        sent_at=stored.sent_at,
        accepted_at=stored.accepted_at,
        overdue_after=route.overdue_after if route else fallback,
        lost_after=route.lost_after if route else math.inf,
        phases=stored.phases,
        reply_code=stored.reply_code,
        overdue=stored.status != "sent",
    )


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


class Bookkeeping:
    """Ledger + accounting for one agent run; inert (records nothing) until ``open``."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float],
        on_receive_failure: Callable[[str], None] = lambda route: None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._on_receive_failure = on_receive_failure
        self._routes = {r.name: r for r in config.routes}
        self.acc = Accounting(list(self._routes), config.sla, config.maintenance, clock)
        self.ledger: Ledger | None = None
        self._exported: dict[str, float] = {}
        self._exported_path = config.agent.state_dir / EXPORTED_FILE
        self._awaiting: dict[str, tuple[str, float]] = {}  # accepted, receive verdict unknown
        self._next_compact = -math.inf
        self.snapshot: Snapshot = self.acc.snapshot(clock())

    @property
    def active(self) -> bool:
        """True between open() and close()."""
        return self.ledger is not None

    # -- lifecycle

    def open(self) -> list[Pending]:
        """Open the ledger, continue from it, start a run; return the probes still in flight.

        Lost probes and probes of routes no longer configured are not returned: they stay in the
        ledger and are matched from there (``late_arrival``) should they turn up after all.
        """
        path = ledger_path(self._config)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            ledger = Ledger.open(path)
        except sqlite3.Error as exc:
            raise OSError(f"cannot open the ledger {path}: {exc}") from exc
        self.ledger = ledger
        self._exported = self._read_exported()
        now = self._clock()
        self._emit(self.acc.restore(ledger))
        ledger.started(now)
        self.acc.started(now)
        self._compact(now)
        pending: list[Pending] = []
        deadline = self._config.sla.receive_deadline
        for stored in ledger.in_flight(include_lost=True):
            route = self._routes.get(stored.route)
            # Lost probes, and those of routes no longer configured, are matched from the ledger.
            if stored.status == "lost" or route is None:
                continue
            pending.append(pending_of(stored, route, self._config.sla.delay_maximum))
            if stored.sent_at + deadline > now:
                self._awaiting[stored.probe_id] = (stored.route, stored.sent_at)
        self.refresh(now)
        log.info("ledger %s: run started, %d probe(s) still in flight", ledger_path(self._config),
                 len(pending))  # fmt: skip
        return pending

    def close(self) -> None:
        """End the run: last tick, the run's end into the ledger, close it."""
        ledger, now = self.ledger, self._clock()
        if ledger is None:
            return
        try:
            self._emit(self.acc.tick(now))
            ledger.stopped(now)
            self.acc.stopped(now)
            self.refresh(now)
        finally:
            self.ledger = None
            ledger.close()

    def tick(self, now: float) -> None:
        """Advance observed time, expire receive deadlines, heartbeat, compact once a day."""
        if self.ledger is None:
            return
        self._emit(self.acc.tick(now))
        self.ledger.heartbeat(now)
        deadline = self._config.sla.receive_deadline
        for probe_id, (route, sent_at) in list(self._awaiting.items()):
            if sent_at + deadline <= now:
                del self._awaiting[probe_id]
                self._on_receive_failure(route)
        self._compact(now)
        self.refresh(now)

    # -- probes

    def submitted(
        self,
        probe_id: str,
        route: str,
        sent_at: float,
        accepted_at: float,
        *,
        phases: dict[str, float],
        reply_code: int | None,
    ) -> None:
        """The server answered 250: the probe is durable before it is tracked."""
        if self.ledger is None:
            return
        self.ledger.record_sent(probe_id, route, sent_at, accepted_at, phases=phases,
                                reply_code=reply_code)  # fmt: skip
        self._awaiting[probe_id] = (route, sent_at)
        self._emit(self.acc.submitted(probe_id, route, sent_at, accepted_at))

    def record(self, result: ProbeResult) -> bool:
        """Write an outcome; False when the ledger already had it (then it is not news)."""
        if self.ledger is None:
            return True
        if not self.ledger.record_result(result):
            return False
        self._emit(self.acc.record(result))
        if result.status is not Status.OVERDUE:
            awaited = self._awaiting.pop(result.probe_id, None)
            failed = (
                result.status is Status.LOST
                or (result.status is Status.FAILED and result.phase in RECEIVE_PHASES)
                or (result.delay_seconds or 0.0) > self._config.sla.receive_deadline
            )
            if awaited is not None and failed:
                self._on_receive_failure(result.route)
        return True

    def late_arrival(self, seen: Sighting) -> ProbeResult | None:
        """An arrival nobody tracks: a probe the ledger still has as sent, overdue or lost."""
        if self.ledger is None:
            return None
        stored = self.ledger.probe(seen.probe_id)
        if stored is None or stored.accepted_at is None:
            return None
        if stored.status not in {"sent", "overdue", "lost"}:
            return None
        tracker = InFlight()
        route = self._routes.get(stored.route)
        tracker.add(pending_of(stored, route, self._config.sla.delay_maximum))
        return tracker.arrive(seen)

    # -- internals

    def _emit(self, transitions: Iterable[Transition]) -> None:
        ledger = self.ledger
        if ledger is None:
            return
        wrote = False
        for tr in transitions:
            if ledger.record_transition(tr):
                wrote = True
                log.info("transition route=%s check=%s state=%s at=%s", tr.route, tr.check,
                         tr.state, _when(tr.at))  # fmt: skip
        if wrote:
            self.refresh(self._clock())

    def _compact(self, now: float) -> None:
        if self.ledger is None or now < self._next_compact:
            return
        self._next_compact = now + COMPACT_EVERY
        cut = self.ledger.compact(
            now,
            retention=self._config.agent.ledger_retention,
            delay_maximum=self._config.sla.delay_maximum,
            windows=self._config.maintenance,
        )
        log.debug("ledger compacted up to %s", _when(cut))

    def refresh(self, now: float) -> None:
        """Take the snapshot metrics serve; what it exports is on disk before it is served."""
        snap = self.acc.snapshot(now)
        totals: dict[tuple[str, Check], CheckTotals] = {}
        changed = False
        exported = dict(self._exported)
        for (route, check), t in snap.totals.items():
            values = []
            for kind, value in (("observed", t.observed), ("down", t.down),
                                ("maintenance", t.maintenance)):  # fmt: skip
                key = f"{route}\t{check}\t{kind}"
                best = max(value, exported.get(key, 0.0))
                changed = changed or best != exported.get(key)
                exported[key] = best
                values.append(best)
            totals[(route, check)] = CheckTotals(*values)
        over: dict[str, int] = {}
        for route, count in snap.over_max.items():
            key = f"{route}\t\tover_max"
            best = max(float(count), exported.get(key, 0.0))
            changed = changed or best != exported.get(key)
            exported[key] = best
            over[route] = int(best)
        if changed and self.ledger is not None:
            self._write_exported(exported)
            self._exported = exported
        self.snapshot = replace(snap, totals=totals, over_max=over)

    def _read_exported(self) -> dict[str, float]:
        try:
            data = json.loads(self._exported_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self._exported_path, exc)
            return {}
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write_exported(self, exported: dict[str, float]) -> None:
        tmp = self._exported_path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(exported, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self._exported_path)
