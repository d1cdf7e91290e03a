"""Accounting: confirmation, exact down periods, receive deadlines, windows, unions, totals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailprobe.agent.accounting import Accounting
from mailprobe.agent.checks import ALL_ROUTES, Check, CheckTotals, Transition
from mailprobe.agent.floors import Floors
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import OneOffWindow, RecurringWindow
from mailprobe.probes.errors import Phase
from tests.helpers.sim import Sim


def make(
    routes: tuple[str, ...] = ("a",),
    windows: tuple[OneOffWindow | RecurringWindow, ...] = (),
    lost_after: float = 10.0**9,
) -> tuple[Accounting, Sim]:
    acc = Accounting(routes, SlaConfig(), windows, clock=lambda: 0.0)
    sim = Sim(acc, lost_after=lost_after)
    sim.start(0.0)
    return acc, sim


def down(acc: Accounting, at: float, route: str = "a", check: Check = Check.SEND) -> float:
    return acc.snapshot(at).totals[(route, check)].down


def floored(floors: Floors, acc: Accounting, at: float, route: str = "a") -> float:
    """The send check's down seconds as exported: through the floors."""
    value = acc.snapshot(at).totals[(route, Check.SEND)].down
    return floors.apply("mailprobe_down_seconds_total", {"route": route, "check": "send"}, value)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def test_single_failure_followed_by_quick_success_is_a_glitch_not_downtime() -> None:
    acc, sim = make()
    sim.steady("a", 0, 1000)
    sim.probe("a", 1000, send_fail=True)
    sim.probe("a", 1015)
    sim.steady("a", 1075, 2000)
    sim.run(2000)
    snap = acc.snapshot(2000)
    assert snap.totals[("a", Check.SEND)] == CheckTotals(2000.0, 0.0, 0.0)
    assert snap.totals[(ALL_ROUTES, Check.ANY)].down == 0.0
    assert snap.glitches[("a", Check.SEND)] == 1
    assert sim.transitions == []


def test_confirmed_outage_runs_from_first_failure_to_first_success_to_the_sub_second() -> None:
    acc, sim = make()
    sim.steady("a", 0.25, 1000)
    sim.probe("a", 1000.25, send_fail=True)
    sim.probe("a", 1015.25, send_fail=True)
    for t in range(1075, 1600, 60):
        sim.probe("a", t + 0.25, send_fail=True)
    sim.probe("a", 1600.75)
    sim.steady("a", 1660.75, 3000)
    sim.run(3000)
    assert down(acc, 3000) == pytest.approx(600.5)
    assert down(acc, 3000, check=Check.CONNECTIVITY) == pytest.approx(600.5)
    assert down(acc, 3000, ALL_ROUTES, Check.ANY) == pytest.approx(600.5)
    assert down(acc, 3000, check=Check.RECEIVE) == 0.0
    assert sim.transitions == [
        Transition("a", Check.SEND, False, 1000.25),
        Transition("a", Check.CONNECTIVITY, False, 1000.25),
        Transition(ALL_ROUTES, Check.ANY, False, 1000.25),
        Transition("a", Check.SEND, True, 1600.75),
        Transition("a", Check.CONNECTIVITY, True, 1600.75),
        Transition(ALL_ROUTES, Check.ANY, True, 1600.75),
    ]
    assert acc.is_up("a", Check.SEND)


def test_accepted_but_undelivered_probes_make_receive_down_from_the_first_send_time() -> None:
    acc, sim = make()
    sim.steady("a", 0, 1000)
    sim.probe("a", 1000, delay=None)
    sim.probe("a", 1060, delay=None)
    sim.steady("a", 1120, 4000)
    sim.run(1299)
    assert acc.is_up("a", Check.RECEIVE)  # the deadline of the first probe has not passed yet
    sim.run(4000)
    assert down(acc, 4000, check=Check.RECEIVE) == pytest.approx(120.0)
    assert down(acc, 4000, check=Check.SEND) == 0.0
    assert down(acc, 4000, check=Check.CONNECTIVITY) == pytest.approx(120.0)
    base = [t for t in sim.transitions if t.check is Check.RECEIVE]
    assert base == [
        Transition("a", Check.RECEIVE, False, 1000.0),
        Transition("a", Check.RECEIVE, True, 1120.0),
    ]


def test_a_mailbox_that_cannot_be_opened_is_receive_down_until_a_probe_sent_after_it_is_back() -> None:
    """Down from the moment the mailbox went away; probes sent meanwhile end nothing."""
    acc, sim = make()
    sim.steady("a", 0, 1000)
    sim.mailbox("a", 1000.25, up=False)  # the session was lost then; the reconnect failed
    sim.mailbox("a", 1002.0, up=False)  # and the next attempt: confirmed
    sim.probe("a", 1015.0, delay=50.0)  # sent while it was away, seen only once it was back
    sim.mailbox("a", 1060.0, up=True)
    sim.probe("a", 1060.5)  # the first probe sent after it came back
    sim.steady("a", 1120.5, 2000)
    sim.run(2000)
    assert down(acc, 2000, check=Check.RECEIVE) == pytest.approx(60.25)
    assert [t for t in sim.transitions if t.check is Check.RECEIVE] == [
        Transition("a", Check.RECEIVE, False, 1000.25),
        Transition("a", Check.RECEIVE, True, 1060.5),
    ]


def test_a_mailbox_that_is_away_once_and_back_quickly_is_a_glitch() -> None:
    """One failed attempt, then a working session and a timely probe: no downtime."""
    acc, sim = make()
    sim.steady("a", 0, 1000)
    sim.mailbox("a", 1000.0, up=False)
    sim.mailbox("a", 1001.0, up=True)
    sim.probe("a", 1001.5)
    sim.steady("a", 1061.5, 2000)
    sim.run(2000)
    assert down(acc, 2000, check=Check.RECEIVE) == 0.0
    assert acc.snapshot(2000).glitches[("a", Check.RECEIVE)] == 1


def test_a_probe_found_late_says_nothing_of_the_receive_check() -> None:
    """A probe only found at reconnect neither ends nor starts a down period."""
    acc = Accounting(("a",), SlaConfig(), clock=lambda: 0.0)
    acc.started(0.0)
    sent = Probe("p1", "a", Status.SENT, 100.0, accepted_at=100.1)
    acc.record(sent)
    found = sent.arrive(130.0, found_late=True)
    assert found.receive_sample(300.0) is None
    acc.record(found)
    acc.tick(1000.0)
    assert acc.snapshot(1000.0).glitches[("a", Check.RECEIVE)] == 0
    assert acc.is_up("a", Check.RECEIVE)


def test_probe_delivered_after_70_minutes_counts_once_over_the_maximum() -> None:
    acc, sim = make()
    sim.steady("a", 0, 1000)
    sim.probe("a", 1000, delay=4200.0)
    sim.steady("a", 1060, 6000)
    sim.run(4599)
    assert acc.snapshot(4599).over_max["a"] == 0
    sim.run(4601)
    assert acc.snapshot(4601).over_max["a"] == 1
    sim.run(6000)
    snap = acc.snapshot(6000)
    assert snap.over_max["a"] == 1
    # One late probe among timely ones is a single receive failure: a glitch, not downtime.
    assert snap.totals[("a", Check.RECEIVE)].down == 0.0


def test_lost_probe_is_counted_over_the_maximum_once_it_passes_it() -> None:
    acc, sim = make(lost_after=1800.0)
    sim.steady("a", 0, 1000)
    sim.probe("a", 1000, delay=None)
    sim.steady("a", 1060, 5000)
    sim.run(5000)
    assert acc.snapshot(5000).over_max["a"] == 1
    assert len(sim.inflight) == 0


def test_maintenance_window_takes_its_share_out_of_downtime() -> None:
    window = OneOffWindow(name="upgrade", start=utc(1200), end=utc(1500))
    acc, sim = make(windows=(window,))
    sim.steady("a", 0, 1000)
    for t in range(1000, 1600, 15):
        sim.probe("a", t, send_fail=True)
    sim.steady("a", 1600, 2000)
    sim.run(2000)
    totals = acc.snapshot(2000).totals
    assert totals[("a", Check.SEND)] == CheckTotals(2000.0, 300.0, 300.0)
    assert totals[(ALL_ROUTES, Check.ANY)] == CheckTotals(2000.0, 300.0, 300.0)
    assert acc.snapshot(1300).maintenance_active == {"upgrade": True}
    assert acc.snapshot(1600).maintenance_active == {"upgrade": False}


def test_account_wide_any_counts_overlapping_route_outages_once() -> None:
    acc, sim = make(("a", "b"))
    for route, (lo, hi) in {"a": (1000, 1600), "b": (1300, 2000)}.items():
        sim.steady(route, 0, lo)
        for t in range(lo, hi, 15):
            sim.probe(route, t, send_fail=True)
        sim.steady(route, hi, 3000)
    sim.run(3000)
    totals = acc.snapshot(3000).totals
    assert totals[("a", Check.CONNECTIVITY)].down == pytest.approx(600.0)
    assert totals[("b", Check.CONNECTIVITY)].down == pytest.approx(700.0)
    assert totals[(ALL_ROUTES, Check.ANY)].down == pytest.approx(1000.0)


def test_connectivity_is_the_union_of_send_and_receive() -> None:
    acc, sim = make()
    sim.steady("a", 0, 1000)
    for t in range(1000, 1300, 15):  # send down [1000, 1300)
        sim.probe("a", t, send_fail=True)
    for t in range(1300, 1500, 60):  # then accepted but undelivered [1300, 1500)
        sim.probe("a", t, delay=None)
    sim.steady("a", 1500, 3000)
    sim.run(3000)
    totals = acc.snapshot(3000).totals
    assert totals[("a", Check.SEND)].down == pytest.approx(300.0)
    assert totals[("a", Check.RECEIVE)].down == pytest.approx(200.0)
    assert totals[("a", Check.CONNECTIVITY)].down == pytest.approx(500.0)


def test_time_the_agent_was_not_running_is_neither_up_nor_down() -> None:
    acc, sim = make()
    sim.steady("a", 0, 1000)
    for t in range(1000, 1200, 15):
        sim.probe("a", t, send_fail=True)
    sim.stop(1200)
    sim.start(1800)
    for t in range(1800, 1900, 15):
        sim.probe("a", t, send_fail=True)
    sim.steady("a", 1900, 2400)
    sim.run(2400)
    totals = acc.snapshot(2400).totals[("a", Check.SEND)]
    assert totals.observed == pytest.approx(1800.0)
    assert totals.down == pytest.approx(300.0)


def test_a_failure_nothing_clears_is_confirmed_on_tick() -> None:
    acc, sim = make()
    sim.steady("a", 0, 1000)
    sim.probe("a", 1000, send_fail=True)
    sim.run(1110)
    assert acc.is_up("a", Check.SEND)
    sim.run(1140)
    assert not acc.is_up("a", Check.SEND)
    assert not acc.is_up(ALL_ROUTES, Check.ANY)
    sim.probe("a", 1500)
    sim.run(1600)
    assert down(acc, 1600) == pytest.approx(500.0)


def test_raw_totals_shrink_when_a_sample_closes_a_period_in_the_past_and_floors_do_not() -> None:
    """The accounting tells the truth; the floors keep what was exported from going down."""
    acc = Accounting(("a",), SlaConfig(), clock=lambda: 0.0)
    floors = Floors(None)
    acc.started(0.0)
    for t in (1000.0, 1015.0):
        acc.record(Probe(f"f{t}", "a", Status.FAILED, t, phase=Phase.SMTP_CONNECT))
    acc.tick(1130.0)
    assert floored(floors, acc, 1130.0) == pytest.approx(130.0)
    # A slow submission sent before the snapshot: its success closes the period at 1100.
    acc.record(Probe("late-ok", "a", Status.SENT, 1100.0, accepted_at=1131.0))
    acc.tick(1131.0)
    assert down(acc, 1131.0) == pytest.approx(100.0)
    assert floored(floors, acc, 1131.0) == pytest.approx(130.0)
    assert acc.snapshot(1131.0).up[("a", Check.SEND)]


def test_reserved_route_name_is_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        Accounting(("all",), SlaConfig())


# ---------------------------------------------------------------- properties

plans = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(0, 80),  # slot: 30 s apart
        st.sampled_from(["ok", "send_fail", "never", "imap_fail", "slow"]),
    ),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(
    plan=plans,
    pause=st.tuples(st.integers(0, 2400), st.integers(0, 900)),
    window=st.tuples(st.integers(0, 2400), st.integers(1, 900)),
)
def test_totals_obey_the_accounting_invariants(
    plan: list[tuple[str, int, str]], pause: tuple[int, int], window: tuple[int, int]
) -> None:
    """down + maintenance <= observed; unions never exceed sums; exported totals only grow."""
    maint = OneOffWindow(name="w", start=utc(window[0]), end=utc(window[0] + window[1]))
    acc, sim = make(("a", "b"), (maint,))
    seen: set[tuple[str, int]] = set()
    for route, slot, kind in plan:
        if (route, slot) in seen:
            continue
        seen.add((route, slot))
        t = slot * 30.0 + (1 if route == "b" else 0)
        if pause[0] <= t < pause[0] + pause[1]:
            continue
        sim.probe(
            route, t, send_fail=kind == "send_fail", imap_fail=kind == "imap_fail",
            delay={"ok": 2.0, "slow": 700.0}.get(kind),
        )  # fmt: skip
    if pause[1]:
        sim.stop(pause[0])
        sim.start(pause[0] + pause[1])
    previous: dict[tuple[str, Check], CheckTotals] = {}
    floors = Floors(None)
    for until in (600.0, 1200.0, 2400.0, 3600.0, 4000.0):
        sim.run(until)
        totals = exported_totals(floors, acc, until)
        for key, value in totals.items():
            assert value.down + value.maintenance <= value.observed + 1e-6
            if key in previous:
                old = previous[key]
                assert value.observed >= old.observed
                assert value.down >= old.down
                assert value.maintenance >= old.maintenance
        for route in ("a", "b"):
            conn = totals[(route, Check.CONNECTIVITY)]
            send, recv = totals[(route, Check.SEND)], totals[(route, Check.RECEIVE)]
            assert conn.down <= send.down + recv.down + 1e-6
            assert conn.down >= max(send.down, recv.down) - 1e-6
        any_ = totals[(ALL_ROUTES, Check.ANY)]
        conns = [totals[(r, Check.CONNECTIVITY)] for r in ("a", "b")]
        assert any_.down <= sum(c.down for c in conns) + 1e-6
        assert any_.down >= max(c.down for c in conns) - 1e-6
        previous = dict(totals)


def exported_totals(
    floors: Floors, acc: Accounting, at: float
) -> dict[tuple[str, Check], CheckTotals]:
    """The snapshot's totals as exported (each through its floor)."""
    out: dict[tuple[str, Check], CheckTotals] = {}
    for (route, check), t in acc.snapshot(at).totals.items():
        labels = {"route": route, "check": str(check)}
        out[(route, check)] = CheckTotals(
            *(floors.apply(f"mailprobe_{k}_seconds_total", labels, getattr(t, k))
              for k in ("observed", "down", "maintenance"))
        )  # fmt: skip
    return out


def test_an_open_outage_counts_only_up_to_a_submission_under_way() -> None:
    """While a probe is being submitted its send time may end the outage: totals stop there."""
    acc = Accounting(("a",), SlaConfig(), clock=lambda: 0.0)
    acc.started(0.0)
    for t in (1000.0, 1015.0):
        acc.record(Probe(f"f{t}", "a", Status.FAILED, t, phase=Phase.SMTP_CONNECT))
    acc.attempt("slow", "a", 1100.0)
    acc.tick(1130.0)
    assert down(acc, 1130.0) == pytest.approx(100.0)
    acc.record(Probe("slow", "a", Status.SENT, 1100.0, accepted_at=1131.0))
    assert down(acc, 1131.0) == pytest.approx(100.0)  # nothing to take back
    acc.attempt("gone", "a", 1200.0)
    acc.abandon("gone", "a")  # cancelled at shutdown: says nothing, holds nothing
    assert acc.snapshot(1300.0).up[("a", Check.SEND)]
