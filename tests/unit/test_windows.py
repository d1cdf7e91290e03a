"""Spans, calendar periods in a time zone, and maintenance windows across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from mailprobe.agent.windows import (
    MaintenanceWindows,
    OneOffWindow,
    RecurringWindow,
    Span,
    active_windows,
    days_between,
    intersect,
    month_bounds,
    month_of,
    normalize,
    shift_month,
    subtract,
    total,
    union,
    window_spans,
)

BERLIN = ZoneInfo("Europe/Berlin")
WINDOWS = TypeAdapter(MaintenanceWindows)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_normalize_merges_overlapping_and_touching_spans_and_drops_empty_ones() -> None:
    assert normalize([(5, 7), (1, 3), (3, 4), (6, 9), (10, 10)]) == [(1, 4), (5, 9)]


def test_subtract_and_intersect_cut_spans_exactly() -> None:
    a = [(0.0, 10.0), (20.0, 30.0)]
    b = [(5.0, 22.5), (29.0, 40.0)]
    assert intersect(a, b) == [(5.0, 10.0), (20.0, 22.5), (29.0, 30.0)]
    assert subtract(a, b) == [(0.0, 5.0), (22.5, 29.0)]


span_lists = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(1, 200)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=8,
).map(lambda spans: normalize((float(a), float(b)) for a, b in spans))


@given(a=span_lists, b=span_lists)
def test_span_algebra_adds_up(a: list[Span], b: list[Span]) -> None:
    """|a u b| = |a| + |b| - |a n b| and (a - b) u (a n b) = a."""
    assert total(union(a, b)) == total(a) + total(b) - total(intersect(a, b))
    assert union(subtract(a, b), intersect(a, b)) == a
    assert total(union(a, b)) <= total(a) + total(b)


def test_months_in_berlin_are_an_hour_longer_in_october_and_shorter_in_march() -> None:
    start, end = month_bounds("2026-10", "Europe/Berlin")
    assert (end - start) / 3600 == 745
    assert start == utc("2026-09-30T22:00")
    start, end = month_bounds("2026-03", BERLIN)
    assert (end - start) / 3600 == 743
    assert month_of(utc("2026-09-30T22:30"), "Europe/Berlin") == "2026-10"
    assert shift_month("2026-01", -11) == "2025-02"
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("2026-13", "UTC")


def test_the_day_clocks_go_back_has_25_hours() -> None:
    start, end = month_bounds("2026-10", BERLIN)
    days = dict(days_between(start, end, BERLIN))
    assert len(days) == 31
    lo, hi = days[date(2026, 10, 25)]
    assert hi - lo == 25 * 3600


def test_weekly_window_keeps_its_elapsed_duration_on_the_night_clocks_go_back() -> None:
    (window,) = WINDOWS.validate_python(
        [{"name": "sun", "weekly": ["sun"], "start": "02:00", "duration": "2h",
          "timezone": "Europe/Berlin"}]
    )  # fmt: skip
    start, end = month_bounds("2026-10", BERLIN)
    spans = window_spans([window], start, end)
    assert len(spans) == 4
    # 02:00 on 25 Oct happens twice; the first (CEST, 00:00 UTC) opens the window for 2 h.
    assert spans[-1] == (utc("2026-10-25T00:00"), utc("2026-10-25T02:00"))
    assert spans[0] == (utc("2026-10-04T00:00"), utc("2026-10-04T02:00"))


def test_a_start_inside_the_spring_gap_opens_with_the_offset_before_the_gap() -> None:
    window = RecurringWindow.model_validate(
        {
            "name": "n",
            "daily": True,
            "start": "02:30",
            "duration": "1h",
            "timezone": "Europe/Berlin",
        }
    )
    spans = window.spans(utc("2026-03-29T00:00"), utc("2026-03-30T00:00"))
    assert spans == [(utc("2026-03-29T01:30"), utc("2026-03-29T02:30"))]  # 03:30-04:30 CEST


def test_a_monthly_day_a_month_lacks_is_skipped() -> None:
    window = RecurringWindow.model_validate(
        {"name": "m", "monthly": [31], "start": "01:00", "duration": "30m"}
    )
    start, end = month_bounds("2026-04", "UTC")
    assert window.spans(start, end) == []
    start, end = month_bounds("2026-05", "UTC")
    assert window.spans(start, end) == [(utc("2026-05-31T01:00"), utc("2026-05-31T01:30"))]


def test_one_off_window_reads_naive_times_in_its_time_zone() -> None:
    (window,) = WINDOWS.validate_python(
        [{"name": "x", "start": "2026-07-01T22:00", "end": "2026-07-02T01:00",
          "timezone": "Europe/Berlin", "routes": ["a"]}]
    )  # fmt: skip
    assert isinstance(window, OneOffWindow)
    assert window.spans(0, 2e9) == [(utc("2026-07-01T20:00"), utc("2026-07-01T23:00"))]
    assert window_spans([window], 0, 2e9, "b") == []
    assert active_windows([window], utc("2026-07-01T21:00")) == {"x": True}
    assert active_windows([window], utc("2026-07-01T23:00")) == {"x": False}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "a", "start": "02:00", "duration": "1h"}, "exactly one of"),
        ({"name": "a", "daily": True, "start": 120, "duration": "1h"}, "in quotes"),
        ({"name": "a", "daily": True, "start": "02:00", "duration": 60}, "give a unit"),
        ({"name": "a", "daily": True, "start": "02:00", "duration": "1h", "timezone": "Mars/Base"},
         "unknown time zone"),
        ({"name": "a", "start": "2026-01-02T00:00", "end": "2026-01-01T00:00"}, "after start"),
        ({"name": "a", "daily": True, "start": "02:00", "duration": "1h", "colour": "red"},
         "Extra inputs"),
    ],
)  # fmt: skip
def test_invalid_windows_are_refused_with_the_reason(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WINDOWS.validate_python([raw])


def test_window_names_must_be_unique() -> None:
    raw = {"name": "a", "daily": True, "start": "02:00", "duration": "1h"}
    with pytest.raises(ValidationError, match="duplicate"):
        WINDOWS.validate_python([raw, raw])
