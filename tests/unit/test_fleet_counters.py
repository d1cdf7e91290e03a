"""Spans rebuilt from a sampled seconds counter: exact seconds, each edge within a sample
interval, catch-ups laid out backwards, resets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailprobe.agent.fleet_counters import spans_from_counter
from mailprobe.agent.windows import Span, intersect, normalize, total

STEP = 15.0


def counter(spans: list[Span], times: list[float]) -> list[tuple[float, float]]:
    """What a counter of the seconds inside `spans` shows at each sample time."""
    return [(t, total(intersect(spans, [(-1e12, t)]))) for t in times]


@st.composite
def outages(draw: st.DrawFn) -> list[Span]:
    """Outages on a 15 s scrape grid from 0 to 3000 s, at least two scrapes apart, at least one
    scrape long (what a counter sampled every 15 s can tell apart)."""
    out: list[Span] = []
    cursor = draw(st.floats(20, 200))
    for _ in range(draw(st.integers(0, 6))):
        length = draw(st.floats(STEP, 400))
        out.append((cursor, cursor + length))
        cursor += length + draw(st.floats(2 * STEP + 1, 300))
    return [s for s in out if s[1] < 2990]


@settings(max_examples=300)
@given(spans=outages(), phase=st.floats(0, STEP - 0.001))
def test_rebuilt_spans_hold_the_same_seconds_with_each_edge_within_a_scrape(
    spans: list[Span], phase: float
) -> None:
    """Every outage comes back as one span: the same seconds, start and end each within one
    sample interval of the truth."""
    times = [phase + i * STEP for i in range(int(3000 / STEP) + 2)]
    rebuilt = spans_from_counter(counter(spans, times))
    assert len(rebuilt) == len(spans)
    assert total(rebuilt) == pytest.approx(total(spans), abs=1e-6)
    for (start, end), (got_start, got_end) in zip(spans, rebuilt, strict=True):
        assert abs(got_start - start) <= STEP + 1e-6
        assert abs(got_end - end) <= STEP + 1e-6
        assert got_end - got_start == pytest.approx(end - start, abs=1e-6)


def test_an_outage_across_whole_intervals_is_rebuilt_exactly() -> None:
    """Growth starting and stopping inside intervals: placed against the intervals around it."""
    times = [0.0, 15.0, 30.0, 45.0, 60.0, 75.0]
    assert spans_from_counter(counter([(20.0, 50.0)], times)) == [(20.0, 50.0)]


def test_a_catch_up_fills_the_stalled_interval_before_it() -> None:
    """The agent counts an open outage only up to a probe still pending, then catches up: the
    excess belongs to the interval that did not grow, and the outage stays one span."""
    samples = [(0.0, 0.0), (15.0, 5.0), (30.0, 5.0), (45.0, 35.0), (60.0, 40.0), (75.0, 40.0)]
    assert spans_from_counter(samples) == [(10.0, 50.0)]


def test_two_outages_apart_stay_apart() -> None:
    """An interval without growth between two runs that do not reach it separates them."""
    samples = counter([(10.0, 20.0), (70.0, 100.0)], [0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0, 105.0])
    assert spans_from_counter(samples) == [(10.0, 20.0), (70.0, 100.0)]


def test_an_outage_within_one_interval_is_placed_at_its_start() -> None:
    """Growth inside a single interval: its seconds are exact, placed at the interval's start."""
    samples = [(0.0, 0.0), (15.0, 0.0), (30.0, 4.0), (45.0, 4.0)]
    assert spans_from_counter(samples) == [(15.0, 19.0)]


def test_a_reset_counts_the_new_value_as_growth() -> None:
    """A counter that went down started again from zero."""
    samples = [(0.0, 100.0), (15.0, 115.0), (30.0, 10.0), (45.0, 10.0)]
    assert spans_from_counter(samples) == [(0.0, 25.0)]


def test_no_growth_is_no_span() -> None:
    """A flat counter, or a single sample, holds nothing."""
    assert spans_from_counter([(0.0, 7.0), (15.0, 7.0)]) == []
    assert spans_from_counter([(0.0, 7.0)]) == []
    assert spans_from_counter([]) == []


@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e4)), max_size=50))
def test_any_samples_give_normalized_spans_of_the_counted_seconds(
    raw: list[tuple[float, float]]
) -> None:
    """Whatever the samples, the spans are normalized and hold what the counter grew."""
    samples = sorted(raw)
    spans = spans_from_counter(samples)
    assert spans == normalize(spans)
    grown = sum(v1 - v0 if v1 >= v0 else v1 for (_, v0), (_, v1) in itertools.pairwise(samples))
    assert total(spans) <= grown + 1e-6
