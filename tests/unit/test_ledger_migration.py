"""Ledgers of older schemas open under this version with nothing lost: mailprobe 0.1 (schema 1),
and schema 2 (before arrival error bounds and the junk folder)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mailprobe.agent.ledger import SCHEMA_VERSION, Ledger
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.vantage import META_KEY, Vantage, from_meta, to_meta

# The schema mailprobe 0.1 created, verbatim.
SCHEMA_1 = """
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


def _schema_1_ledger(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1)
    conn.execute("INSERT INTO meta VALUES ('schema', '1')")
    conn.execute("INSERT INTO runs (started_at, last_seen, stopped_at) VALUES (0, 20000, 20000)")
    row = ("probe_id, route, status, sent_at, accepted_at, arrived_at, delay, phase, reason, "
           "reply_code, phases, received, send_delay, receive_delay, updated_at")  # fmt: skip
    marks = ", ".join("?" * 15)
    conn.executemany(
        f"INSERT INTO probes ({row}) VALUES ({marks})",  # noqa: S608 - fixed test columns
        [
            ("ok1", "a", "ok", 100.0, 100.5, 102.0, 2.0, None, None, 250,
             json.dumps({"smtp_connect": 0.01}), json.dumps(["from a by b"]), 0.5, 1.0, 102.0),
            ("late1", "a", "late", 200.0, 200.5, 4400.0, 4200.0, None, None, 250, "{}", "[]",
             None, None, 4400.0),
            ("lost1", "a", "lost", 300.0, 300.5, None, None, "delivery", "lost", 250, "{}", "[]",
             None, None, 86700.0),
            ("fail1", "a", "failed", 400.0, None, None, None, "smtp_auth", "auth", 535, "{}",
             "[]", None, None, 400.5),
        ],
    )  # fmt: skip
    conn.execute("INSERT INTO transitions (route, check_name, state, at) VALUES ('a', 'send', 'down', 400)")
    conn.commit()
    conn.close()


def test_a_schema_1_ledger_is_upgraded_in_place_with_every_row(tmp_path: Path) -> None:
    """Renamed columns keep their values, the marks are filled in, the schema says 2."""
    path = tmp_path / "ledger.sqlite3"
    _schema_1_ledger(path)
    with Ledger.open(path, over_max=lambda p: p.over_maximum_at(3600.0)) as ledger:
        ok = ledger.probe("ok1")
        assert ok is not None
        assert (ok.status, ok.delay_seconds, ok.send_delay_seconds, ok.receive_delay_seconds) == (
            Status.OK, 2.0, 0.5, 1.0,
        )  # fmt: skip
        assert dict(ok.phases) == {"smtp_connect": 0.01}
        assert ok.received == ("from a by b",)
        assert ok.over_max_at is None
        late = ledger.probe("late1")
        assert late is not None
        assert (late.overdue_at, late.over_max_at) == (4400.0, 3800.0)
        lost = ledger.probe("lost1")
        assert lost is not None
        assert (lost.lost_at, lost.over_max_at) == (86700.0, 3900.0)
        failed = ledger.probe("fail1")
        assert failed == Probe("fail1", "a", Status.FAILED, 400.0, phase="smtp_auth",  # type: ignore[arg-type]
                               reason="auth", reply_code=535)  # type: ignore[arg-type]  # fmt: skip
        assert ledger.counts()[("a", "sent")] == 4
        assert ledger.counts()[("a", "over_max")] == 2
        assert len(ledger.transitions()) == 1
    with Ledger.open_readonly(path) as reread:
        assert reread.probe("ok1") == ok
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(
        SCHEMA_VERSION
    )


def test_a_report_refuses_a_ledger_not_yet_upgraded(tmp_path: Path) -> None:
    """Read-only access cannot upgrade: it says to start the agent once."""
    path = tmp_path / "ledger.sqlite3"
    _schema_1_ledger(path)
    with pytest.raises(sqlite3.DatabaseError, match="start `mailprobe run` once"):
        Ledger.open_readonly(path)


# The schema 2 created (before error bounds and the junk folder), verbatim.
SCHEMA_2 = """
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


# What schema 3 added to 2, verbatim: two tables, no column.
SCHEMA_3_TABLES = """
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
"""


@pytest.mark.parametrize("version", [2, 3])
def test_a_ledger_before_schema_4_is_upgraded_with_bounds_and_junk_unknown(
    tmp_path: Path, version: int
) -> None:
    """Every row and count kept; its probes' error bound and junk answer are unknown (None),
    none counted junked; new records keep both; the schema says 4."""
    path = tmp_path / "ledger.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_2 + (SCHEMA_3_TABLES if version == 3 else ""))
    conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(version),))
    conn.execute("INSERT INTO runs (started_at, last_seen, stopped_at) VALUES (0, 900, 900)")
    conn.execute(
        "INSERT INTO probes (probe_id, route, status, sent_at, accepted_at, arrived_at, "
        "delay_seconds, phases, received, found_late, updated_at) VALUES "
        "('old', 'a', 'ok', 100.0, 100.1, 100.5, 0.5, '{}', '[]', 0, 100.5)"
    )
    conn.commit()
    conn.close()
    with Ledger.open(path) as ledger:
        old = ledger.probe("old")
        assert old is not None
        assert (old.status, old.delay_seconds) == (Status.OK, 0.5)
        assert (old.arrival_error_seconds, old.junked) == (None, None)
        assert ledger.counts()[("a", "received")] == 1
        assert ledger.counts()[("a", "junked")] == 0
        new = Probe("new", "a", Status.OK, 200.0, accepted_at=200.1, arrived_at=200.4,
                    delay_seconds=0.4, arrival_error_seconds=0.02, junked=True)  # fmt: skip
        ledger.record(new)
        assert ledger.probe("new") == new
        assert ledger.counts()[("a", "junked")] == 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "4"


def test_a_ledger_from_before_vantages_gains_the_vantage_row_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    """A ledger without a vantage (0.1's, upgraded) reads as having none; once its agent runs
    with a vantage the meta row names it, and every probe, run and transition is as it was."""
    path = tmp_path / "ledger.sqlite3"
    _schema_1_ledger(path)
    with Ledger.open(path) as ledger:
        before = (ledger.probes(0, 1e12), ledger.runs(), ledger.transitions(), ledger.counts())
        assert ledger.meta(META_KEY) is None
        ledger.set_meta(META_KEY, to_meta(Vantage("berlin", "hq", "eu-central")))
    with Ledger.open_readonly(path) as reread:
        assert from_meta(reread.meta(META_KEY)) == Vantage("berlin", "hq", "eu-central")
        after = (reread.probes(0, 1e12), reread.runs(), reread.transitions(), reread.counts())
        assert after == before
        assert reread.meta("schema") == str(SCHEMA_VERSION)


def test_the_schema_version_is_not_a_meta_value_to_set(tmp_path: Path) -> None:
    """Only the upgrade writes the schema version."""
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger, pytest.raises(ValueError, match="upgrade"):
        ledger.set_meta("schema", "99")


@pytest.mark.parametrize("value", [None, "", "not json", "[]", '{"site": "x"}'])
def test_a_missing_or_damaged_vantage_row_reads_as_none(value: str | None) -> None:
    """A vantage row that cannot be read names no vantage (the report falls back to the file)."""
    assert from_meta(value) is None
