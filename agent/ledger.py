"""The probe ledger: every probe, up/down transition, mailbox state and agent run, durable in SQLite.

One file in the state dir, WAL journal. Decisions:

- ``synchronous=FULL``: each commit fsyncs the WAL, so a write that returned survives power loss,
  not only a killed process. The ledger is the evidence a provider is billed on.
- Calls are synchronous, each one small transaction; a lock serializes them, so a caller may also
  run them in a thread.
- A probe is one row keyed by its id, with one column per field of ``mailprobe.agent.probe.Probe``
  (``_row``/``_probe`` map them by name). A record replaces the row only when it is news
  (``Probe.supersedes``): a record seen twice, or replayed after a restart, changes nothing.
- Only base-check transitions (send, receive) are the record; derived ones are kept for reading.
- Agent runs are observed spans; ``heartbeat`` extends the open run, so a SIGKILL loses at most one
  heartbeat interval of observed time. An open run found at startup ends at its last heartbeat.
- ``compact`` deletes rows before a cut and adds what the caller computed of them to the
  ``baseline`` table (seconds and counts per route, check and kind), so totals continue unchanged.
  The ledger does no accounting of its own.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Self

from mailprobe.agent.accounting import History, MailboxEvent
from mailprobe.agent.checks import BASE_CHECKS, Check, Transition
from mailprobe.agent.probe import Probe
from mailprobe.agent.windows import Span, normalize

SCHEMA_VERSION = 2
PROBE_FIELDS = tuple(f.name for f in fields(Probe))
_JSON_FIELDS = frozenset({"phases", "received"})
_BOOL_FIELDS = frozenset({"found_late"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS probes (
    probe_id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    status TEXT NOT NULL,
    sent_at REAL NOT NULL,
    accepted_at REAL,
    arrived_at REAL,
    delay_seconds REAL,
    phase TEXT,
    reason TEXT,
    reply_code INTEGER,
    phases TEXT NOT NULL DEFAULT '{}',
    internaldate REAL,
    received TEXT NOT NULL DEFAULT '[]',
    send_delay_seconds REAL,
    receive_delay_seconds REAL,
    clock_skew_seconds REAL,
    found_late INTEGER NOT NULL DEFAULT 0,
    overdue_at REAL,
    lost_at REAL,
    over_max_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS probes_sent_at ON probes (sent_at);
CREATE INDEX IF NOT EXISTS probes_open ON probes (status) WHERE status IN ('sent', 'overdue', 'lost');
CREATE INDEX IF NOT EXISTS probes_over_max ON probes (over_max_at) WHERE over_max_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY,
    route TEXT NOT NULL,
    check_name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('up', 'down')),
    at REAL NOT NULL,
    UNIQUE (route, check_name, state, at)
);
CREATE INDEX IF NOT EXISTS transitions_at ON transitions (at);
CREATE TABLE IF NOT EXISTS mailbox (
    id INTEGER PRIMARY KEY,
    route TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('up', 'down')),
    at REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    UNIQUE (route, state, at)
);
CREATE INDEX IF NOT EXISTS mailbox_at ON mailbox (at);
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

# Schema 1 named three columns differently and lacked the marks and the mailbox table.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE probes RENAME COLUMN delay TO delay_seconds",
    "ALTER TABLE probes RENAME COLUMN send_delay TO send_delay_seconds",
    "ALTER TABLE probes RENAME COLUMN receive_delay TO receive_delay_seconds",
    "ALTER TABLE probes ADD COLUMN clock_skew_seconds REAL",
    "ALTER TABLE probes ADD COLUMN found_late INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE probes ADD COLUMN overdue_at REAL",
    "ALTER TABLE probes ADD COLUMN lost_at REAL",
    "ALTER TABLE probes ADD COLUMN over_max_at REAL",
    # The instants were not kept: the row's last update is the best record of them.
    "UPDATE probes SET overdue_at = updated_at WHERE status IN ('overdue', 'lost', 'late')",
    "UPDATE probes SET lost_at = updated_at WHERE status = 'lost'",
)

COUNT_KINDS = ("sent", "received", "overdue", "late", "lost", "over_max")
"""Per-route probe counts kept by ``counts`` (besides the failures by phase and reason)."""

Marker = Callable[[Probe], float | None]
"""When a stored probe passed the delay maximum (``Probe.over_maximum_at`` with the contract's)."""


def _row(probe: Probe) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in PROBE_FIELDS:
        value = getattr(probe, name)
        if name == "phases":
            value = json.dumps(dict(value), sort_keys=True)
        elif name == "received":
            value = json.dumps(list(value))
        elif name in _BOOL_FIELDS:
            value = int(value)
        elif value is not None and name in ("status", "phase", "reason"):
            value = str(value)
        out[name] = value
    return out


def _probe(row: sqlite3.Row) -> Probe:
    values: dict[str, Any] = {}
    for name in PROBE_FIELDS:
        value = row[name]
        if name in _JSON_FIELDS:
            value = json.loads(value)
        elif name in _BOOL_FIELDS:
            value = bool(value)
        values[name] = value
    return Probe(**values)


_COLUMNS = ", ".join(PROBE_FIELDS)
# Column names come from Probe's own fields, never from input.
_UPSERT = (
    f"INSERT OR REPLACE INTO probes ({_COLUMNS}, updated_at) "  # noqa: S608
    f"VALUES ({', '.join(':' + n for n in PROBE_FIELDS)}, :updated_at)"
)


class Ledger:
    """The SQLite probe ledger; open with ``Ledger.open(path)``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._run_id: int | None = None

    @classmethod
    def open(cls, path: Path | str, *, over_max: Marker | None = None) -> Self:
        """Open (creating or upgrading if needed) the ledger at ``path``; a crashed run is closed.

        ``over_max`` marks, when a schema-1 ledger is upgraded, the probes that passed the delay
        maximum (schema 1 did not keep that instant).
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        ledger = cls(conn)
        ledger._upgrade(over_max)
        with ledger._tx() as cur:
            cur.execute("UPDATE runs SET stopped_at = last_seen WHERE stopped_at IS NULL")
        return ledger

    @classmethod
    def open_readonly(cls, path: Path) -> Self:
        """Open for reading only: a report must not touch a running agent's runs."""
        if not path.is_file():
            raise FileNotFoundError(path)
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        conn.row_factory = sqlite3.Row
        ledger = cls(conn)
        version = ledger._version()
        if version != SCHEMA_VERSION:
            conn.close()
            raise sqlite3.DatabaseError(
                f"ledger schema {version}, this mailprobe reads {SCHEMA_VERSION}: "
                "start `mailprobe run` once to upgrade it"
            )
        return ledger

    def _version(self) -> int:
        try:
            rows = self._query("SELECT value FROM meta WHERE key = 'schema'")
        except sqlite3.OperationalError:
            return 0
        return int(rows[0]["value"]) if rows else 0

    def _upgrade(self, over_max: Marker | None) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"ledger schema {version} is newer than this mailprobe ({SCHEMA_VERSION})"
            )
        if version == 1:
            with self._tx() as cur:
                for statement in _MIGRATE_1_TO_2:
                    cur.execute(statement)
        self._conn.executescript(_SCHEMA)
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
        if version == 1 and over_max is not None:
            self._mark_over_max(over_max)

    def _mark_over_max(self, over_max: Marker) -> None:
        runs = self.runs()
        until = runs[-1][1] if runs else -math.inf
        rows = self._query("SELECT * FROM probes WHERE accepted_at IS NOT NULL")
        with self._tx() as cur:
            for row in rows:
                at = over_max(_probe(row))
                if at is not None and at <= until:
                    cur.execute(
                        "UPDATE probes SET over_max_at = ? WHERE probe_id = ?",
                        (at, row["probe_id"]),
                    )

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

    def record(self, probe: Probe) -> bool:
        """Store a probe's record; False when it is not news (a duplicate or an older status)."""
        values = _row(probe)
        values["updated_at"] = max(
            t for t in (probe.sent_at, probe.accepted_at, probe.arrived_at, probe.lost_at,
                        probe.overdue_at, probe.over_max_at) if t is not None
        )  # fmt: skip
        with self._tx() as cur:
            row = cur.execute(
                "SELECT * FROM probes WHERE probe_id = ?", (probe.probe_id,)
            ).fetchone()
            if row is not None and not probe.supersedes(_probe(row)):
                return False
            cur.execute(_UPSERT, values)
            return True

    def probe(self, probe_id: str) -> Probe | None:
        """One probe by id."""
        rows = self._query("SELECT * FROM probes WHERE probe_id = ?", (probe_id,))
        return _probe(rows[0]) if rows else None

    def in_flight(self, *, include_lost: bool = False) -> list[Probe]:
        """Accepted probes not yet seen (and lost ones too, which may still turn up)."""
        lost = "lost" if include_lost else "sent"
        rows = self._query(
            "SELECT * FROM probes WHERE status IN ('sent', 'overdue', ?) "
            "AND accepted_at IS NOT NULL ORDER BY sent_at",
            (lost,),
        )
        return [_probe(r) for r in rows]

    def probes(self, start: float, end: float, route: str | None = None) -> list[Probe]:
        """Probes sent in ``[start, end)``, optionally of one route, in send order."""
        sql = "SELECT * FROM probes WHERE sent_at >= ? AND sent_at < ?"
        args: list[Any] = [start, end]
        if route is not None:
            sql += " AND route = ?"
            args.append(route)
        return [_probe(r) for r in self._query(sql + " ORDER BY sent_at", args)]

    def routes(self) -> list[str]:
        """Every route the ledger has seen."""
        rows = self._query(
            "SELECT route FROM probes UNION SELECT route FROM transitions WHERE route != 'all'"
        )
        return sorted(r["route"] for r in rows)

    def counts(
        self, before: float = math.inf, *, compacted: bool = True
    ) -> dict[tuple[str, str], float]:
        """Probe counts per (route, kind) of probes sent before ``before``: what the counters say.

        Kinds: ``sent`` (every attempt), ``received``, ``overdue``, ``late``, ``lost``,
        ``over_max``, and ``failed:PHASE:REASON`` per failure. With ``compacted``, the counts
        folded into the baseline are included.
        """
        until = (before if math.isfinite(before) else 1e300,)
        out: dict[tuple[str, str], float] = {}
        for row in self._query(
            "SELECT route, COUNT(*) AS sent, COUNT(arrived_at) AS received, "
            "COUNT(overdue_at) AS overdue, COUNT(lost_at) AS lost, COUNT(over_max_at) AS over_max, "
            "SUM(status = 'late') AS late FROM probes WHERE sent_at < ? GROUP BY route",
            until,
        ):
            for kind in COUNT_KINDS:
                out[(row["route"], kind)] = float(row[kind] or 0)
        for row in self._query(
            "SELECT route, phase, reason, COUNT(*) AS n FROM probes WHERE status = 'failed' "
            "AND sent_at < ? GROUP BY route, phase, reason",
            until,
        ):
            key = (row["route"], f"failed:{row['phase'] or ''}:{row['reason'] or ''}")
            out[key] = float(row["n"])
        if compacted:
            for (route, check, kind), value in self.baseline().items():
                if check == "":
                    out[(route, kind)] = out.get((route, kind), 0.0) + value
        return out

    # -- transitions and mailbox states

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

    def record_mailbox(self, event: MailboxEvent) -> bool:
        """Store a mailbox state change of a route; False when it is already there."""
        with self._tx() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO mailbox (route, state, at, reason) VALUES (?, ?, ?, ?)",
                (event.route, "up" if event.up else "down", event.at, event.reason),
            )
            return cur.rowcount > 0

    def mailbox_events(self, since: float = -math.inf) -> list[MailboxEvent]:
        """Mailbox state changes from ``since`` on, in time order."""
        rows = self._query(
            "SELECT route, state, at, reason FROM mailbox WHERE at >= ? ORDER BY at, id",
            (since if math.isfinite(since) else -1e300,),
        )
        return [MailboxEvent(r["route"], r["state"] == "up", r["at"], r["reason"]) for r in rows]

    # -- restart and compaction

    def baseline(self) -> dict[tuple[str, str, str], float]:
        """Seconds and counts folded away by compaction, per (route, check, kind)."""
        rows = self._query("SELECT route, check_name, kind, value FROM baseline")
        return {(r["route"], r["check_name"], r["kind"]): r["value"] for r in rows}

    def history(self, *, replay_seconds: float) -> History:
        """What ``Accounting.restore`` needs to continue where the last run stopped."""
        runs = self.runs()
        last_seen = runs[-1][1] if runs else -math.inf
        replay_from = last_seen - replay_seconds
        since = replay_from if math.isfinite(replay_from) else -1e300
        rows = self._query(
            "SELECT * FROM probes WHERE sent_at >= ? OR (accepted_at IS NOT NULL "
            "AND status IN ('sent', 'overdue', 'lost')) ORDER BY sent_at",
            (since,),
        )
        over = self._query(
            "SELECT probe_id, route, over_max_at FROM probes WHERE over_max_at IS NOT NULL"
        )
        return History(
            runs=tuple(runs),
            transitions=tuple(self.transitions()),
            probes=tuple(_probe(r) for r in rows),
            mailbox=tuple(self.mailbox_events(replay_from)),
            over_max={r["probe_id"]: (r["route"], r["over_max_at"]) for r in over},
            baseline=self.baseline(),
            replay_from=replay_from,
        )

    def compact(
        self,
        cut: float,
        carried: Mapping[tuple[str, str, str], float],
        still_down: Iterable[tuple[str, Check]],
    ) -> None:
        """Delete rows before ``cut``, adding ``carried`` (what they amounted to) to the baseline.

        ``still_down``: base checks down at the cut, whose down transition is kept at the cut.
        """
        with self._tx() as cur:
            for key, value in carried.items():
                cur.execute(
                    "INSERT INTO baseline (route, check_name, kind, value) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (route, check_name, kind) DO UPDATE SET value = value + ?",
                    (*key, value, value),
                )
            cur.execute("DELETE FROM probes WHERE sent_at < ?", (cut,))
            cur.execute("DELETE FROM transitions WHERE at < ?", (cut,))
            cur.execute("DELETE FROM mailbox WHERE at < ?", (cut,))
            for route, check in still_down:
                cur.execute(
                    "INSERT OR IGNORE INTO transitions (route, check_name, state, at) "
                    "VALUES (?, ?, 'down', ?)",
                    (route, str(check), cut),
                )
            cur.execute("DELETE FROM runs WHERE COALESCE(stopped_at, last_seen) <= ?", (cut,))
            cur.execute("UPDATE runs SET started_at = ? WHERE started_at < ?", (cut, cut))
