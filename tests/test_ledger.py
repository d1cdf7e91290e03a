"""Ledger: durable rows, idempotent results, restart continuity, compaction that keeps totals."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mailprobe.agent.accounting import ALL_ROUTES, Accounting, Check, Transition
from mailprobe.agent.ledger import MIN_RETENTION, Ledger
from mailprobe.agent.results import ProbeResult, Status
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import RecurringWindow
from tests.test_accounting_support import Sim

SLA = SlaConfig()


def ok(pid: str, sent: float, delay: float = 2.0, status: Status = Status.OK) -> ProbeResult:
    return ProbeResult(pid, "a", status, sent, sent + 0.5, sent + delay, delay)


def test_ledger_runs_in_wal_mode_with_an_fsync_per_commit(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "state" / "ledger.db") as ledger:
        conn = ledger._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_result_seen_twice_is_stored_once_and_reported_as_nothing_new(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        assert ledger.record_sent("p1", "a", 100.0, 100.5)
        assert not ledger.record_sent("p1", "a", 100.0, 100.5)
        assert ledger.record_result(ok("p1", 100.0))
        assert not ledger.record_result(ok("p1", 100.0))
        stored = ledger.probe("p1")
        assert stored is not None
        assert (stored.status, stored.delay_seconds) == ("ok", 2.0)


def test_status_only_moves_forward_and_a_lost_probe_may_still_arrive(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.record_sent("p1", "a", 100.0, 100.5)
        lost = ProbeResult("p1", "a", Status.LOST, 100.0, 100.5, reason="lost")
        overdue = ProbeResult("p1", "a", Status.OVERDUE, 100.0, 100.5)
        assert ledger.record_result(lost)
        assert not ledger.record_result(overdue)
        assert ledger.in_flight() == []
        assert [p.probe_id for p in ledger.in_flight(include_lost=True)] == ["p1"]
        assert ledger.record_result(ok("p1", 100.0, 5000.0, Status.LATE))
        assert not ledger.record_result(lost)
        stored = ledger.probe("p1")
        assert stored is not None
        assert (stored.status, stored.delay_seconds) == ("late", 5000.0)


def test_in_flight_lists_accepted_probes_not_yet_seen(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.record_sent("p1", "a", 100.0, 100.5, phases={"smtp_connect": 0.1}, reply_code=250)
        ledger.record_sent("p2", "a", 160.0, 160.5)
        ledger.record_result(ok("p2", 160.0))
        (flying,) = ledger.in_flight()
        assert (flying.probe_id, flying.sent_at, flying.reply_code) == ("p1", 100.0, 250)
        assert dict(flying.phases) == {"smtp_connect": 0.1}


def test_rows_survive_sigkill_and_the_run_ends_at_its_last_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        from mailprobe.agent.ledger import Ledger
        ledger = Ledger.open({str(path)!r})
        ledger.started(1000.0)
        ledger.record_sent("p1", "a", 1001.0, 1001.5)
        ledger.heartbeat(1015.0)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path.cwd(), check=False)
    assert proc.returncode == -9
    with Ledger.open(path) as ledger:
        assert ledger.runs() == [(1000.0, 1015.0)]
        assert [p.probe_id for p in ledger.in_flight()] == ["p1"]


def _scenario(sim: Sim) -> None:
    """An outage spanning the restart instant, a suspicion pending at it, and a 70-minute probe."""
    sim.start(0.0)
    sim.steady("a", 0, 1000)
    for t in range(1000, 1300, 15):
        sim.probe("a", t, send_fail=True)
    sim.steady("a", 1300, 2000)
    sim.probe("a", 2000, delay=4200.0, probe_id="slow")
    sim.steady("a", 2060, 2990)
    sim.probe("a", 2990, send_fail=True)  # pending at the restart at 3000
    sim.probe("a", 3005, send_fail=True)
    for t in range(3020, 3500, 15):
        sim.probe("a", t, send_fail=True)
    sim.steady("a", 3500, 8000)


def test_restart_continues_totals_and_counts_each_probe_once(tmp_path: Path) -> None:
    """Killed at 3000 and restarted at once: same transitions and totals as a run never stopped."""
    with Ledger.open(tmp_path / "straight.db") as ledger:
        straight = Sim(Accounting(("a",), SLA, clock=lambda: 0.0), ledger)
        _scenario(straight)
        straight.run(8000)
        expected = straight.acc.snapshot(8000)
        expected_trs = ledger.transitions()

    first = Ledger.open(tmp_path / "restarted.db")
    sim = Sim(Accounting(("a",), SLA, clock=lambda: 0.0), first)
    _scenario(sim)
    sim.run(3000)
    sim.stop(3000, kill=True)
    sim.run(3000)
    first.close()

    ledger = Ledger.open(tmp_path / "restarted.db")
    acc = Accounting(("a",), SLA, clock=lambda: 0.0)
    for tr in acc.restore(ledger):
        ledger.record_transition(tr)
    sim.acc, sim.ledger = acc, ledger
    sim.start(3000)
    sim.run(8000)
    got = acc.snapshot(8000)
    assert got.totals == expected.totals
    assert got.over_max == expected.over_max == {"a": 1}
    assert ledger.transitions() == expected_trs
    assert expected_trs == [
        Transition("a", Check.SEND, False, 1000.0),
        Transition("a", Check.SEND, True, 1300.0),
        Transition("a", Check.SEND, False, 2990.0),
        Transition("a", Check.SEND, True, 3500.0),
    ]
    slow = ledger.probe("slow")
    assert slow is not None
    assert (slow.status, slow.delay_seconds) == ("late", 4200.0)
    assert got.totals[(ALL_ROUTES, Check.ANY)].down == pytest.approx(810.0)
    ledger.close()


def test_restart_after_a_gap_leaves_the_gap_unobserved(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        sim = Sim(Accounting(("a",), SLA, clock=lambda: 0.0), ledger)
        sim.start(0.0)
        sim.steady("a", 0, 1000)
        for t in range(1000, 1200, 15):
            sim.probe("a", t, send_fail=True)
        sim.run(1200)
        sim.stop(1200, kill=True)
        sim.run(1200)
        acc = Accounting(("a",), SLA, clock=lambda: 0.0)
        acc.restore(ledger)
        sim.acc = acc
        sim.start(4800)
        sim.steady("a", 4800, 6000)
        sim.run(6000)
        totals = acc.snapshot(6000).totals[("a", Check.SEND)]
        assert totals.observed == pytest.approx(1200.0 + 1200.0)
        assert totals.down == pytest.approx(200.0)  # [1000, 1200) then up at 4800


def test_compaction_keeps_totals_and_at_least_the_retention_floor(tmp_path: Path) -> None:
    day = 86400.0
    window = RecurringWindow.model_validate(
        {"name": "sun", "weekly": ["sun"], "start": "02:00", "duration": "2h"}
    )
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.started(0.0)
        ledger.stopped(200 * day)
        ledger.started(201 * day)
        ledger.heartbeat(500 * day)
        for i, at in enumerate((10 * day, 60 * day + 3600, 90 * day, 120 * day, 450 * day)):
            ledger.record_transition(Transition("a", Check.SEND, i % 2 == 1, at))
        ledger.record_transition(Transition("a", Check.RECEIVE, False, 30 * day))
        ledger.record_transition(Transition("a", Check.RECEIVE, True, 30 * day + 7200))
        ledger.record_sent("old", "a", 5 * day, 5 * day + 1)
        ledger.record_result(
            ProbeResult("old", "a", Status.LATE, 5 * day, 5 * day + 1, 5 * day + 9000, 9000.0)
        )
        ledger.record_sent("new", "a", 480 * day, 480 * day + 1)

        def totals() -> dict[object, object]:
            acc = Accounting(("a",), SLA, (window,), clock=lambda: 500 * day)
            acc.restore(ledger)
            snap = acc.snapshot(500 * day)
            return {"totals": snap.totals, "over": snap.over_max}

        before = totals()
        cut = ledger.compact(500 * day, retention=30 * day, delay_maximum=3600.0, windows=(window,))
        assert cut == 500 * day - MIN_RETENTION
        after = totals()
        assert after == before
        assert ledger.probe("old") is None
        assert ledger.probe("new") is not None
        assert ledger.runs()[0][0] == cut
        assert ledger.transitions()[0] == Transition("a", Check.SEND, False, cut)
