"""The ledger's webmail samples and anti-virus tests: schema 3, stored and read back, upgrades."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from mailprobe.agent.antivirus_test import AntivirusTest, Outcome
from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.ledger import SCHEMA_VERSION, Ledger
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.webmail_sample import WebmailSample


def _schema_2(path: Path) -> None:
    """A ledger as schema 2 left it: this schema without the two tables of 3 and the two probe
    columns of 4, version 2."""
    with Ledger.open(path) as ledger:
        ledger.started(100.0)
        ledger.record(Probe("a" * 32, "r", Status.SENT, 100.0, accepted_at=100.1))
        ledger.record_transition(Transition("r", Check.SEND, False, 101.0))
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TABLE webmail; DROP TABLE antivirus; UPDATE meta SET value = '2' WHERE key = 'schema';"
        "ALTER TABLE probes DROP COLUMN arrival_error_seconds; ALTER TABLE probes DROP COLUMN junked;"
    )
    conn.close()


def test_a_schema_2_ledger_gains_the_new_tables_with_nothing_lost(tmp_path: Path) -> None:
    """Opening upgrades 2 -> 3 -> 4 in place: probes and transitions stay, webmail rows can be
    added."""
    path = tmp_path / "l.db"
    _schema_2(path)
    with pytest.raises(sqlite3.DatabaseError, match="schema 2"):
        Ledger.open_readonly(path)  # a report never upgrades
    with Ledger.open(path) as ledger:
        assert SCHEMA_VERSION == 4
        assert ledger.probe("a" * 32) is not None
        assert ledger.transitions() == [Transition("r", Check.SEND, False, 101.0)]
        assert ledger.record_webmail(WebmailSample("w", 200.0, "http", True, 0.5))
    with Ledger.open_readonly(path) as ledger:
        assert [s.seconds for s in ledger.webmail(0, 1e9)] == [0.5]


def test_webmail_samples_and_their_transitions_round_trip_and_are_not_mail(tmp_path: Path) -> None:
    """A sample is stored once with every field; webmail transitions are no route's."""
    sample = WebmailSample("portal", 10.0, "browser", False, 12.5, "timeout", "inbox", 200, 2,
                           1.9e9, {"load": 3.0, "ready": 9.5})  # fmt: skip
    with Ledger.open(tmp_path / "l.db") as ledger:
        assert ledger.record_webmail(sample)
        assert not ledger.record_webmail(sample)  # the same load twice is stored once
        ledger.record_transition(Transition("portal", Check.WEBMAIL, False, 10.0))
        assert ledger.webmail(0, 100) == [sample]
        assert ledger.webmail(10.5, 100) == []
        assert ledger.webmail_transitions() == [Transition("portal", Check.WEBMAIL, False, 10.0)]
        assert ledger.transitions() == []  # never a mail check
        assert ledger.routes() == []


def test_an_antivirus_test_once_decided_is_never_pending_again(tmp_path: Path) -> None:
    """Outcomes move forward only; the follow-up probe can still be added to a decided test."""
    test = AntivirusTest("b" * 32, "r", 50.0)
    with Ledger.open(tmp_path / "l.db") as ledger:
        assert ledger.record_antivirus(test)
        assert [t.outcome for t in ledger.antivirus(pending=True)] == [Outcome.PENDING]
        refused = test.decide(Outcome.REFUSED, 51.0, reply_code=554, detail="5.7.1 virus")
        assert ledger.record_antivirus(refused)
        assert not ledger.record_antivirus(test)  # a stale pending record changes nothing
        assert ledger.record_antivirus(replace(refused, follow_up="c" * 32))
        (stored,) = ledger.antivirus()
        assert stored.outcome is Outcome.REFUSED
        assert stored.reply_code == 554
        assert stored.follow_up == "c" * 32
        assert ledger.antivirus(pending=True) == []
