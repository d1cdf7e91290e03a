"""The probe ledger: every probe, up/down transition and agent run, durable in SQLite.

One file in the state dir, WAL journal. Decisions:

- ``synchronous=FULL``: each commit fsyncs the WAL, so a write that returned survives power loss,
  not only a killed process (NORMAL would already survive SIGKILL, but may lose the last commits on
  an OS crash). The ledger is the evidence a provider is billed on, and it sees a few writes a
  minute, so an fsync each is cheap. Callers write here before they export a metric.
- Calls are synchronous: each is one small transaction (well under a millisecond plus one fsync).
  A lock serializes them, so a caller may also run them via ``asyncio.to_thread``.
- A probe is one row keyed by its id. Its status only moves forward (sent < overdue < lost <
  ok/late/failed; lost may still become late when the mail turns up), so a result seen twice, or
  replayed after a restart, changes nothing and ``record_result`` says so.
- Only base-check transitions (send, receive) are the record; derived ones are kept for reading.
- Agent runs are observed spans; ``heartbeat`` extends the open run, so a SIGKILL loses at most one
  heartbeat interval of observed time. An open run found at startup ends at its last heartbeat.
- ``compact`` folds everything before the cut into per-(route, check) baseline seconds and counts,
  so totals continue unchanged, and keeps at least ``MIN_RETENTION`` (400 days: the report month
  plus the rolling year before it).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self

from mailprobe.agent.accounting import (
    BASE_CHECKS,
    Check,
    History,
    ProbeLike,
    Transition,
    breakdown,
    spans_from_transitions,
)
from mailprobe.agent.windows import (
    OneOffWindow,
    RecurringWindow,
    Span,
    normalize,
    total,
    window_spans,
)

MIN_RETENTION = 400 * 86400.0
"""Compaction never drops rows younger than this (13 months and then some)."""

_RANK = {"sent": 0, "overdue": 1, "lost": 2, "ok": 3, "late": 3, "failed": 3}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS probes (
    probe_id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    status TEXT NOT NULL,
    sent_at REAL NOT NULL,
    accepted_at REAL,
    arrived_at REAL,
    delay REAL,
    phase TEXT,
    reason TEXT,
    reply_code INTEGER,
    phases TEXT NOT NULL DEFAULT '{}',
    internaldate REAL,
    received TEXT NOT NULL DEFAULT '[]',
    send_delay REAL,
    receive_delay REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS probes_sent_at ON probes (sent_at);
CREATE INDEX IF NOT EXISTS probes_open ON probes (status) WHERE status IN ('sent', 'overdue', 'lost');
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY,
    route TEXT NOT NULL,
    check_name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('up', 'down')),
    at REAL NOT NULL,
    UNIQUE (route, check_name, state, at)
);
CREATE INDEX IF NOT EXISTS transitions_at ON transitions (at);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    stopped_at REAL
);
CREATE TABLE IF NOT EXISTS baseline (
    route TEXT NOT NULL,
    check_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (route, check_name, kind)
);
"""


@dataclass(frozen=True, slots=True)
class StoredProbe:
    """A probe row; ``status`` is a ProbeResult status, or ``sent`` while nothing else is known."""

    probe_id: str
    route: str
    status: str
    sent_at: float
    accepted_at: float | None = None
    arrived_at: float | None = None
    delay_seconds: float | None = None
    phase: str | None = None
    reason: str | None = None
    reply_code: int | None = None
    phases: Mapping[str, float] = field(default_factory=dict)
    internaldate: float | None = None
    received: tuple[str, ...] = ()
    send_delay_seconds: float | None = None
    receive_delay_seconds: float | None = None

    def over_max(self, maximum: float, now: float) -> bool:
        """Accepted and delivered after ``maximum``, or still undelivered ``maximum`` after sending."""
        if self.accepted_at is None or self.status == "failed":
            return False
        if self.delay_seconds is not None:
            return self.delay_seconds > maximum
        return self.sent_at + maximum <= now


def _row_probe(row: sqlite3.Row) -> StoredProbe:
    return StoredProbe(
        probe_id=row["probe_id"],
        route=row["route"],
        status=row["status"],
        sent_at=row["sent_at"],
        accepted_at=row["accepted_at"],
        arrived_at=row["arrived_at"],
        delay_seconds=row["delay"],
        phase=row["phase"],
        reason=row["reason"],
        reply_code=row["reply_code"],
        phases=MappingProxyType(json.loads(row["phases"])),
        internaldate=row["internaldate"],
        received=tuple(json.loads(row["received"])),
        send_delay_seconds=row["send_delay"],
        receive_delay_seconds=row["receive_delay"],
    )


class Ledger:
    """The SQLite probe ledger; open with ``Ledger.open(path)``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._run_id: int | None = None

    @classmethod
    def open(cls, path: Path | str) -> Self:
        """Open (creating if needed) the ledger at ``path``; a crashed run is closed."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1')")
        ledger = cls(conn)
        with ledger._tx() as cur:
            cur.execute("UPDATE runs SET stopped_at = last_seen WHERE stopped_at IS NULL")
        return ledger

    def close(self) -> None:
        """Close the database (checkpointing the WAL)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- runs

    def started(self, at: float) -> None:
        """The agent starts observing at ``at``."""
        with self._tx() as cur:
            cur.execute("UPDATE runs SET stopped_at = last_seen WHERE stopped_at IS NULL")
            cur.execute("INSERT INTO runs (started_at, last_seen) VALUES (?, ?)", (at, at))
            self._run_id = cur.lastrowid

    def heartbeat(self, at: float) -> None:
        """Extend the current run to ``at``."""
        if self._run_id is not None:
            with self._tx() as cur:
                cur.execute(
                    "UPDATE runs SET last_seen = MAX(last_seen, ?) WHERE id = ?", (at, self._run_id)
                )

    def stopped(self, at: float) -> None:
        """The agent stops observing at ``at`` (clean shutdown)."""
        if self._run_id is not None:
            with self._tx() as cur:
                cur.execute(
                    "UPDATE runs SET last_seen = MAX(last_seen, ?), stopped_at = MAX(last_seen, ?) "
                    "WHERE id = ?",
                    (at, at, self._run_id),
                )
            self._run_id = None

    def runs(self) -> list[Span]:
        """Observed spans (each run from start to its stop or last heartbeat), normalized."""
        rows = self._query("SELECT started_at, COALESCE(stopped_at, last_seen) AS e FROM runs")
        return normalize((r["started_at"], r["e"]) for r in rows)

    # -- probes

    def record_sent(
        self,
        probe_id: str,
        route: str,
        sent_at: float,
        accepted_at: float | None = None,
        *,
        phases: Mapping[str, float] | None = None,
        reply_code: int | None = None,
    ) -> bool:
        """Store a probe at submission so it can still be matched after a restart."""
        with self._tx() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO probes (probe_id, route, status, sent_at, accepted_at, "
                "phases, reply_code, updated_at) VALUES (?, ?, 'sent', ?, ?, ?, ?, ?)",
                (probe_id, route, sent_at, accepted_at, json.dumps(dict(phases or {})),
                 reply_code, accepted_at or sent_at),
            )  # fmt: skip
            return cur.rowcount > 0

    def record_result(self, result: ProbeLike) -> bool:
        """Store an outcome; False when it adds nothing (a duplicate or an older status)."""
        status = str(result.status)
        values = (
            result.route, status, result.sent_at, result.accepted_at, result.arrived_at,
            result.delay_seconds, result.phase, result.reason, result.reply_code,
            json.dumps(dict(result.phases)), result.internaldate, json.dumps(list(result.received)),
            result.send_delay_seconds, result.receive_delay_seconds,
            result.arrived_at or result.accepted_at or result.sent_at,
        )  # fmt: skip
        with self._tx() as cur:
            row = cur.execute(
                "SELECT status FROM probes WHERE probe_id = ?", (result.probe_id,)
            ).fetchone()
            if row is not None and _RANK.get(status, 0) <= _RANK.get(row["status"], 0):
                return False
            cur.execute(
                "INSERT OR REPLACE INTO probes (route, status, sent_at, accepted_at, arrived_at, "
                "delay, phase, reason, reply_code, phases, internaldate, received, send_delay, "
                "receive_delay, updated_at, probe_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, result.probe_id),
            )
            return True

    def probe(self, probe_id: str) -> StoredProbe | None:
        """One probe by id."""
        rows = self._query("SELECT * FROM probes WHERE probe_id = ?", (probe_id,))
        return _row_probe(rows[0]) if rows else None

    def in_flight(self, *, include_lost: bool = False) -> list[StoredProbe]:
        """Accepted probes not yet seen (and lost ones too, which may still turn up)."""
        rows = self._query(
            "SELECT * FROM probes WHERE status IN ('sent', 'overdue', 'lost') "
            "AND accepted_at IS NOT NULL ORDER BY sent_at"
        )
        if not include_lost:
            rows = [r for r in rows if r["status"] != "lost"]
        return [_row_probe(r) for r in rows]

    def probes(self, start: float, end: float, route: str | None = None) -> list[StoredProbe]:
        """Probes sent in ``[start, end)``, optionally of one route, in send order."""
        sql = "SELECT * FROM probes WHERE sent_at >= ? AND sent_at < ?"
        args: list[Any] = [start, end]
        if route is not None:
            sql += " AND route = ?"
            args.append(route)
        return [_row_probe(r) for r in self._query(sql + " ORDER BY sent_at", args)]

    def routes(self) -> list[str]:
        """Every route the ledger has seen."""
        rows = self._query(
            "SELECT route FROM probes UNION SELECT route FROM transitions WHERE route != 'all'"
        )
        return sorted(r["route"] for r in rows)

    # -- transitions

    def record_transition(self, transition: Transition) -> bool:
        """Store a transition; False when it is already there."""
        with self._tx() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO transitions (route, check_name, state, at) "
                "VALUES (?, ?, ?, ?)",
                (transition.route, str(transition.check), transition.state, transition.at),
            )
            return cur.rowcount > 0

    def transitions(self, until: float = math.inf, *, base_only: bool = True) -> list[Transition]:
        """Transitions before ``until`` in time order (base checks only unless asked)."""
        rows = self._query(
            "SELECT route, check_name, state, at FROM transitions WHERE at < ? ORDER BY at, id",
            (until if math.isfinite(until) else 1e300,),
        )
        out = [
            Transition(r["route"], Check(r["check_name"]), r["state"] == "up", r["at"])
            for r in rows
        ]
        return [t for t in out if t.check in BASE_CHECKS] if base_only else out

    # -- restart and compaction

    def baseline(self) -> dict[tuple[str, str, str], float]:
        """Seconds and counts folded away by compaction, per (route, check, kind)."""
        rows = self._query("SELECT route, check_name, kind, value FROM baseline")
        return {(r["route"], r["check_name"], r["kind"]): r["value"] for r in rows}

    def history(self, *, replay_seconds: float, delay_maximum: float) -> History:
        """What ``Accounting.restore`` needs to continue where the last run stopped."""
        runs = self.runs()
        last_seen = runs[-1][1] if runs else -math.inf
        replay_from = last_seen - replay_seconds
        rows = self._query(
            "SELECT * FROM probes WHERE sent_at >= ? OR (accepted_at IS NOT NULL "
            "AND status IN ('sent', 'overdue', 'lost')) ORDER BY sent_at",
            (replay_from if math.isfinite(replay_from) else -1e300,),
        )
        over = self._query(
            "SELECT probe_id, route FROM probes WHERE accepted_at IS NOT NULL "
            "AND status != 'failed' AND (delay > ? OR (delay IS NULL AND sent_at + ? <= ?))",
            (delay_maximum, delay_maximum, last_seen if runs else -1e300),
        )
        return History(
            runs=tuple(runs),
            transitions=tuple(self.transitions()),
            probes=tuple(_row_probe(r) for r in rows),
            over_max_ids={r["probe_id"]: r["route"] for r in over},
            baseline=self.baseline(),
            replay_from=replay_from,
        )

    def compact(
        self,
        now: float,
        *,
        retention: float,
        delay_maximum: float,
        windows: Sequence[OneOffWindow | RecurringWindow] = (),
    ) -> float:
        """Fold rows older than ``retention`` (at least MIN_RETENTION) into the baseline.

        Returns the cut instant. Totals computed from the ledger afterwards (baseline + rows) are
        the same as before.
        """
        cut = now - max(retention, MIN_RETENTION)
        runs = self.runs()
        if not runs or runs[0][0] >= cut:
            return cut
        routes = self.routes()
        trs = self.transitions()
        before = [t for t in trs if t.at < cut]
        down = spans_from_transitions(before, cut)
        observed = [(s, min(e, cut)) for s, e in runs if s < cut]
        parts = breakdown(
            normalize(observed),
            down,
            routes,
            lambda route: window_spans(windows, runs[0][0], cut, route),
        )
        seen = total(normalize(observed))
        carried: dict[tuple[str, str, str], float] = {}
        for (route, check), (d, m) in parts.items():
            carried[(route, str(check), "observed")] = seen
            carried[(route, str(check), "down")] = total(d)
            carried[(route, str(check), "maintenance")] = total(m)
        old = self.probes(-1e300, cut)
        for p in old:
            if p.over_max(delay_maximum, now):
                key = (p.route, "", "over_max")
                carried[key] = carried.get(key, 0.0) + 1.0
        state: dict[tuple[str, Check], bool] = {}
        for tr in before:
            state[(tr.route, tr.check)] = tr.up
        still_down = [key for key, up in state.items() if not up]
        with self._tx() as cur:
            for key, value in carried.items():
                cur.execute(
                    "INSERT INTO baseline (route, check_name, kind, value) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (route, check_name, kind) DO UPDATE SET value = value + ?",
                    (*key, value, value),
                )
            cur.execute("DELETE FROM probes WHERE sent_at < ?", (cut,))
            cur.execute("DELETE FROM transitions WHERE at < ?", (cut,))
            for route, check in still_down:
                cur.execute(
                    "INSERT OR IGNORE INTO transitions (route, check_name, state, at) "
                    "VALUES (?, ?, 'down', ?)",
                    (route, str(check), cut),
                )
            cur.execute("DELETE FROM runs WHERE COALESCE(stopped_at, last_seen) <= ?", (cut,))
            cur.execute("UPDATE runs SET started_at = ? WHERE started_at < ?", (cut, cut))
        return cut
