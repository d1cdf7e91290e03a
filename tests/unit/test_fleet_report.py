"""The fleet's month from the vantages' ledgers (tests/helpers/fleet_month.py): provider minutes
under the quorum to the sub-second, local faults excluded and listed, delays that k vantages
reached, and the one-agent report's clauses, remedies and renderers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailprobe.agent.clauses import Verdict
from mailprobe.agent.config import Config, parse_config
from mailprobe.agent.fleet_ledgers import FleetLedgerError, ledger_records
from mailprobe.agent.fleet_report import build_fleet_report
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.report import Report, build_report
from mailprobe.agent.report_html import render_html
from mailprobe.agent.report_render import render
from mailprobe.agent.windows import month_of, shift_month
from tests.helpers import fleet_month as fm

MONTH = shift_month(month_of(time.time(), "Europe/Berlin"), -1)


def t(clock: str) -> float:
    return fm.at(MONTH, clock)


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("fleet")
    return [fm.write_ledger(plan, tmp / f"{plan.vantage.name}.sqlite3") for plan in fm.plans(MONTH)]


def config(tmp: Path) -> Config:
    return parse_config(fm.config_data(MONTH, tmp), check_secrets=False)


def fleet(ledgers: list[Path], tmp: Path, quorum: int = 2, route: str | None = None) -> Report:
    cfg = config(tmp)
    records = ledger_records(ledgers, cfg.sla, MONTH, windows=cfg.maintenance,
                             routes=[r.name for r in cfg.routes])  # fmt: skip
    return build_fleet_report(records, cfg.sla, MONTH, quorum, source="ledgers",
                              precision="read from ledgers", windows=cfg.maintenance,
                              routes=[r.name for r in cfg.routes], route=route)  # fmt: skip


def clause(report: Report, scope: str, clause_id: str) -> tuple[float | None, Verdict]:
    found = next(s for s in report.scopes if s.route == scope)
    c = next(c for c in found.clauses if c.clause == clause_id)
    return c.measured, c.verdict


def test_provider_minutes_are_what_two_of_three_saw_at_once(ledgers: list[Path], tmp_path: Path) -> None:
    """Internal send: from b's start 09:00:05.5 to a's end 09:50:00.75 (2995.25 s); outbound
    receive 11:55-12:00, while b still observed; the account is down for the union."""
    report = fleet(ledgers, tmp_path)
    internal = next(s for s in report.scopes if s.route == "internal")
    assert internal.send_down_seconds == pytest.approx(2995.25)
    assert internal.receive_down_seconds == 0.0  # c's receive fault is local
    outbound = next(s for s in report.scopes if s.route == "outbound")
    assert outbound.receive_down_seconds == pytest.approx(300.0)
    assert outbound.figures.maintenance_seconds == pytest.approx(600.0)
    assert report.scopes[0].figures.down_seconds == pytest.approx(2995.25 + 300.0)
    assert [(o.route, o.check, o.start, o.end) for o in report.outages] == [
        ("internal", "send", t("09:00:05.500"), t("09:50:00.750")),
        ("outbound", "receive", t("11:55:00"), t("12:00:00")),
        ("outbound", "send", t("13:40:00"), t("13:50:00")),
    ]


def test_local_faults_are_excluded_and_listed_per_vantage(ledgers: list[Path], tmp_path: Path) -> None:
    """What fewer than two saw is listed apart, with the vantage, and counts in no figure."""
    fleet_part = fleet(ledgers, tmp_path).fleet
    assert fleet_part is not None
    assert [(o.vantages, o.route, o.check, o.start, o.end) for o in fleet_part.local] == [
        (("a",), "internal", "send", t("09:00:00.250"), t("09:00:05.500")),
        (("b",), "internal", "send", t("09:50:00.750"), t("09:50:03.000")),
        (("c",), "internal", "receive", t("10:30:00"), t("11:15:00")),
        (("a",), "outbound", "receive", t("12:00:00"), t("12:10:00")),
        (("a",), "outbound", "send", t("13:00:00"), t("13:05:30")),
    ]
    local = {v.name: v.local_seconds for v in fleet_part.vantages}
    assert local == pytest.approx({"a": 5.25 + 600 + 330, "b": 2.25, "c": 2700.0})
    assert [(o.route, o.check, o.vantages) for o in fleet_part.provider] == [
        ("internal", "send", ("a", "b", "c")), ("outbound", "receive", ("a", "b")),
        ("outbound", "send", ("a", "b")),
    ]  # fmt: skip
    assert {v.name: (v.site, v.region) for v in fleet_part.vantages} == {
        "a": ("berlin-hq", "eu-central"), "b": ("frankfurt-dc", "eu-central"),
        "c": ("branch", "eu-west")}  # fmt: skip


def test_verdicts_and_remedies_follow_the_provider_minutes(ledgers: list[Path], tmp_path: Path) -> None:
    """Internal is disconnected for 49.92 min (> 44): breached, and double service time owed;
    outbound's 5 min are not."""
    report = fleet(ledgers, tmp_path)
    assert clause(report, "internal", "disconnection") == (pytest.approx(2995.25 / 60), Verdict.BREACHED)
    assert clause(report, "outbound", "disconnection")[1] is not Verdict.BREACHED
    assert report.verdict is Verdict.BREACHED
    assert report.remedy.owed, report.remedy.summary
    assert {c for o in report.remedy.owed for c in o.clauses} >= {"disconnection"}


def test_a_larger_quorum_shrinks_the_provider_s_part(ledgers: list[Path], tmp_path: Path) -> None:
    """Three of three: internal send from c's start to c's end only; what a and b alone shared
    (outbound) is local to them."""
    report = fleet(ledgers, tmp_path, quorum=3)
    internal = next(s for s in report.scopes if s.route == "internal")
    assert internal.send_down_seconds == pytest.approx(t("09:49:58") - t("09:00:12"))
    outbound = next(s for s in report.scopes if s.route == "outbound")
    assert outbound.figures.down_seconds == 0.0
    assert outbound.figures.maintenance_seconds == 0.0


def test_the_fleet_observes_while_two_vantages_do(ledgers: list[Path], tmp_path: Path) -> None:
    """b's restart leaves a and c: the whole day is observed."""
    report = fleet(ledgers, tmp_path)
    assert report.scopes[0].figures.observed_seconds == pytest.approx(t("14:30") - t("08:00"))


def test_delays_are_what_two_vantages_reached_and_counts_the_fleet_s(
    ledgers: list[Path], tmp_path: Path
) -> None:
    """The fleet's average delay is the second worst vantage's (c's slow line alone decides
    nothing); probes are counted over all vantages."""
    cfg = config(tmp_path)
    own = []
    for path in ledgers:
        with Ledger.open_readonly(path) as ledger:
            own.append(build_report(ledger, cfg.sla, MONTH, windows=cfg.maintenance,
                                    routes=[r.name for r in cfg.routes]).scopes[0])  # fmt: skip
    averages = sorted((s.figures.delivery.average or 0.0 for s in own), reverse=True)
    account = fleet(ledgers, tmp_path).scopes[0]
    assert account.figures.delivery.average == averages[1]
    assert account.probes_sent == sum(s.probes_sent for s in own)
    assert account.probes_failed == sum(s.probes_failed for s in own)
    assert len(account.delays) == sum(len(s.delays) for s in own)


def test_one_route_can_be_reported(ledgers: list[Path], tmp_path: Path) -> None:
    """--route keeps to the route, its outages and its local faults."""
    report = fleet(ledgers, tmp_path, route="outbound")
    assert [s.route for s in report.scopes] == ["outbound"]
    assert report.fleet is not None
    assert {o.route for o in report.fleet.local} == {"outbound"}
    assert {o.route for o in report.outages} == {"outbound"}


def test_every_format_shows_the_vantages_and_the_excluded_faults(
    ledgers: list[Path], tmp_path: Path
) -> None:
    """Text, Markdown, HTML and JSON name the quorum, each vantage, and the local faults."""
    report = fleet(ledgers, tmp_path)
    text = render(report, "text")
    assert "Vantage points\n==============" in text
    assert "Local faults (excluded)" in text
    assert "while 2 of them see it at the same time" in " ".join(text.split())
    assert all(len(line) <= 100 for line in text.splitlines())
    for fmt_name in ("markdown",):
        assert "## Local faults (excluded)" in render(report, fmt_name)
    html = render_html(report)
    assert "<section class=page id=fleet>" in html
    assert "frankfurt-dc" in html
    data = json.loads(render(report, "json"))
    assert data["fleet"]["quorum"] == 2
    assert [v["name"] for v in data["fleet"]["vantages"]] == ["a", "b", "c"]
    assert len(data["fleet"]["local"]) == 5


def test_a_ledger_given_twice_is_refused(ledgers: list[Path], tmp_path: Path) -> None:
    """One vantage twice would count its faults twice: the error names both files."""
    cfg = config(tmp_path)
    with pytest.raises(FleetLedgerError, match="are both vantage 'a'"):
        ledger_records([ledgers[0], ledgers[1], ledgers[0]], cfg.sla, MONTH)


def test_a_ledger_that_is_not_one_is_named(tmp_path: Path) -> None:
    """A missing file, or one that is no SQLite ledger, is one line naming it."""
    cfg = config(tmp_path)
    with pytest.raises(FleetLedgerError, match="no such file"):
        ledger_records([tmp_path / "missing.sqlite3"], cfg.sla, MONTH)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(FleetLedgerError, match=r"junk\.sqlite3: cannot"):
        ledger_records([junk], cfg.sla, MONTH)
