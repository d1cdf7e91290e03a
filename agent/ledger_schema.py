"""The ledger's SQLite schema, its upgrades, and probe records to rows and back.

One column per field of ``mailprobe.agent.probe.Probe``, by name; ``phases`` and ``received`` are
JSON, ``found_late`` an integer, ``junked`` an integer or NULL (not watched). Older schemas are
upgraded in place on open, one step after another: 1 (mailprobe 0.1) to 2; 2 to 3 adds the
``webmail`` samples and the ``antivirus`` tests (new tables, nothing else changes); 3 to 4 adds
each probe's arrival error bound and its junk-folder answer.

The ``meta`` table holds the schema version and facts about the ledger as a whole, one row a key:
``vantage`` (JSON: name, site, region) names the vantage point its agent last ran as, written at
each start; a ledger from before vantages has no such row until its agent runs again.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Self

from mailprobe.agent.probe import Probe
from mailprobe.agent.windows import Span, normalize

SCHEMA_VERSION = 4
PROBE_FIELDS = tuple(f.name for f in fields(Probe))
_JSON_FIELDS = frozenset({"phases", "received"})
_BOOL_FIELDS = frozenset({"found_late"})
_MAYBE_FIELDS = frozenset({"junked"})  # booleans that may be unknown (NULL)

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
    arrival_error_seconds REAL,
    junked INTEGER,
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
CREATE TABLE IF NOT EXISTS webmail (
    id INTEGER PRIMARY KEY,
    check_name TEXT NOT NULL,
    at REAL NOT NULL,
    mode TEXT NOT NULL,
    ok INTEGER NOT NULL,
    seconds REAL NOT NULL,
    reason TEXT,
    phase TEXT,
    status_code INTEGER,
    redirects INTEGER NOT NULL DEFAULT 0,
    cert_not_after REAL,
    phases TEXT NOT NULL DEFAULT '{}',
    UNIQUE (check_name, at)
);
CREATE INDEX IF NOT EXISTS webmail_at ON webmail (at);
CREATE TABLE IF NOT EXISTS antivirus (
    probe_id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    sent_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    decided_at REAL,
    reply_code INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    follow_up TEXT
);
CREATE INDEX IF NOT EXISTS antivirus_sent_at ON antivirus (sent_at);
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

# Schema 2 -> 3 only adds tables, which the schema script creates.
_MIGRATE_2_TO_3: tuple[str, ...] = ()
# Schemas before 4 kept no error bound with an arrival and did not watch the junk folder: both
# stay unknown (NULL) for their probes.
_MIGRATE_3_TO_4 = (
    "ALTER TABLE probes ADD COLUMN arrival_error_seconds REAL",
    "ALTER TABLE probes ADD COLUMN junked INTEGER",
)

COUNT_KINDS = ("sent", "received", "overdue", "late", "lost", "over_max", "junked")
"""Per-route probe counts kept by ``counts`` (besides the failures by phase and reason)."""

Marker = Callable[[Probe], float | None]
"""When a stored probe passed the delay maximum (``Probe.over_maximum_at`` with the contract's)."""


def probe_row(probe: Probe) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in PROBE_FIELDS:
        value = getattr(probe, name)
        if name == "phases":
            value = json.dumps(dict(value), sort_keys=True)
        elif name == "received":
            value = json.dumps(list(value))
        elif name in _BOOL_FIELDS or (name in _MAYBE_FIELDS and value is not None):
            value = int(value)
        elif value is not None and name in ("status", "phase", "reason"):
            value = str(value)
        out[name] = value
    return out


def row_probe(row: sqlite3.Row) -> Probe:
    values: dict[str, Any] = {}
    for name in PROBE_FIELDS:
        value = row[name]
        if name in _JSON_FIELDS:
            value = json.loads(value)
        elif name in _BOOL_FIELDS or (name in _MAYBE_FIELDS and value is not None):
            value = bool(value)
        values[name] = value
    return Probe(**values)


_COLUMNS = ", ".join(PROBE_FIELDS)
# Column names come from Probe's own fields, never from input.
UPSERT = (
    f"INSERT OR REPLACE INTO probes ({_COLUMNS}, updated_at) "  # noqa: S608
    f"VALUES ({', '.join(':' + n for n in PROBE_FIELDS)}, :updated_at)"
)


class Store:
    """One SQLite connection with the ledger's schema: transactions, queries, upgrades."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

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

    def meta(self, key: str) -> str | None:
        """A meta value (None when the ledger has none)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Write a meta value (not the schema version: that is the upgrade's)."""
        if key == "schema":
            raise ValueError("the schema version is written by the upgrade only")
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

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
        steps = {1: _MIGRATE_1_TO_2, 2: _MIGRATE_2_TO_3, 3: _MIGRATE_3_TO_4}
        for step in range(version, SCHEMA_VERSION) if version else ():
            with self._tx() as cur:
                for statement in steps[step]:
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
                at = over_max(row_probe(row))
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

    def runs(self) -> list[Span]:
        """Observed spans (each run from start to its stop or last heartbeat), normalized."""
        rows = self._query("SELECT started_at, COALESCE(stopped_at, last_seen) AS e FROM runs")
        return normalize((r["started_at"], r["e"]) for r in rows)
