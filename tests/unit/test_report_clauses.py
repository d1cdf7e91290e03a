"""The report's clauses beside mail delivery, on hand-made ledgers: webmail under each policy,
anti-virus outcomes and the delay after them, internal and external mail, what is out of scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailprobe.agent.antivirus_test import AntivirusTest, Outcome
from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.clauses import NOT_MEASURED, Verdict
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.report import Report, build_report
from mailprobe.agent.report_render import render_text
from mailprobe.agent.sla import RemedyKind, SlaConfig
from mailprobe.agent.webmail_sample import WebmailSample
from tests.unit.test_report import fill, ts

START, END = ts("2026-09-01T00:00"), ts("2026-10-01T00:00")
AFTER = ts("2026-10-05T00:00")


def _loads(seconds: list[float], failed: int = 0) -> list[WebmailSample]:
    out = [WebmailSample("portal", START + 3600.0 * (i + 1), "http", True, s)
           for i, s in enumerate(seconds)]  # fmt: skip
    out += [WebmailSample("portal", START + 86400.0 + 60.0 * i, "http", False, 3.0, "connect",
                          "connect") for i in range(failed)]  # fmt: skip
    return out


def _webmail_report(tmp_path: Path, samples: list[WebmailSample], **sla: object) -> Report:
    with fill(tmp_path / "l.db", [(START, END)]) as ledger:
        for sample in samples:
            ledger.record_webmail(sample)
        ledger.record_transition(Transition("portal", Check.WEBMAIL, False, START + 7200.0))
        ledger.record_transition(Transition("portal", Check.WEBMAIL, True, START + 7500.0))
        return build_report(ledger, SlaConfig.model_validate({"webmail": sla}), "2026-09",
                            routes=["a"], now=AFTER, webmail=["portal"])  # fmt: skip


def _webmail(report: Report) -> tuple[float | None, Verdict, str]:
    found = next(c for c in report.scopes[0].clauses if c.clause == "webmail")
    return found.measured, found.verdict, found.title


@pytest.mark.parametrize(
    ("policy", "expected"),
    [({"policy": "any"}, (1.0, Verdict.BREACHED)),
     ({"policy": "count"}, (1.0, Verdict.KEPT)),  # default: more than two is a breach
     ({"policy": "count", "allowed": 0}, (1.0, Verdict.BREACHED)),
     ({"policy": "percentile", "percentile": 90}, (pytest.approx(3.0), Verdict.KEPT)),
     ({"policy": "percentile", "percentile": 95}, (pytest.approx(12.0), Verdict.BREACHED))],
)  # fmt: skip
def test_webmail_verdict_follows_the_policy(
    tmp_path: Path, policy: dict[str, object], expected: tuple[object, Verdict]
) -> None:
    """Ten loads, one of 12 s over the 10 s limit: any breaches, count (2 allowed) keeps, p95
    falls on the slow load, p90 on a fast one."""
    report = _webmail_report(tmp_path, _loads([1.0] * 5 + [3.0] * 4 + [12.0]), **policy)
    measured, verdict, _ = _webmail(report)
    assert (measured, verdict) == expected


def test_webmail_figures_failures_and_outage_minutes_apart_from_mail(tmp_path: Path) -> None:
    """Failed loads count over the limit and never open; p95, maximum and share within are of
    the month; the confirmed webmail outage is listed apart and is no mail downtime."""
    report = _webmail_report(tmp_path, _loads([1.0] * 18 + [11.0] * 2, failed=2))
    stats = dict(report.scopes[0].webmail)["portal"]
    assert (stats.samples, stats.failed, stats.over_limit) == (22, 2, 4)
    assert stats.maximum == 11.0
    assert stats.p95 == 11.0
    assert stats.within_percent == pytest.approx(100 * 18 / 22)
    assert stats.down_seconds == pytest.approx(300.0)
    assert _webmail(report)[:2] == (4.0, Verdict.BREACHED)
    owed = {o.kind: o.clauses for o in report.remedy.owed}
    assert owed[RemedyKind.DOUBLE_SERVICE_TIME] == ("webmail",)
    assert [(o.route, o.check, o.down_seconds) for o in report.outages] == [
        ("portal", "webmail", pytest.approx(300.0))
    ]
    disconnection = next(c for c in report.scopes[0].clauses if c.clause == "disconnection")
    assert disconnection.measured == 0.0
    text = render_text(report)
    assert "Webmail portal" in text
    assert "Webmail opens within 10s: loads over it" in text


def test_a_config_without_webmail_or_antivirus_names_them_not_measured(tmp_path: Path) -> None:
    """No clause row without data to judge it; the out-of-scope promises are named with why."""
    with fill(tmp_path / "l.db", [(START, END)]) as ledger:
        report = build_report(ledger, SlaConfig(), "2026-09", routes=["a"], now=AFTER)
    ids = {c.clause for s in report.scopes for c in s.clauses}
    assert not ids & {"webmail", "anti_virus", "anti_virus_delay"}
    text = " ".join(report.not_measured)
    assert "no webmail check is configured" in text
    assert "no route sends test viruses" in text
    for key, _ in NOT_MEASURED:
        assert key not in {"webmail", "anti_virus"}
    assert {k for k, _ in NOT_MEASURED} >= {"spam_handling", "force_majeure"}


def _antivirus_report(tmp_path: Path, tests: list[AntivirusTest]) -> Report:
    probes = [Probe(f"{i:032x}", "a", Status.OK, START + 600.0 * i, accepted_at=START + 600.0 * i,
                    arrived_at=START + 600.0 * i + 2.0, delay_seconds=2.0)
              for i in range(1, 20)]  # fmt: skip
    follow = Probe("f" * 32, "a", Status.OK, START + 50000.0, accepted_at=START + 50000.0,
                   arrived_at=START + 50090.0, delay_seconds=90.0)  # fmt: skip
    with fill(tmp_path / "l.db", [(START, END)], probes=[*probes, follow]) as ledger:
        for test in tests:
            ledger.record_antivirus(test)
        return build_report(ledger, SlaConfig(), "2026-09", routes=["a"], now=AFTER,
                            antivirus=["a"])  # fmt: skip


def test_antivirus_outcomes_verdicts_and_the_delay_after_a_test(tmp_path: Path) -> None:
    """Refused and stripped tests keep the clause; the clean probe after one took 88 s longer
    than the route's 2 s median: more than the 60 s allowed; the fee is waived for it."""
    tests = [
        AntivirusTest("1" * 32, "a", START + 49990.0).decide(Outcome.REFUSED, START + 49991.0,
                                                              reply_code=554),
        AntivirusTest("2" * 32, "a", START + 90000.0, follow_up="f" * 32).decide(
            Outcome.STRIPPED, START + 90005.0),
    ]  # fmt: skip
    report = _antivirus_report(tmp_path, tests)
    scope = report.scopes[0]
    virus = next(c for c in scope.clauses if c.clause == "anti_virus")
    delay = next(c for c in scope.clauses if c.clause == "anti_virus_delay")
    assert (virus.measured, virus.verdict) == (0.0, Verdict.KEPT)
    assert "1 refused, 1 stripped" in virus.detail
    assert delay.measured == pytest.approx(88.0)
    assert delay.verdict is Verdict.BREACHED
    owed = {o.kind: o.clauses for o in report.remedy.owed}
    assert owed[RemedyKind.FEE_WAIVED] == ("anti_virus_delay",)


def test_a_test_virus_delivered_intact_is_a_breach_at_once(tmp_path: Path) -> None:
    """One intact delivery breaches anti_virus, whatever else the month holds."""
    tests = [
        AntivirusTest("3" * 32, "a", START + 100.0).decide(Outcome.INTACT, START + 101.0),
        AntivirusTest("4" * 32, "a", START + 200.0).decide(Outcome.NOT_SEEN, START + 2000.0),
    ]
    report = _antivirus_report(tmp_path, tests)
    virus = next(c for c in report.scopes[0].clauses if c.clause == "anti_virus")
    assert (virus.measured, virus.verdict) == (1.0, Verdict.BREACHED)
    assert "1 not seen" in virus.detail


def test_internal_and_external_mail_are_judged_apart_and_together(tmp_path: Path) -> None:
    """Kind scopes: disconnection of the internal routes (overlaps once) and of the external
    one; the account over both; a kind scope owes nothing of its own."""
    outages = [("i1", Check.SEND, START + 3600.0, START + 3600.0 + 1800.0),
               ("i2", Check.RECEIVE, START + 3600.0 + 900.0, START + 3600.0 + 2700.0),
               ("x1", Check.SEND, START + 86400.0, START + 86400.0 + 600.0)]  # fmt: skip
    with fill(tmp_path / "l.db", [(START, END)], outages) as ledger:
        report = build_report(ledger, SlaConfig(), "2026-09", routes=["i1", "i2", "x1"],
                              now=AFTER, kinds={"i1": "internal", "i2": "internal",
                                                "x1": "external"})  # fmt: skip
    names = [s.route for s in report.scopes]
    assert names == ["all", "kind:internal", "kind:external", "i1", "i2", "x1"]
    down = {s.route: next(c for c in s.clauses if c.clause == "disconnection").measured
            for s in report.scopes}  # fmt: skip
    assert down["kind:internal"] == pytest.approx(45.0)
    assert down["kind:external"] == pytest.approx(10.0)
    assert down["all"] == pytest.approx(55.0)
    assert report.verdict is Verdict.BREACHED  # the account: 55 min against 44
    internal = report.scopes[1]
    assert {c.clause for c in internal.clauses} <= {
        "disconnection",
        "delivery_delay_average",
        "delivery_over_maximum",
    }
    assert "Internal mail (routes i1, i2)" in render_text(report)


def test_a_kind_without_routes_is_named_not_measured(tmp_path: Path) -> None:
    """Only internal routes: the report says external mail is not measured."""
    with fill(tmp_path / "l.db", [(START, END)]) as ledger:
        report = build_report(ledger, SlaConfig(), "2026-09", routes=["i1"], now=AFTER,
                              kinds={"i1": "internal"})  # fmt: skip
    assert [s.route for s in report.scopes] == ["all", "kind:internal", "i1"]
    assert any(t.startswith("External mail: no external route") for t in report.not_measured)
