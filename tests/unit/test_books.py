"""The books on their own: order of writes, counts and floors across restarts, late arrivals,
compaction, and a ledger that cannot be written for a while."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mailprobe.agent.books import EXPORTED_FILE, LEDGER_FILE, Books
from mailprobe.agent.checks import ALL_ROUTES, Check, Transition
from mailprobe.agent.config import MIN_RETENTION, Config, parse_config
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Sighting, Status
from mailprobe.probes.errors import Phase, Reason
from tests.helpers.clock import FakeClock

T0 = 1_800_000_000.0


def config(state: Path, **sla: Any) -> Config:
    os.environ["MP_BOOKS_SECRET"] = "s"
    os.environ["MP_BOOKS_PW"] = "pw"
    endpoint = {"host": "mail.example.test", "username": "p@example.test",
                "password_env": "MP_BOOKS_PW"}  # fmt: skip
    return parse_config(
        {
            "agent": {"secret_env": "MP_BOOKS_SECRET", "state_dir": str(state)},
            "accounts": {
                "p": {
                    "address": "p@example.test",
                    "smtp": {**endpoint, "port": 587},
                    "imap": {**endpoint, "port": 993},
                }
            },
            "routes": [{"name": "r", "from": "p", "to": "p"}],
            "sla": sla,
        }
    )


def sent(pid: str, at: float = T0) -> Probe:
    return Probe(pid, "r", Status.SENT, at, accepted_at=at + 0.1, reply_code=250)


def test_without_a_ledger_records_flow_and_nothing_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not opened (probe-once): records reach the listeners, no state dir is created, and no
    file is tried (nothing logged about an exported.json it cannot write)."""
    books = Books(config(tmp_path / "state"), FakeClock(T0).time)
    seen: list[Probe] = []
    books.listen(seen.append)
    books.submitted(sent("a" * 32))
    assert books.arrival(Sighting("a" * 32, T0 + 1)) is not None
    books.tick(T0 + 5)
    books.close()
    assert [p.status for p in seen] == [Status.SENT, Status.OK]
    assert not (tmp_path / "state").exists()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


def test_a_record_is_in_the_ledger_before_listeners_hear_of_it_and_only_once(
    tmp_path: Path,
) -> None:
    """The ledger row exists when a listener is called; the same arrival again is nothing."""
    books = Books(config(tmp_path), FakeClock(T0).time)
    assert books.open() == []
    rows: list[Status | None] = []
    books.listen(lambda p: rows.append(_stored_status(tmp_path, p.probe_id)))
    books.submitted(sent("a" * 32))
    assert books.arrival(Sighting("a" * 32, T0 + 2)) is not None
    assert books.arrival(Sighting("a" * 32, T0 + 3)) is None
    assert rows == [Status.SENT, Status.OK]
    books.close()


def _stored_status(state: Path, pid: str) -> Status | None:
    with Ledger.open_readonly(state / LEDGER_FILE) as ledger:
        stored = ledger.probe(pid)
    return stored.status if stored else None


def test_a_missed_receive_deadline_asks_for_a_retry(tmp_path: Path) -> None:
    """An accepted probe not seen within receive_deadline wakes the route once."""
    clock = FakeClock(T0)
    asked: list[str] = []
    books = Books(config(tmp_path, receive_deadline="5m"), clock.time, asked.append)
    books.open()
    books.submitted(sent("b" * 32))
    books.tick(T0 + 299.9)
    assert asked == []
    books.tick(T0 + 300.0)
    books.tick(T0 + 305.0)
    assert asked == ["r"]
    assert books.unsettled("r")
    books.close()


def test_a_lost_probe_that_turns_up_is_late_with_its_true_delay(tmp_path: Path) -> None:
    """A probe lost (and let go) is matched from the ledger when it turns up: late, real delay."""
    clock = FakeClock(T0)
    books = Books(config(tmp_path), clock.time)
    books.open()
    books.submitted(sent("c" * 32))
    clock.now = T0 + 86400
    books.sweep(clock.now)
    assert len(books.inflight) == 0
    late = books.arrival(Sighting("c" * 32, T0 + 90000.0))
    assert late is not None
    assert (late.status, late.delay_seconds, late.lost_at) == (Status.LATE, 90000.0, T0 + 86400)
    assert books.arrival(Sighting("c" * 32, T0 + 90001.0)) is None
    assert books.arrival(Sighting("d" * 32, T0)) is None  # never sent by us
    books.close()


def test_probe_counters_continue_from_the_ledger_after_a_restart(tmp_path: Path) -> None:
    """sent/received/failed counts after a restart are those of the run before, then grow."""
    clock = FakeClock(T0)
    books = Books(config(tmp_path), clock.time)
    books.open()
    books.submitted(sent("e" * 32))
    books.arrival(Sighting("e" * 32, T0 + 1))
    books.submitted(Probe("f" * 32, "r", Status.FAILED, T0 + 2, phase=Phase.SMTP_AUTH,
                          reason=Reason.AUTH))  # fmt: skip
    books.close()  # as good as a SIGKILL for the counts: they come from the ledger's rows
    books = Books(config(tmp_path), clock.time)
    books.open()
    exp = books.exported
    assert exp.counts[("r", "sent")] == 2
    assert exp.counts[("r", "received")] == 1
    assert exp.failures[("r", "smtp_auth", "auth")] == 1
    books.submitted(sent("g" * 32, T0 + 3))
    assert books.exported.counts[("r", "sent")] == 3
    books.close()


def test_exported_totals_never_go_below_what_was_exported_before(tmp_path: Path) -> None:
    """After a restart every series starts from the larger of the ledger's and the last export,
    so Prometheus never sees a decrease (which it would take for a reset)."""
    clock = FakeClock(T0)
    books = Books(config(tmp_path), clock.time)
    books.open()
    clock.now = T0 + 100
    books.tick(clock.now)
    books.close()
    saved = json.loads((tmp_path / EXPORTED_FILE).read_text())
    key = 'mailprobe_observed_seconds_total{check="any",route="all"}'
    assert saved["series"][key] == 100.0
    saved["series"][key] = 130.0  # a previous process got further than the ledger
    saved["series"]['mailprobe_probes_sent_total{route="r"}'] = 7.0
    (tmp_path / EXPORTED_FILE).write_text(json.dumps(saved))
    clock.now = T0 + 200
    books = Books(config(tmp_path), clock.time)
    books.open()
    seconds = books.exported.seconds
    assert seconds[(ALL_ROUTES, Check.ANY)].observed == 130.0
    assert [t.observed for (route, _), t in seconds.items() if route == "r"] == [100.0] * 3
    assert books.exported.counts[("r", "sent")] == 7.0
    clock.now = T0 + 250
    books.tick(clock.now)
    assert [t.observed for t in books.exported.seconds.values()] == [150.0] * 4
    books.close()


def test_an_exported_file_of_the_first_format_is_read(tmp_path: Path) -> None:
    """Floors written by an older agent ("route<TAB>check<TAB>kind") still hold."""
    (tmp_path / EXPORTED_FILE).write_text(json.dumps({"all\tany\tobserved": 500.0,
                                                      "r\t\tover_max": 3.0}))  # fmt: skip
    books = Books(config(tmp_path), FakeClock(T0).time)
    books.open()
    assert books.exported.seconds[(ALL_ROUTES, Check.ANY)].observed == 500.0
    assert books.exported.over_max["r"] == 3.0
    books.close()


def test_compaction_at_start_folds_old_rows_and_keeps_the_totals(tmp_path: Path) -> None:
    """A run older than the retention is folded into the baseline when the agent starts."""
    clock = FakeClock(T0)
    books = Books(config(tmp_path), clock.time)
    books.open()
    books.submitted(sent("e" * 32, T0 + 1))
    books.arrival(Sighting("e" * 32, T0 + 2))
    clock.now = T0 + 60
    books.tick(clock.now)
    books.close()
    (tmp_path / EXPORTED_FILE).unlink()  # the totals must come from the ledger alone
    clock.now = T0 + MIN_RETENTION + 3600
    books = Books(config(tmp_path), clock.time)
    books.open()
    assert [t.observed for t in books.exported.seconds.values()] == [60.0] * 4
    assert books.exported.counts[("r", "received")] == 1
    books.close()
    with Ledger.open_readonly(tmp_path / LEDGER_FILE) as ledger:
        assert ledger.probe("e" * 32) is None
        assert ledger.baseline()[("all", "any", "observed")] == 60.0


def test_probes_of_a_route_no_longer_configured_are_matched_from_the_ledger(
    tmp_path: Path,
) -> None:
    """After a config change drops a route, its probes in flight are not held (and ask for no
    retry), but one that arrives is still matched, from its ledger row."""
    with Ledger.open(tmp_path / LEDGER_FILE) as ledger:
        ledger.started(T0)
        ledger.record(Probe("f" * 32, "gone", Status.SENT, T0, accepted_at=T0 + 0.1))
        ledger.heartbeat(T0 + 5)
    clock = FakeClock(T0 + 10)
    asked: list[str] = []
    books = Books(config(tmp_path), clock.time, asked.append)
    assert books.open() == []
    clock.now = T0 + 400
    books.tick(clock.now)
    late = books.arrival(Sighting("f" * 32, T0 + 20))
    assert late is not None
    assert (late.route, late.status, late.delay_seconds) == ("gone", Status.OK, 20.0)
    books.close()


def test_a_ledger_that_cannot_be_written_keeps_records_and_writes_them_once_it_can(
    tmp_path: Path,
) -> None:
    """Records made while writes fail are kept in order and stored once, none twice."""
    clock = FakeClock(T0)
    books = Books(config(tmp_path), clock.time)
    books.open()
    books.submitted(sent("h" * 32))
    journal = books.journal
    assert journal is not None
    real = journal._ledger
    failing = _FailingLedger(real)
    journal._ledger = failing  # type: ignore[assignment]
    books.arrival(Sighting("h" * 32, T0 + 1))
    books.submitted(sent("i" * 32, T0 + 2))
    books.tick(T0 + 5)
    assert books.ledger_error is not None
    assert "disk I/O error" in books.ledger_error
    assert journal.pending >= 2
    assert books.exported.counts[("r", "received")] == 1  # counted when it happened
    failing.broken = False
    books.tick(T0 + 10)
    assert books.ledger_error is None
    assert journal.pending == 0
    books.close()
    with Ledger.open_readonly(tmp_path / LEDGER_FILE) as ledger:
        stored = ledger.probe("h" * 32)
        assert stored is not None
        assert stored.status is Status.OK
        assert ledger.counts()[("r", "sent")] == 2


class _FailingLedger:
    """The real ledger, whose writes fail while ``broken`` as on a full disk."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.broken = True

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ledger, name)
        if name in {"record", "record_transition", "record_mailbox", "heartbeat"}:

            def guarded(*args: Any, **kwargs: Any) -> Any:
                if self.broken:
                    raise sqlite3.OperationalError("disk I/O error")
                return attr(*args, **kwargs)

            return guarded
        return attr


@pytest.mark.parametrize("found_late", [False, True])
def test_a_found_late_arrival_keeps_its_flag_and_enters_no_delay(
    tmp_path: Path, found_late: bool
) -> None:
    """Found at reconnect: recorded, counted as received, its delay not a measurement."""
    books = Books(config(tmp_path), FakeClock(T0).time)
    books.open()
    books.submitted(sent("j" * 32))
    got = books.arrival(Sighting("j" * 32, T0 + 30, found_late=found_late))
    assert got is not None
    assert got.found_late is found_late
    assert (got.measured_delay is None) is found_late
    assert books.exported.counts[("r", "received")] == 1
    books.close()


def test_a_route_dropped_while_down_ends_its_outage_where_the_run_before_ended(
    tmp_path: Path,
) -> None:
    """The ledger has route `gone` down when its agent stops; restarted without it, the outage
    ends at the old run's last heartbeat instead of adding to the account's downtime for ever."""
    ledger = Ledger.open(tmp_path / LEDGER_FILE)
    ledger.started(T0)
    ledger.record_transition(Transition("gone", Check.SEND, False, T0 + 10))
    ledger.heartbeat(T0 + 100)
    ledger.close()  # as after a kill: no stop recorded
    clock = FakeClock(T0 + 200)
    books = Books(config(tmp_path), clock.time)
    books.open()
    books.tick(T0 + 1000)
    snap = books.acc.snapshot(T0 + 1000)
    books.close()
    assert snap.totals[(ALL_ROUTES, Check.ANY)].down == 90.0
    assert snap.up[(ALL_ROUTES, Check.ANY)]
    with Ledger.open_readonly(tmp_path / LEDGER_FILE) as ledger:
        gone = [t for t in ledger.transitions() if t.route == "gone" and t.check is Check.SEND]
    assert [(t.up, t.at) for t in gone] == [(False, T0 + 10), (True, T0 + 100)]
