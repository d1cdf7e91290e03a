"""The look schedule and the command budget (probes/poll.py): pure arithmetic, virtual time."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailprobe.agent.budgets import BUDGETS, SELF_HOSTED
from mailprobe.probes.poll import (
    HANDLING,
    MINUTE,
    Budget,
    CommandWindow,
    Planner,
    Schedule,
    Sparse,
    plan,
)

budgets = st.builds(
    Budget, per_probe=st.integers(HANDLING + 2, 400), per_minute=st.integers(HANDLING + 2, 600)
)


def test_half_width_is_the_floor_first_then_a_share_of_the_age() -> None:
    """max(floor, ratio * age): 22 ms up to floor / ratio, 2 % of the age after."""
    s = Schedule(floor=0.022, ratio=0.02, window=75.0)
    assert s.half_width(0.5) == pytest.approx(0.022)
    assert s.half_width(10.0) == pytest.approx(0.2)


def test_looks_are_twice_the_half_width_apart_and_stop_at_the_window() -> None:
    """The next look comes one bracket later; none after the window, one at its end."""
    s = Schedule(floor=0.02, ratio=0.01, window=10.0)
    assert s.next_look(0.0) == pytest.approx(0.04)
    assert s.next_look(5.0) == pytest.approx(5.1)
    assert s.next_look(9.99) == pytest.approx(10.0)
    assert s.next_look(10.0) is None


def test_the_default_budget_keeps_the_stated_precision() -> None:
    """150 a probe buys max(22 ms, under 2 % of the age) over 75 s: the benchmark's target."""
    s = plan(SELF_HOSTED, sparse=Sparse.within(SELF_HOSTED).count)
    assert s.floor == pytest.approx(0.022)
    assert s.ratio < 0.02
    assert s.window == 75.0


def test_a_budget_that_affords_more_than_the_target_spends_no_more() -> None:
    """A huge budget gets the finest schedule, not a finer one."""
    assert plan(Budget(10_000, 100_000), sparse=5) == Schedule()


@pytest.mark.parametrize("provider", ["gmail", "yahoo", "tencent-exmail"])
def test_a_hosted_budget_widens_the_ratio_not_the_window(provider: str) -> None:
    """A preset's budget (fewer commands, fewer a minute): fewer looks, the same window and
    floor, a larger share of the age."""
    budget = BUDGETS[provider]
    s = plan(budget, sparse=Sparse.within(budget).count)
    assert (s.window, s.floor) == (Schedule().window, Schedule().floor)
    assert Schedule().ratio < s.ratio < 1.0


@settings(max_examples=200, deadline=None)
@given(budgets, st.integers(0, 5), st.sampled_from([1, 2]))
def test_a_plan_always_fits_its_budget(budget: Budget, sparse: int, cost: int) -> None:
    """Whatever the budget, the planned looks and the handling fit per probe and per minute."""
    s = plan(budget, sparse=sparse, cost=cost)
    whole = s.looks(s.window) * cost + HANDLING + sparse
    first_minute = s.looks(min(s.window, MINUTE)) * cost + HANDLING + sparse
    assert whole <= max(budget.per_probe, HANDLING + sparse)
    assert first_minute <= max(budget.per_minute, HANDLING + sparse)


def test_sparse_checks_grow_geometrically_to_their_end() -> None:
    """5 checks from 2 s to 240 s, each a constant factor after the one before."""
    sparse = Sparse(count=5, first=2.0, until=240.0)
    ages, age = [], 0.0
    while (nxt := sparse.next_check(age)) is not None:
        ages.append(nxt)
        age = nxt
    assert ages[0] == pytest.approx(2.0)
    assert ages[-1] == pytest.approx(240.0)
    ratios = [b / a for a, b in itertools.pairwise(ages)]
    assert max(ratios) == pytest.approx(min(ratios))


def test_a_smaller_budget_gets_fewer_sparse_checks() -> None:
    """About one check per 25 commands, at least one."""
    assert Sparse.within(Budget(150, 300)).count == 5
    assert Sparse.within(Budget(60, 60)).count == 2
    assert Sparse.within(Budget(20, 20)).count == 1


def _watch_alone(budget: Budget, seed: int) -> tuple[list[float], int]:
    """A probe that never arrives: every look the planner grants, and what they cost."""
    schedule = plan(budget, sparse=Sparse.within(budget).count)
    planner = Planner(budget, schedule, Sparse.within(budget), random.Random(seed))
    sent = 1000.0
    planner.track([sent], sent)
    looks: list[float] = []
    while (due := planner.next_look()) is not None:
        check = planner.next_check()
        if check is not None and check <= due and planner.may_check(sent):
            planner.spend(1)
            planner.checked(check)
        planner.spend(1)
        planner.looked(due)
        looks.append(due - sent)
    spent = planner.spent(sent)
    assert spent is not None
    return looks, spent


@settings(max_examples=100, deadline=None)
@given(budgets, st.integers(0, 1000))
def test_a_probe_never_gets_more_looks_than_its_budget_leaves(budget: Budget, seed: int) -> None:
    """Looks and checks of a probe that never shows stop while its handling still fits."""
    _, spent = _watch_alone(budget, seed)
    assert spent + HANDLING <= budget.per_probe


def test_looks_start_at_a_random_phase_of_the_first_interval() -> None:
    """Two probes' first looks differ, each within the first 44 ms."""
    firsts = {_watch_alone(SELF_HOSTED, seed)[0][0] for seed in range(5)}
    assert len(firsts) == 5
    assert all(0.0 <= f <= 0.044 for f in firsts)


def test_a_probe_no_longer_awaited_is_let_go() -> None:
    """After the arrival, no look is due for it."""
    planner = Planner(SELF_HOSTED, Schedule(), Sparse(), random.Random(1))
    planner.track([10.0], 10.0)
    assert planner.next_look() is not None
    planner.track([], 10.5)
    assert planner.next_look() is None
    assert planner.spent(10.0) is None


def test_commands_charged_count_for_every_probe_watched() -> None:
    """A shared look is a command of each probe it serves."""
    planner = Planner(SELF_HOSTED, Schedule(), Sparse(), random.Random(1))
    planner.track([10.0, 11.0], 11.0)
    planner.spend(3)
    assert planner.spent(10.0) == planner.spent(11.0) == 1 + 3


def test_the_window_waits_until_the_oldest_command_leaves_the_minute() -> None:
    """Full at 10 commands: the 11th waits until the first is 60 s old."""
    window = CommandWindow(10)
    for i in range(10):
        window.record(100.0 + i)
    assert window.wait(110.0) == pytest.approx(50.0, abs=0.002)
    assert window.wait(160.5) == 0.0


@settings(max_examples=100, deadline=None)
@given(st.integers(7, 60), st.lists(st.floats(0.0, 5.0), min_size=1, max_size=300))
def test_no_minute_ever_holds_more_than_the_limit(limit: int, gaps: list[float]) -> None:
    """Sending whenever the window allows, any 60 s hold at most the limit."""
    window = CommandWindow(limit)
    now, sent = 0.0, []
    for gap in gaps:
        now += gap
        now += window.wait(now)
        window.record(now)
        sent.append(now)
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + MINUTE) <= limit


def test_looks_are_spaced_only_once_three_quarters_of_the_minute_are_spent() -> None:
    """No spacing up to 75 % of the limit, then a gap growing as the minute fills."""
    window = CommandWindow(100)
    window.record(0.0, 75)
    assert window.spacing(1.0) == 0.0
    window.record(1.0, 10)
    fuller = window.spacing(1.0)
    window.record(1.0, 10)
    assert 0.0 < fuller < window.spacing(1.0)
    assert window.spacing(61.0) == 0.0  # the minute has passed
