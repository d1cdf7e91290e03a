"""Ledger: durable rows, idempotent results, restart continuity, compaction that keeps totals."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mailprobe.agent.accounting import Accounting, MailboxEvent
from mailprobe.agent.checks import ALL_ROUTES, Check, Transition
from mailprobe.agent.compaction import compact
from mailprobe.agent.config import MIN_RETENTION
from mailprobe.agent.ledger import PROBE_FIELDS, Ledger
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import RecurringWindow
from mailprobe.probes.errors import Phase, Reason
from tests.helpers.sim import Sim

SLA = SlaConfig()


def sent(pid: str, at: float, **fields: object) -> Probe:
    return Probe(pid, "a", Status.SENT, at, accepted_at=at + 0.5, **fields)  # type: ignore[arg-type]


def ok(pid: str, at: float, delay: float = 2.0, status: Status = Status.OK) -> Probe:
    return Probe(pid, "a", status, at, accepted_at=at + 0.5, arrived_at=at + delay,
                 delay_seconds=delay)  # fmt: skip


def restored(ledger: Ledger, acc: Accounting) -> Accounting:
    for tr in acc.restore(ledger.history(replay_seconds=acc.replay_seconds)):
        ledger.record_transition(tr)
    return acc


def test_ledger_runs_in_wal_mode_with_an_fsync_per_commit(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "state" / "ledger.db") as ledger:
        conn = ledger._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_record_seen_twice_is_stored_once_and_reported_as_nothing_new(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        assert ledger.record(sent("p1", 100.0))
        assert not ledger.record(sent("p1", 100.0))
        assert ledger.record(ok("p1", 100.0))
        assert not ledger.record(ok("p1", 100.0))
        stored = ledger.probe("p1")
        assert stored is not None
        assert (stored.status, stored.delay_seconds) == (Status.OK, 2.0)


def test_every_field_of_a_probe_comes_back_as_it_was_stored(tmp_path: Path) -> None:
    """Rows map to records by field name: nothing is lost or renamed on the way."""
    probe = Probe(
        "p1", "a", Status.LATE, 100.0, accepted_at=100.5, arrived_at=4300.0,
        delay_seconds=4200.0, reply_code=250, phases={"smtp_connect": 0.1, "delivery": 4199.5},
        internaldate=4299.0, received=("from a by b", "from c by d"), send_delay_seconds=1.25,
        receive_delay_seconds=2.5, clock_skew_seconds=0.75, found_late=True, overdue_at=3700.0,
        lost_at=None, over_max_at=3700.0, arrival_error_seconds=0.021, junked=True,
    )  # fmt: skip
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.record(probe)
        assert ledger.probe("p1") == probe
    failed = Probe("p2", "a", Status.FAILED, 5.0, phase=Phase.SMTP_AUTH, reason=Reason.AUTH,
                   reply_code=535)  # fmt: skip
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.record(failed)
        assert ledger.probe("p2") == failed
    assert set(PROBE_FIELDS) == set(Probe.__dataclass_fields__)


@pytest.mark.parametrize("junked", [True, False, None])
def test_junked_keeps_all_three_answers(tmp_path: Path, junked: bool | None) -> None:
    """In the junk folder, in the inbox with the junk folder watched, or not known: all kept."""
    probe = Probe("p1", "a", Status.OK, 1.0, accepted_at=1.0, arrived_at=2.0, delay_seconds=1.0,
                  junked=junked)  # fmt: skip
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.record(probe)
        stored = ledger.probe("p1")
        assert stored is not None
        assert stored.junked is junked
        assert ledger.counts()[("a", "junked")] == (1 if junked else 0)


def test_status_only_moves_forward_and_a_lost_probe_may_still_arrive(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.record(sent("p1", 100.0))
        overdue = sent("p1", 100.0).overdue(3700.0)
        lost = overdue.lost(86500.0)
        assert ledger.record(lost)
        assert not ledger.record(overdue)
        assert ledger.in_flight() == []
        assert [p.probe_id for p in ledger.in_flight(include_lost=True)] == ["p1"]
        late = lost.arrive(90000.0)
        assert ledger.record(late)
        assert not ledger.record(lost)
        stored = ledger.probe("p1")
        assert stored is not None
        assert (stored.status, stored.delay_seconds) == (Status.LATE, 89900.0)
        assert (stored.overdue_at, stored.lost_at) == (3700.0, 86500.0)


def test_a_new_mark_on_the_same_status_is_news(tmp_path: Path) -> None:
    """A probe past the delay maximum while still `sent` is stored with its mark."""
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.record(sent("p1", 100.0))
        assert ledger.record(sent("p1", 100.0).past_maximum(3700.0))
        stored = ledger.probe("p1")
        assert stored is not None
        assert stored.over_max_at == 3700.0


def test_in_flight_lists_accepted_probes_not_yet_seen(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        ledger.record(sent("p1", 100.0, phases={"smtp_connect": 0.1}, reply_code=250))
        ledger.record(sent("p2", 160.0))
        ledger.record(ok("p2", 160.0))
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
        from mailprobe.agent.probe import Probe
        ledger.record(Probe("p1", "a", "sent", 1001.0, accepted_at=1001.5))
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
    acc = restored(ledger, Accounting(("a",), SLA, clock=lambda: 0.0))
    sim.acc, sim.ledger = acc, ledger
    for probe in ledger.in_flight():
        sim.inflight.add(probe)
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
    assert (slow.status, slow.delay_seconds, slow.over_max_at) == (Status.LATE, 4200.0, 5600.0)
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
        acc = restored(ledger, Accounting(("a",), SLA, clock=lambda: 0.0))
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
        old = Probe("old", "a", Status.SENT, 5 * day, accepted_at=5 * day + 1)
        ledger.record(old.overdue(5 * day + 3600).past_maximum(5 * day + 3600).arrive(5 * day + 9000))
        ledger.record(Probe("fail", "a", Status.FAILED, 6 * day, phase=Phase.SMTP_TLS, reason=Reason.TLS))
        ledger.record(Probe("new", "a", Status.SENT, 480 * day, accepted_at=480 * day + 1))
        ledger.record_mailbox(MailboxEvent("a", False, 7 * day, "auth"))

        def totals() -> dict[object, object]:
            acc = Accounting(("a",), SLA, (window,), clock=lambda: 500 * day)
            acc.restore(ledger.history(replay_seconds=acc.replay_seconds))
            snap = acc.snapshot(500 * day)
            return {"totals": snap.totals, "over": snap.over_max, "counts": ledger.counts()}

        before = totals()
        cut = compact(ledger, 500 * day, retention=30 * day, windows=(window,))
        assert cut == 500 * day - MIN_RETENTION
        after = totals()
        assert after == before
        assert ledger.counts()[("a", "failed:smtp_tls:tls")] == 1
        assert ledger.counts()[("a", "sent")] == 3
        assert ledger.mailbox_events() == []
        assert ledger.probe("old") is None
        assert ledger.probe("new") is not None
        assert ledger.runs()[0][0] == cut
        assert ledger.transitions()[0] == Transition("a", Check.SEND, False, cut)
