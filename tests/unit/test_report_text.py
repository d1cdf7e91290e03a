"""Text report layout: aligned wrapped columns, one unit a row, verdict words, partial months."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mailprobe.agent.checks import Check
from mailprobe.agent.clauses import CLAUSES, ClauseResult, Unit
from mailprobe.agent.report import Report, build_report
from mailprobe.agent.report_format import number
from mailprobe.agent.report_render import WIDTH, render_json, render_text
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.text_table import Column, table
from tests.unit.test_report import _probe, fill, ts

LONG = "route-" + "x" * 24 + "-to-the-partner-mailbox-abroad"  # 60 characters
UNIT_FORMS = {"min": r"\d+\.\d{2}", "s": r"\d+\.\d{3}", "%": r"\d+\.\d{4}", "probes": r"\d+",
              "days": r"\d+"}  # fmt: skip
VERDICTS = {"kept", "breached", "not enough data"}


def _report(tmp_path: Path, *, route: str = "a", now: float | None = None,
            runs: tuple[float, float] | None = None) -> Report:  # fmt: skip
    start, end = ts("2026-09-01T00:00"), ts("2026-10-01T00:00")
    outage = (route, Check.SEND, start + 3600, start + 3600 + 50 * 60)
    probes = [_probe(f"p{i}", start + 600 * i, 0.01 + (i % 8) / 100) for i in range(100)]
    probes = [replace(p, route=route) for p in probes]
    with fill(tmp_path / "l.db", [runs or (start, end)], [outage], probes) as ledger:
        return build_report(ledger, SlaConfig(), "2026-09", routes=[route],
                            now=end if now is None else now)  # fmt: skip


def _tables(text: str, first: str = "") -> list[list[str]]:
    """Each table (whose header starts with ``first``): its rule line, then its rows."""
    lines = text.splitlines()
    found = []
    for index, line in enumerate(lines):
        rule = line.strip() and set(line.strip()) <= {"-", " "} and "  " in line.strip()
        if rule and lines[index - 1].strip().startswith(first):
            block = [line]
            for row in lines[index + 1 :]:
                if not row.strip():
                    break
                block.append(row)
            found.append(block)
    return found


def _columns(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]


def _cells(row: str, spans: list[tuple[int, int]]) -> list[str]:
    return [row[lo:hi].strip() for lo, hi in spans]


def _clause_rows(text: str) -> list[list[str]]:
    """Rows of every clause table, a wrapped title joined back from its continuation lines."""
    rows: list[list[str]] = []
    for block in _tables(text, "Clause"):
        spans = _columns(block[0])
        for row in block[1:]:
            cells = _cells(row, spans)
            if cells[1]:
                rows.append(cells)
            else:  # a continuation line: only the title column goes on
                rows[-1][0] += " " + cells[0]
    return rows


def test_a_60_character_route_name_and_the_longest_clause_title_stay_aligned(
    tmp_path: Path,
) -> None:
    """No cell runs into its neighbour: between columns there are only spaces, on every line."""
    assert len(LONG) == 60
    text = render_text(_report(tmp_path, route=LONG))
    assert all(len(line) <= WIDTH for line in text.splitlines())
    blocks = _tables(text)
    assert len(blocks) >= 5  # figures and clauses twice, outages, windows
    for block in blocks:
        spans = _columns(block[0])
        gaps = [(hi, lo) for (_, hi), (lo, _) in itertools.pairwise(spans)]
        for row in block[1:]:
            assert len(row) <= spans[-1][1], row
            for lo, hi in gaps:
                assert row[lo:hi].strip() == "", f"a cell crosses its column: {row!r}"
    # The long names are all there, wrapped inside their columns.
    (outages,) = _tables(text, "Route")
    assert "".join(_cells(r, _columns(outages[0]))[0] for r in outages[1:]) == LONG
    longest = max((c.title for c in _route_clauses(tmp_path)), key=len)
    assert len(longest) > 38  # longer than the clause column: it wraps
    assert longest in [row[0] for row in _clause_rows(text)]
    assert f"Route {LONG}" in text


def _route_clauses(tmp_path: Path) -> list[ClauseResult]:
    """Every clause a route scope is judged on (the longest titles are a route's)."""
    return list(_report(tmp_path / "titles").scopes[1].clauses)


def test_each_clause_row_writes_measured_and_limit_in_its_unit_with_fixed_decimals(
    tmp_path: Path,
) -> None:
    """Minutes with two decimals, seconds three, percent four, probes and days whole."""
    rows = _clause_rows(render_text(_report(tmp_path)))
    assert {row[3] for row in rows} == {"min", "s", "%", "probes", "days"}
    for _, measured, limit, unit, _verdict in rows:  # a month over: no Projected column
        form = UNIT_FORMS[unit]
        assert re.fullmatch(form, measured), (unit, measured)
        assert re.fullmatch(rf"(<=|>=) {form}", limit), (unit, limit)


def test_verdicts_are_words_for_people(tmp_path: Path) -> None:
    """kept, breached, not enough data: never an enum name or a snake_case value."""
    text = render_text(_report(tmp_path))
    assert {row[4] for row in _clause_rows(text)} <= VERDICTS
    assert "Overall: breached" in text
    for raw in ("insufficient_data", "NOT_ENOUGH_DATA", "Verdict.", "not_enough_data"):
        assert raw not in text


def test_not_enough_data_says_what_would_be_needed(tmp_path: Path) -> None:
    """A day observed of a month: each undecided clause is listed with what it needs."""
    start = ts("2026-09-01T00:00")
    text = render_text(_report(tmp_path, runs=(start, start + 86400)))
    rows = _clause_rows(text)
    assert any(row[4] == "not enough data" for row in rows)
    assert "Failure time: needs coverage 3.3 % of the month, 90 % needed" in text.replace(
        "\n   ", ""
    )
    # Disconnection is decided: 50 min down against 44 breaches it at any coverage.
    assert next(r for r in rows if r[0].startswith("Disconnection"))[4] == "breached"


def test_a_month_in_progress_says_so_at_the_top_and_projects_each_verdict(tmp_path: Path) -> None:
    """Ten days in: the notice comes before any figure, and a Projected column follows Verdict."""
    now = ts("2026-09-11T00:00")
    report = _report(tmp_path, now=now, runs=(ts("2026-09-01T00:00"), now))
    assert report.partial
    text = render_text(report)
    top = text.split("Overall:")[0]
    assert "Month in progress: evaluated up to 2026-09-11 00:00:00 UTC, 10.0 of 30 days" in top
    clause_rule = _tables(text, "Clause")[0][0]
    header = text.splitlines()[text.splitlines().index(clause_rule) - 1]
    assert header.split() == ["Clause", "Measured", "Limit", "Unit", "Verdict", "Projected"]
    failure = next(line for line in text.splitlines() if line.strip().startswith("Failure time"))
    # 50 min in 10 days projects to 150 min for the month: over the 100 min limit.
    assert failure.split()[-4:] == ["not", "enough", "data", "breached"]


def test_trouble_free_days_count_only_observed_days(tmp_path: Path) -> None:
    """Nothing observed: no trouble-free day is claimed; two observed days: two of two."""
    start = ts("2026-09-01T00:00")
    with fill(tmp_path / "none.db", []) as ledger:
        empty = render_text(build_report(ledger, SlaConfig(), "2026-09", now=ts("2026-10-02")))
    assert "none of the 365 days in the rolling year observed" in empty
    assert "365 of 365" not in empty
    row = next(r for r in _clause_rows(empty) if r[0].startswith("Trouble-free"))
    assert row[1:3] == ["0", ">= 360"]
    with fill(tmp_path / "two.db", [(start, start + 2 * 86400)]) as ledger:
        two = render_text(build_report(ledger, SlaConfig(), "2026-09", now=ts("2026-10-02")))
    assert "2 of 2 observed days trouble-free" in two


def test_owed_lists_each_remedy_once_and_says_why_nothing_is_owed(tmp_path: Path) -> None:
    """Two breached clauses owe double service time once; a kept month says no clause breached."""
    text = render_text(_report(tmp_path))
    owed = text.split("Owed\n====")[1].split("Account (all routes)")[0]
    assert owed.count("double service time for 2026-09") == 1
    assert "In total: double service time (30 days' extension)." in owed
    start = ts("2026-09-01T00:00")
    with fill(tmp_path / "short.db", [(start, start + 3600)]) as ledger:
        little = render_text(build_report(ledger, SlaConfig(), "2026-09", now=ts("2026-10-02")))
    owed = little.split("Owed\n====")[1].split("Account (all routes)")[0]
    assert "Nothing owed: no clause was breached" in owed
    assert "without enough data to decide" in owed


@pytest.mark.parametrize(
    ("value", "unit", "up", "text"),
    [(44.001, Unit.MINUTES, True, "44.01"), (99.98996, Unit.PERCENT, False, "99.9899"),
     (0.1 + 0.2, Unit.MINUTES, True, "0.30"), (0.0405, Unit.SECONDS, True, "0.041"),
     (80.0, Unit.PERCENT, False, "80.0000"), (29.0, Unit.DAYS, False, "29")],
)  # fmt: skip
def test_figures_round_against_the_reader(value: float, unit: Unit, up: bool, text: str) -> None:
    """At-most figures round up, at-least figures down, float noise aside: a breach never reads
    as equal to its limit."""
    assert number(value, unit, up=up) == text


def test_a_wrapped_cell_never_pushes_its_neighbours() -> None:
    """A cell longer than its column wraps onto continuation lines inside the column."""
    lines = table([Column("Name", max_width=10), Column("Value", right=True, max_width=6)],
                  [["a-very-long-route-name", "1.00"], ["b", "22.50"]])  # fmt: skip
    assert lines == ["Name        Value", "----------  -----", "a-very-      1.00", "long-",
                     "route-name", "b           22.50"]  # fmt: skip
    assert max(len(line) for line in lines) <= 10 + 2 + 6


def test_json_keeps_every_figure_with_needed_and_projection(tmp_path: Path) -> None:
    """The JSON has a version, and each clause its needed text and projection, unrounded."""
    now = ts("2026-09-11T00:00")
    data = json.loads(render_json(_report(tmp_path, now=now, runs=(ts("2026-09-01T00:00"), now))))
    assert data["version"] == 1
    assert data["partial"] is True
    clauses = {c["clause"]: c for c in data["scopes"][0]["clauses"]}
    assert set(clauses) <= {c.id for c in CLAUSES}
    failure = clauses["failure"]
    assert failure["verdict"] == "not enough data"
    assert failure["projection"] == "breached"
    assert failure["needed"] == "the month is not over (20.0 days left)"
    assert failure["measured"] == pytest.approx(50.0)
    assert {"needed", "projection", "measured", "limit", "unit", "verdict", "detail"} <= set(
        failure
    )
    assert len(data["precision"]) >= 5
    assert data["scopes"][0]["figures"]["year_observed_days"] == 10
