"""Monthly report: hand-computed months, verdicts, remedies and the renderers."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailprobe.agent.accounting import Accounting
from mailprobe.agent.checks import ALL_ROUTES, Check, Transition
from mailprobe.agent.clauses import Verdict
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.report import Report, build_report
from mailprobe.agent.report_render import render, render_json, render_markdown, render_text
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import RecurringWindow, Span
from tests.helpers.sim import Sim

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str, tz: ZoneInfo = UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def fill(
    path: Path,
    runs: Iterable[Span],
    outages: Iterable[tuple[str, Check, float, float]] = (),
    probes: Iterable[Probe] = (),
) -> Ledger:
    ledger = Ledger.open(path)
    for lo, hi in runs:
        ledger.started(lo)
        ledger.stopped(hi)
    for route, check, lo, hi in outages:
        ledger.record_transition(Transition(route, check, False, lo))
        ledger.record_transition(Transition(route, check, True, hi))
    for probe in probes:
        ledger.record(probe)
    return ledger


def clause(report: Report, name: str, route: str = ALL_ROUTES) -> tuple[float | None, Verdict]:
    scope = next(s for s in report.scopes if s.route == route)
    found = next(c for c in scope.clauses if c.clause == name)
    return found.measured, found.verdict


def test_an_outage_across_midnight_at_month_end_is_split_between_the_months(
    tmp_path: Path,
) -> None:
    runs = [(ts("2026-09-01T00:00"), ts("2026-11-01T00:00"))]
    outage = ("a", Check.SEND, ts("2026-09-30T23:40"), ts("2026-10-01T00:25:30"))
    with fill(tmp_path / "l.db", runs, [outage]) as ledger:
        sla = SlaConfig()
        sep = build_report(ledger, sla, "2026-09", routes=["a"], now=ts("2026-12-01T00:00"))
        oct_ = build_report(ledger, sla, "2026-10", routes=["a"], now=ts("2026-12-01T00:00"))
    assert clause(sep, "disconnection") == (pytest.approx(20.0), Verdict.KEPT)
    assert clause(oct_, "disconnection") == (pytest.approx(25.5), Verdict.KEPT)
    assert sep.scopes[0].daily[-1].down_seconds == pytest.approx(1200.0)
    assert oct_.scopes[0].daily[0].down_seconds == pytest.approx(1530.0)
    # 20 min in a 30-day month: 1 - 1200 / 2592000 = 99.9537 % < 99.99 %.
    assert clause(sep, "availability") == (pytest.approx(99.953704, abs=1e-6), Verdict.BREACHED)
    assert clause(sep, "failure", "a") == (pytest.approx(20.0), Verdict.KEPT)
    assert [o.check for o in sep.outages] == ["send"]
    (owed,) = sep.remedy.owed  # one remedy, owed once, for the one decided breach
    assert owed.clauses == ("availability",)
    assert "double service time for 2026-09" in owed.reason
    assert "30 days" in sep.remedy.summary


def test_a_maintenance_window_overlapping_an_outage_takes_its_part(tmp_path: Path) -> None:
    window = RecurringWindow.model_validate(
        {"name": "sunday", "weekly": ["sun"], "start": "02:00", "duration": "2h",
         "timezone": "Europe/Berlin"}
    )  # fmt: skip
    runs = [(ts("2026-06-01T00:00", BERLIN), ts("2026-07-01T00:00", BERLIN))]
    outage = ("a", Check.RECEIVE, ts("2026-06-07T01:30", BERLIN), ts("2026-06-07T02:45", BERLIN))
    with fill(tmp_path / "l.db", runs, [outage]) as ledger:
        report = build_report(
            ledger, SlaConfig(timezone="Europe/Berlin"), "2026-06", windows=[window],
            routes=["a"], now=ts("2026-08-01T00:00"),
        )  # fmt: skip
    account, route = report.scopes
    assert account.figures.down_seconds == pytest.approx(1800.0)
    assert account.figures.maintenance_seconds == pytest.approx(2700.0)
    assert route.receive_down_seconds == pytest.approx(1800.0)
    assert route.send_down_seconds == 0.0
    (o,) = report.outages
    assert (o.down_seconds, o.maintenance_seconds) == (pytest.approx(1800.0), pytest.approx(2700.0))
    assert len(report.windows) == 4  # Sundays 7, 14, 21, 28 June 2026
    assert clause(report, "maintenance") == (pytest.approx(45.0), Verdict.KEPT)


@pytest.mark.parametrize(
    ("month", "hours", "dst_day", "dst_hours"),
    [("2026-10", 745, date(2026, 10, 25), 25), ("2026-03", 743, date(2026, 3, 29), 23)],
)
def test_a_dst_change_inside_the_month_changes_its_length_by_an_hour(
    tmp_path: Path, month: str, hours: int, dst_day: date, dst_hours: int
) -> None:
    year, mon = map(int, month.split("-"))
    start = datetime(year, mon, 1, tzinfo=BERLIN).timestamp()
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=BERLIN).timestamp()
    outage = ("a", Check.SEND, start + 86400, start + 86400 + 44.5 * 60)
    with fill(tmp_path / "l.db", [(start, end)], [outage]) as ledger:
        stated = build_report(ledger, SlaConfig(timezone="Europe/Berlin"), month, now=end + 1)
        ratio = build_report(
            ledger, SlaConfig(timezone="Europe/Berlin", ratio_mode=True), month, now=end + 1
        )
    figures = stated.scopes[0].figures
    assert figures.month_seconds == hours * 3600
    assert figures.observed_seconds == hours * 3600
    assert figures.coverage_percent == pytest.approx(100.0)
    day = next(d for d in stated.scopes[0].daily if d.day == dst_day)
    assert day.observed_seconds == dst_hours * 3600
    assert clause(stated, "disconnection") == (pytest.approx(44.5), Verdict.BREACHED)
    # Ratio mode: 0.1 % of 745 h is 44.7 min (kept); of 743 h it is 44.58 min (kept as well).
    assert clause(ratio, "disconnection") == (pytest.approx(44.5), Verdict.KEPT)


def test_an_hour_without_the_agent_is_unobserved_and_lowers_coverage(tmp_path: Path) -> None:
    start, end = ts("2026-04-01T00:00"), ts("2026-05-01T00:00")
    gap = ts("2026-04-10T12:00")
    runs = [(start, gap), (gap + 3600, end)]
    with fill(tmp_path / "l.db", runs) as ledger:
        strict = SlaConfig(coverage_floor_percent=99.9)
        report = build_report(ledger, strict, "2026-04", now=end)
    scope = report.scopes[0]
    assert scope.unobserved_seconds == pytest.approx(3600.0)
    assert scope.figures.coverage_percent == pytest.approx(100 * (1 - 3600 / (30 * 86400)))
    assert clause(report, "disconnection") == (0.0, Verdict.NOT_ENOUGH_DATA)
    day = next(d for d in scope.daily if d.day == date(2026, 4, 10))
    assert day.observed_seconds == pytest.approx(86400 - 3600)
    assert report.verdict is Verdict.NOT_ENOUGH_DATA


def test_a_breach_is_certain_even_when_coverage_is_below_the_floor(tmp_path: Path) -> None:
    start = ts("2026-04-01T00:00")
    runs = [(start, start + 86400)]
    outage = ("a", Check.SEND, start + 3600, start + 3600 + 50 * 60)
    with fill(tmp_path / "l.db", runs, [outage]) as ledger:
        report = build_report(ledger, SlaConfig(), "2026-04", now=ts("2026-05-02T00:00"))
    assert clause(report, "disconnection") == (pytest.approx(50.0), Verdict.BREACHED)
    assert clause(report, "failure") == (pytest.approx(50.0), Verdict.NOT_ENOUGH_DATA)


def _probe(pid: str, sent: float, delay: float | None, status: Status = Status.OK) -> Probe:
    arrived = None if delay is None else sent + delay
    # Delivered into the inbox while the junk folder was watched too.
    return Probe(pid, "a", status, sent, accepted_at=sent + 0.5, arrived_at=arrived,
                 delay_seconds=delay, junked=None if delay is None else False)  # fmt: skip


def test_a_probe_delivered_after_70_minutes_counts_over_the_maximum(tmp_path: Path) -> None:
    start, end = ts("2026-05-01T00:00"), ts("2026-06-01T00:00")
    probes = [_probe(f"p{i}", start + 3600 * (i + 1), 2.0) for i in range(9)]
    probes.append(_probe("slow", start + 86400, 4200.0, Status.LATE))
    with fill(tmp_path / "l.db", [(start, end)], probes=probes) as ledger:
        report = build_report(ledger, SlaConfig(), "2026-05", now=end)
    delivery = report.scopes[0].figures.delivery
    assert (delivery.count, delivery.maximum, delivery.over_max) == (10, 4200.0, 1)
    assert delivery.average == pytest.approx((9 * 2.0 + 4200.0) / 10)
    assert clause(report, "delivery_over_maximum") == (1.0, Verdict.KEPT)
    assert clause(report, "delivery_delay_average") == (pytest.approx(421.8), Verdict.BREACHED)
    names = {c.clause for c in report.scopes[0].clauses}
    assert "send_delay_average" not in names  # not measured, so not judged


def test_three_probes_over_the_maximum_breach_it_and_lost_ones_count(tmp_path: Path) -> None:
    start, end = ts("2026-05-01T00:00"), ts("2026-06-01T00:00")
    probes = [
        _probe("late1", start + 86400, 4000.0, Status.LATE),
        _probe("late2", start + 2 * 86400, 5000.0, Status.LATE),
        _probe("lost", start + 3 * 86400, None, Status.LOST),
        _probe("fine", start + 4 * 86400, 3.0),
    ]
    with fill(tmp_path / "l.db", [(start, end)], probes=probes) as ledger:
        report = build_report(ledger, SlaConfig(), "2026-05", now=end)
    assert clause(report, "delivery_over_maximum") == (3.0, Verdict.BREACHED)
    scope = report.scopes[0]
    assert (scope.probes_sent, scope.probes_delivered, scope.probes_lost) == (4, 3, 1)


def test_a_route_that_accepts_but_never_delivers_is_receive_down_end_to_end(
    tmp_path: Path,
) -> None:
    """Scheduler -> ledger -> report: down from the first undelivered probe's send time."""
    start = ts("2026-07-01T00:00")
    with Ledger.open(tmp_path / "l.db") as ledger:
        sim = Sim(Accounting(("a",), SlaConfig(), clock=lambda: start), ledger, tick_every=60.0,
                  lost_after=7200.0)  # fmt: skip
        sim.now = start
        sim.start(start)
        sim.steady("a", start, start + 600)
        for t in range(600, 600 + 50 * 60, 60):
            sim.probe("a", start + t, delay=None)
        sim.steady("a", start + 3600, start + 3 * 3600)
        sim.run(start + 3 * 3600)
        report = build_report(ledger, SlaConfig(), "2026-07", now=start + 3 * 3600)
    account, route = report.scopes
    assert account.figures.down_seconds == pytest.approx(3000.0)
    assert route.receive_down_seconds == pytest.approx(3000.0)
    assert route.send_down_seconds == 0.0
    assert clause(report, "disconnection", "a") == (pytest.approx(50.0), Verdict.BREACHED)
    assert report.partial
    assert route.probes_lost == 50
    assert [(o.check, o.start) for o in report.outages] == [("receive", start + 600)]


def test_trouble_free_days_count_days_with_failures_in_the_rolling_year(tmp_path: Path) -> None:
    start = ts("2025-11-01T00:00")
    end = ts("2026-11-01T00:00")
    days = [ts(f"2026-{m:02d}-10T12:00") for m in range(1, 7)]
    outages = [("a", Check.SEND, d, d + 60) for d in days]
    with fill(tmp_path / "l.db", [(start, end)], outages) as ledger:
        report = build_report(ledger, SlaConfig(), "2026-10", now=end)
    assert clause(report, "trouble_free_days") == (359.0, Verdict.BREACHED)


def test_percentage_remedy_is_capped_and_stated(tmp_path: Path) -> None:
    start, end = ts("2026-04-01T00:00"), ts("2026-05-01T00:00")
    outage = ("a", Check.SEND, start + 3600, start + 3600 + 66 * 60)
    sla = SlaConfig.model_validate(
        {"remedies": {"connectivity": {"kind": "percentage"}, "operations": {"kind": "fee_waived"}},
         "compensation": {"contract_total": 120000, "monthly_fee": 10000, "currency": "EUR"}}
    )  # fmt: skip
    with fill(tmp_path / "l.db", [(start, end)], [outage]) as ledger:
        report = build_report(ledger, sla, "2026-04", now=end)
    kinds = {o.kind.value: o for o in report.remedy.owed}
    # 120000 x (22 / 44) x 1 = 60000, capped at 15 % of 120000 = 18000.
    assert kinds["percentage"].amount == pytest.approx(18000.0)
    assert kinds["fee_waived"].amount == 10000.0
    assert report.remedy.capped
    assert report.remedy.money_total == pytest.approx(28000.0)
    assert "28,000.00 EUR" in report.remedy.summary


def test_every_format_carries_the_verdicts_and_the_rules(tmp_path: Path) -> None:
    start, end = ts("2026-09-01T00:00"), ts("2026-10-01T00:00")
    outage = ("a", Check.SEND, start + 3600, start + 7200)
    probes = [_probe("p1", start + 60, 1.5)]
    with fill(tmp_path / "l.db", [(start, end)], [outage], probes) as ledger:
        report = build_report(ledger, SlaConfig(), "2026-09", now=end)
    text, md = render_text(report), render_markdown(report)
    data = json.loads(render_json(report))
    assert data["verdict"] == "breached"
    assert data["scopes"][0]["route"] == ALL_ROUTES
    assert data["scopes"][0]["clauses"][0]["verdict"] == "breached"
    for doc in (text, md):
        assert "Disconnection" in doc
        assert "breached" in doc
        assert "FIRST failed sample" in doc
        assert "double service time" in doc
    assert md.startswith("# SLA report 2026-09")
    assert render(report, "text") == text
    with pytest.raises(ValueError, match="unknown format"):
        render(report, "pdf")


def test_an_unknown_route_is_refused(tmp_path: Path) -> None:
    with (
        fill(tmp_path / "l.db", [(0.0, 10.0)]) as ledger,
        pytest.raises(ValueError, match="neither configured"),
    ):
        build_report(ledger, SlaConfig(), "2026-01", route="nope")


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 745 * 60), min_size=2, max_size=12, unique=True),
    gaps=st.lists(st.integers(0, 745 * 60), max_size=4, unique=True),
)
def test_daily_figures_sum_to_the_month(cuts: list[int], gaps: list[int]) -> None:
    """Per-day observed, down and maintenance seconds add up to the month's, DST month included."""
    start = datetime(2026, 10, 1, tzinfo=BERLIN).timestamp()
    end = datetime(2026, 11, 1, tzinfo=BERLIN).timestamp()
    marks = sorted(start + 60.0 * c for c in cuts)
    outages = [
        ("a" if i % 4 else "b", Check.SEND if i % 3 else Check.RECEIVE, lo, hi)
        for i, (lo, hi) in enumerate(zip(marks[::2], marks[1::2], strict=False))
    ]
    holes = sorted(start + 60.0 * g for g in gaps)
    edges = [start, *[x for h in holes for x in (h, h + 1800.0)], end]
    runs = [(lo, hi) for lo, hi in zip(edges[::2], edges[1::2], strict=False) if hi > lo]
    window = RecurringWindow.model_validate(
        {"name": "n", "daily": True, "start": "02:30", "duration": "90m",
         "timezone": "Europe/Berlin"}
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, fill(Path(tmp) / "l.db", runs, outages) as ledger:
        report = build_report(
            ledger, SlaConfig(timezone="Europe/Berlin"), "2026-10", windows=[window], now=end
        )
    for scope in report.scopes:
        f = scope.figures
        assert sum(d.observed_seconds for d in scope.daily) == pytest.approx(f.observed_seconds)
        assert sum(d.down_seconds for d in scope.daily) == pytest.approx(f.down_seconds)
        assert sum(d.maintenance_seconds for d in scope.daily) == pytest.approx(
            f.maintenance_seconds
        )
        assert f.down_seconds + f.maintenance_seconds <= f.observed_seconds + 1e-6
    account = report.scopes[0].figures.down_seconds
    assert account <= sum(s.figures.down_seconds for s in report.scopes[1:]) + 1e-6
