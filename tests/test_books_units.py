"""Bookkeeping on its own: the order of writes, exported floors, late arrivals, compaction."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mailprobe.agent.bookkeeping import (
    EXPORTED_FILE,
    LEDGER_FILE,
    Bookkeeping,
    open_ledger_readonly,
)
from mailprobe.agent.config import Config, parse_config
from mailprobe.agent.inflight import Sighting
from mailprobe.agent.ledger import MIN_RETENTION, Ledger
from mailprobe.agent.results import ProbeResult, Status

T0 = 1_800_000_000.0


class Clock:
    """A settable time source."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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


def arrived(probe_id: str, sent: float, at: float) -> ProbeResult:
    return ProbeResult(probe_id, "r", Status.OK, sent, sent + 0.1, at, at - sent)


def test_nothing_is_written_before_open(tmp_path: Path) -> None:
    """Without open() (probe-once) every result passes and no state dir is created."""
    books = Bookkeeping(config(tmp_path / "state"), Clock())
    assert books.record(arrived("a" * 32, T0, T0 + 1))
    books.tick(T0 + 5)
    books.close()
    assert not (tmp_path / "state").exists()


def test_a_result_is_in_the_ledger_before_it_counts_and_only_once(tmp_path: Path) -> None:
    """record() writes the row, then accounting; the same result again is not news."""
    clock = Clock()
    books = Bookkeeping(config(tmp_path), clock)
    assert books.open() == []
    books.submitted("a" * 32, "r", T0, T0 + 0.1, phases={"smtp_connect": 0.01}, reply_code=250)
    result = arrived("a" * 32, T0, T0 + 2)
    assert books.record(result)
    assert not books.record(result)
    assert books.ledger is not None
    stored = books.ledger.probe("a" * 32)
    assert stored is not None
    assert (stored.status, stored.delay_seconds) == ("ok", 2.0)
    books.close()


def test_receive_deadline_passing_asks_for_a_retry_once(tmp_path: Path) -> None:
    """An accepted probe not seen within receive_deadline triggers one retry request."""
    clock = Clock()
    asked: list[str] = []
    books = Bookkeeping(config(tmp_path, receive_deadline="5m"), clock, asked.append)
    books.open()
    books.submitted("b" * 32, "r", T0, T0 + 0.1, phases={}, reply_code=250)
    books.tick(T0 + 299.9)
    assert asked == []
    books.tick(T0 + 300.0)
    books.tick(T0 + 305.0)
    assert asked == ["r"]
    late = ProbeResult("b" * 32, "r", Status.OK, T0, T0 + 0.1, T0 + 400, 400.0)
    assert books.record(late)
    assert asked == ["r"]  # already asked for when the deadline passed
    books.close()


def test_a_lost_probe_that_turns_up_is_late_with_its_true_delay(tmp_path: Path) -> None:
    """A probe given up as lost and seen later is matched from the ledger: late, real delay."""
    clock = Clock()
    books = Bookkeeping(config(tmp_path), clock)
    books.open()
    books.submitted("c" * 32, "r", T0, T0 + 0.1, phases={}, reply_code=250)
    assert books.record(ProbeResult("c" * 32, "r", Status.LOST, T0, T0 + 0.1, reason="lost"))
    late = books.late_arrival(Sighting("c" * 32, T0 + 90000.0))
    assert late is not None
    assert (late.status, late.delay_seconds) == (Status.LATE, 90000.0)
    assert books.record(late)
    assert books.late_arrival(Sighting("c" * 32, T0 + 90001.0)) is None
    assert books.late_arrival(Sighting("d" * 32, T0)) is None  # never sent by us
    books.close()


def test_exported_totals_never_go_below_what_was_exported_before(tmp_path: Path) -> None:
    """After a restart the counters start from the larger of the ledger's and the last export,
    so Prometheus never sees a decrease (which it would take for a reset)."""
    clock = Clock()
    books = Bookkeeping(config(tmp_path), clock)
    books.open()
    clock.now = T0 + 100
    books.tick(clock.now)
    books.close()
    exported = json.loads((tmp_path / EXPORTED_FILE).read_text())
    assert exported["all\tany\tobserved"] == 100.0
    exported["all\tany\tobserved"] = 130.0  # a previous process got further than the ledger
    (tmp_path / EXPORTED_FILE).write_text(json.dumps(exported))
    clock.now = T0 + 200
    books = Bookkeeping(config(tmp_path), clock)
    books.open()
    totals = books.snapshot.totals
    assert [t.observed for (route, _), t in totals.items() if route == "all"] == [130.0]
    assert [t.observed for (route, _), t in totals.items() if route == "r"] == [100.0] * 3
    clock.now = T0 + 250
    books.tick(clock.now)
    assert [t.observed for (route, _), t in books.snapshot.totals.items()] == [150.0] * 4
    books.close()


def test_compaction_at_start_folds_old_rows_and_keeps_the_totals(tmp_path: Path) -> None:
    """A run older than the retention is folded into the baseline when the agent starts."""
    clock = Clock()
    books = Bookkeeping(config(tmp_path), clock)
    books.open()
    books.submitted("e" * 32, "r", T0 + 1, T0 + 1.1, phases={}, reply_code=250)
    books.record(arrived("e" * 32, T0 + 1, T0 + 2))
    clock.now = T0 + 60
    books.tick(clock.now)
    books.close()
    clock.now = T0 + MIN_RETENTION + 3600
    books = Bookkeeping(config(tmp_path), clock)
    books.open()
    assert books.ledger is not None
    assert books.ledger.probe("e" * 32) is None
    assert [t.observed for t in books.snapshot.totals.values()] == [60.0] * 4
    books.close()
    with open_ledger_readonly(tmp_path / LEDGER_FILE) as ledger:
        assert ledger.baseline()[("all", "any", "observed")] == 60.0


def test_probes_of_a_route_no_longer_configured_are_matched_from_the_ledger(
    tmp_path: Path,
) -> None:
    """After a config change drops a route, its probes in flight are not tracked (and ask for no
    retry), but one that arrives is still matched, from its ledger row."""
    with Ledger.open(tmp_path / LEDGER_FILE) as ledger:
        ledger.started(T0)
        ledger.record_sent("f" * 32, "gone", T0, T0 + 0.1)
        ledger.heartbeat(T0 + 5)
    clock = Clock(T0 + 10)
    asked: list[str] = []
    books = Bookkeeping(config(tmp_path), clock, asked.append)
    assert books.open() == []
    clock.now = T0 + 400
    books.tick(clock.now)
    assert asked == []
    late = books.late_arrival(Sighting("f" * 32, T0 + 20))
    assert late is not None
    assert (late.route, late.status, late.delay_seconds) == ("gone", Status.OK, 20.0)
    assert books.record(late)
    books.close()
