"""The quorum rule over several vantages' records: provider spans where k of them are down at
once, to the sub-second; local spans apart, per vantage; observation needs k too."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.agent.checks import Check
from mailprobe.agent.fleet import VantageRecord, at_least, kth_worst, merge
from mailprobe.agent.vantage import Vantage
from mailprobe.agent.windows import Span, intersect, normalize, total

SEND, RECEIVE = Check.SEND, Check.RECEIVE


def record(name: str, down: dict[tuple[str, Check], list[Span]], observed: list[Span] | None = None,
           routes: tuple[str, ...] = ("r1",)) -> VantageRecord:  # fmt: skip
    return VantageRecord(Vantage(name), f"{name}.sqlite3", tuple(observed or [(0.0, 1000.0)]),
                         {k: tuple(v) for k, v in down.items()}, routes)  # fmt: skip


span_lists = st.lists(
    st.tuples(st.integers(0, 100), st.integers(1, 30)).map(lambda p: (p[0] / 4, (p[0] + p[1]) / 4)),
    max_size=6,
).map(normalize)


@given(groups=st.lists(span_lists, min_size=1, max_size=5), k=st.integers(1, 5))
def test_at_least_k_is_the_time_k_lists_cover_at_once(groups: list[list[Span]], k: int) -> None:
    """Checked against counting at every quarter second between the edges."""
    got = at_least(k, groups)
    assert got == normalize(got)
    for i in range(0, 4 * 35):
        t = i / 4 + 1 / 8
        covering = sum(any(lo <= t < hi for lo, hi in g) for g in groups)
        assert (covering >= k) == any(lo <= t < hi for lo, hi in got), (t, covering)


def test_at_least_refuses_k_zero() -> None:
    """Zero of n would be every instant: no quorum."""
    with pytest.raises(ValueError, match="at least 1"):
        at_least(0, [[(0.0, 1.0)]])


def test_two_of_three_staggered_outages_are_the_provider_s_from_the_second_start_to_the_second_end(
) -> None:
    """Sub-second edges: the provider's part runs from the second vantage down to the second up,
    and what a single vantage saw before or after is local to it."""
    merged = merge([
        record("a", {("r1", SEND): [(100.25, 400.75)]}),
        record("b", {("r1", SEND): [(105.5, 403.0)]}),
        record("c", {("r1", SEND): [(112.0, 398.0)]}),
    ], quorum=2)  # fmt: skip
    assert merged.down[("r1", SEND)] == [(105.5, 400.75)]
    assert merged.down[("r1", RECEIVE)] == []
    (provider,) = merged.provider
    assert (provider.start, provider.end, provider.vantages) == (105.5, 400.75, ("a", "b", "c"))
    assert [(o.vantages, o.start, o.end) for o in merged.local] == [
        (("a",), 100.25, 105.5), (("b",), 400.75, 403.0)
    ]  # fmt: skip


def test_a_fault_one_vantage_sees_is_local() -> None:
    """One of two down: nothing for the provider, all of it local to that vantage."""
    merged = merge([record("a", {("r1", RECEIVE): [(10.0, 70.0)]}), record("b", {})], quorum=2)
    assert merged.down[("r1", RECEIVE)] == []
    assert [(o.route, o.check, o.start, o.end, o.vantages) for o in merged.local] == [
        ("r1", "receive", 10.0, 70.0, ("a",))
    ]


def test_one_vantage_counts_every_fault_it_sees() -> None:
    """A fleet of one: the quorum is at most the vantages there are."""
    merged = merge([record("a", {("r1", SEND): [(10.0, 70.0)]})], quorum=2)
    assert merged.down[("r1", SEND)] == [(10.0, 70.0)]
    assert merged.local == []


def test_the_quorum_is_configurable() -> None:
    """Three of three: two vantages down is local; one of three: any vantage down counts."""
    records = [record("a", {("r1", SEND): [(10.0, 70.0)]}),
               record("b", {("r1", SEND): [(20.0, 90.0)]}), record("c", {})]  # fmt: skip
    assert merge(records, quorum=3).down[("r1", SEND)] == []
    assert merge(records, quorum=1).down[("r1", SEND)] == [(10.0, 90.0)]
    assert merge(records, quorum=2).down[("r1", SEND)] == [(20.0, 70.0)]


def test_down_counts_only_while_its_vantage_observed() -> None:
    """A vantage not running is neither up nor down: its open outage stops with its run."""
    merged = merge([
        record("a", {("r1", SEND): [(10.0, 100.0)]}, observed=[(0.0, 50.0)]),
        record("b", {("r1", SEND): [(10.0, 100.0)]}),
    ], quorum=2)  # fmt: skip
    assert merged.down[("r1", SEND)] == [(10.0, 50.0)]
    assert [(o.vantages, o.start, o.end) for o in merged.local] == [(("b",), 50.0, 100.0)]


def test_the_fleet_observes_while_k_of_its_vantages_do() -> None:
    """With fewer than k running, no provider fault could be confirmed: unobserved."""
    merged = merge([
        record("a", {}, observed=[(0.0, 100.0)]),
        record("b", {}, observed=[(0.0, 40.0), (60.0, 100.0)]),
        record("c", {}, observed=[(50.0, 100.0)]),
    ], quorum=2)  # fmt: skip
    assert merged.observed == [(0.0, 40.0), (50.0, 100.0)]


def test_routes_are_judged_among_the_vantages_that_probe_them() -> None:
    """A route only one vantage probes has a quorum of one."""
    merged = merge([
        record("a", {("r2", SEND): [(10.0, 20.0)]}, routes=("r1", "r2")),
        record("b", {}, routes=("r1",)),
    ], quorum=2)  # fmt: skip
    assert merged.routes == ["r1", "r2"]
    assert merged.down[("r2", SEND)] == [(10.0, 20.0)]


def test_two_records_of_one_vantage_are_refused() -> None:
    """The same vantage twice would count its faults twice."""
    with pytest.raises(ValueError, match="same name"):
        merge([record("a", {}), record("a", {})], quorum=2)


@pytest.mark.parametrize(("values", "k", "expected"),
                         [([1.0, 5.0, 3.0], 2, 3.0), ([1.0, 5.0, 3.0], 1, 5.0),
                          ([1.0, 5.0, 3.0], 5, 1.0), ([], 2, None), ([4.0], 2, 4.0)])  # fmt: skip
def test_kth_worst_is_what_k_of_the_vantages_reached(
    values: list[float], k: int, expected: float | None
) -> None:
    """The k-th largest, k at most the number of values."""
    assert kth_worst(values, k) == expected


@given(st.lists(span_lists, min_size=1, max_size=4), st.integers(1, 4))
def test_provider_and_local_seconds_add_up_to_what_each_vantage_saw(
    downs: list[list[Span]], k: int
) -> None:
    """Every down second of a vantage is either shared by k (the provider's) or local."""
    records = [record(f"v{i}", {("r1", SEND): spans}) for i, spans in enumerate(downs)]
    merged = merge(records, quorum=k)
    for r in records:
        own = total(r.down_observed("r1", SEND))
        local = sum(o.end - o.start for o in merged.local if r.vantage.name in o.vantages)
        shared = total(intersect(r.down_observed("r1", SEND), merged.down[("r1", SEND)]))
        assert own == pytest.approx(local + shared)
