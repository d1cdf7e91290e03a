"""SLA config (defaults are the seed contract), the clause registry, verdicts and remedies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mailprobe.agent.clauses import (
    CLAUSES,
    NOT_MEASURED,
    DelayStats,
    Figures,
    Scope,
    Verdict,
    by_id,
    evaluate,
    sla_targets,
)
from mailprobe.agent.remedies import remedies
from mailprobe.agent.sla import RemedyKind, SlaConfig

MONTH = 30 * 86400.0


def figures(**changes: object) -> Figures:
    base: dict[str, object] = {
        "period_seconds": MONTH, "month_seconds": MONTH, "observed_seconds": MONTH,
        "down_seconds": 0.0, "maintenance_seconds": 0.0, "year_days": 365,
        "year_observed_days": 365, "year_failure_days": 0, "year_observed_percent": 100.0,
        "delivery": DelayStats(100, 5.0, 30.0, 0), "junk_watched": 100, "junked": 0,
    }  # fmt: skip
    base.update(changes)
    return Figures(**base)  # type: ignore[arg-type]


def verdicts(sla: SlaConfig, f: Figures) -> dict[str, Verdict]:
    return {c.clause: c.verdict for c in evaluate(f, sla, Scope.ACCOUNT)}


def test_defaults_are_the_seed_contract() -> None:
    sla = SlaConfig()
    assert (sla.disconnection_minutes, sla.failure_minutes, sla.maintenance_minutes) == (
        44,
        100,
        100,
    )
    assert (sla.availability_percent, sla.trouble_free_days) == (99.99, 360)
    assert (sla.delay_average, sla.delay_maximum, sla.over_maximum_allowed) == (60, 3600, 2)
    assert (sla.receive_deadline, sla.confirm_retry) == (300, 15)
    assert sla.remedies.connectivity.kind is RemedyKind.DOUBLE_SERVICE_TIME
    assert sla.remedies.delay.kind is RemedyKind.DOUBLE_SERVICE_TIME
    assert sla.remedies.operations.kind is RemedyKind.DOUBLE_SERVICE_TIME
    assert sla.remedies.anti_spam.kind is RemedyKind.FEE_WAIVED
    assert not sla.ratio_mode


def test_durations_are_written_with_units_and_dumped_the_same_way() -> None:
    sla = SlaConfig.model_validate({"delay_average": "90s", "receive_deadline": "10m"})
    assert sla.delay_average == 90.0
    dumped = sla.model_dump(mode="json")
    assert (dumped["delay_average"], dumped["receive_deadline"]) == ("1m30s", "10m")
    assert SlaConfig.model_validate(dumped) == sla


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"delay_average": 60}, "give a unit"),
        ({"remedies": {"delay": {"kind": "percentage"}}}, "contract_total"),
        ({"confirm_retry": "3m"}, "confirm_within"),
        ({"timezone": "Nowhere/City"}, "unknown time zone"),
        ({"disconection_minutes": 40}, "Extra inputs"),
        ({"compensation": {"cap_percent": 150}}, "less than or equal"),
    ],
)
def test_invalid_sla_config_is_refused_with_the_reason(
    raw: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SlaConfig.model_validate(raw)


def test_a_clean_fully_observed_month_keeps_every_clause() -> None:
    assert set(verdicts(SlaConfig(), figures()).values()) == {Verdict.KEPT}


def test_stated_minutes_not_the_ratio_decide_disconnection_unless_configured() -> None:
    days31 = 31 * 86400.0
    f = figures(down_seconds=44.5 * 60, month_seconds=days31, period_seconds=days31,
                observed_seconds=days31)  # fmt: skip
    assert verdicts(SlaConfig(), f)["disconnection"] is Verdict.BREACHED
    # 0.1 % of a 31-day month is 44.64 min.
    assert verdicts(SlaConfig(ratio_mode=True), f)["disconnection"] is Verdict.KEPT


def test_low_coverage_gives_not_enough_data_unless_the_breach_is_already_certain() -> None:
    thin = figures(observed_seconds=MONTH * 0.5, down_seconds=60.0)
    got = verdicts(SlaConfig(), thin)
    assert got["disconnection"] is Verdict.NOT_ENOUGH_DATA
    # 60 s down is below 99.99 % of the observed half month, and of the whole month too? No:
    # best case 1 - 60 / 2592000 = 99.9977 % >= 99.99 %, so not certain.
    assert got["availability"] is Verdict.NOT_ENOUGH_DATA
    worse = figures(observed_seconds=MONTH * 0.5, down_seconds=600.0)
    assert verdicts(SlaConfig(), worse)["availability"] is Verdict.BREACHED


def test_delay_clauses_judge_the_average_and_the_count_over_the_maximum() -> None:
    slow = figures(delivery=DelayStats(10, 75.0, 3000.0, 0))
    assert verdicts(SlaConfig(), slow)["delivery_delay_average"] is Verdict.BREACHED
    three = figures(delivery=DelayStats(10, 5.0, 5000.0, 3))
    got = verdicts(SlaConfig(), three)
    assert got["delivery_over_maximum"] is Verdict.BREACHED
    assert got["delivery_delay_average"] is Verdict.KEPT
    measured = figures(send=DelayStats(10, 2.0, 4.0, 0))
    assert "send_delay_average" in verdicts(SlaConfig(), measured)
    assert "send_delay_average" not in verdicts(SlaConfig(), figures())


def test_double_service_time_is_owed_once_with_every_reason() -> None:
    sla = SlaConfig()
    f = figures(down_seconds=120 * 60)
    outcome = remedies(evaluate(f, sla, Scope.ACCOUNT), sla, "2026-04", 30)
    (owed,) = outcome.owed
    assert owed.kind is RemedyKind.DOUBLE_SERVICE_TIME
    assert set(owed.clauses) == {"disconnection", "failure", "availability"}
    assert "30 days' extension" in owed.reason
    assert outcome.money_total == 0.0


def test_percentage_remedy_uses_the_ratio_formula_or_the_hourly_rate() -> None:
    sla = SlaConfig.model_validate(
        {"remedies": {"connectivity": {"kind": "percentage", "coefficient": 2},
                      "operations": {"kind": "percentage", "rate_percent_per_hour": 1}},
         "compensation": {"contract_total": 1000000, "minimum_per_event": 1000,
                          "cap_percent": 80}}
    )  # fmt: skip
    f = figures(down_seconds=55 * 60)  # 11 min over 44
    outcome = remedies(evaluate(f, sla, Scope.ACCOUNT), sla, "2026-04", 30)
    amounts = {o.clauses[0]: o.amount for o in outcome.owed}
    assert amounts["disconnection"] == pytest.approx(1000000 * 11 / 44 * 2)
    # Availability: rate 1 % per hour over the allowed 259.2 s: (3300 - 259.2) / 3600 h.
    assert amounts["availability"] == pytest.approx(1000000 * 0.01 * (3300 - 259.2) / 3600)
    assert not outcome.capped
    assert "failure" not in amounts


def test_a_tiny_overrun_is_raised_to_the_minimum_per_event() -> None:
    sla = SlaConfig.model_validate(
        {"remedies": {"connectivity": {"kind": "percentage"}},
         "compensation": {"contract_total": 10000}}
    )  # fmt: skip
    f = figures(down_seconds=44.1 * 60)
    outcome = remedies(evaluate(f, sla, Scope.ACCOUNT), sla, "2026-04", 30)
    connectivity = next(o for o in outcome.owed if o.clauses == ("disconnection",))
    assert connectivity.amount == 1000.0
    assert "raised to the minimum" in connectivity.reason


def test_nothing_owed_when_nothing_was_breached() -> None:
    outcome = remedies(evaluate(figures(), SlaConfig(), Scope.ROUTE), SlaConfig(), "x", 30)
    assert outcome.owed == ()
    assert outcome.summary.startswith("nothing owed")


def test_a_15_second_outage_in_a_month_observed_0_1_percent_owes_nothing_and_says_why() -> None:
    """Barely observed: nothing is decided, nothing owed, and the report says what is missing."""
    f = figures(observed_seconds=MONTH * 0.001, down_seconds=15.0, year_observed_days=1,
                year_observed_percent=0.1 / 12)  # fmt: skip
    results = evaluate(f, SlaConfig(), Scope.ACCOUNT)
    assert {r.verdict for r in results} == {Verdict.NOT_ENOUGH_DATA}
    by_clause = {r.clause: r for r in results}
    assert "coverage 0.1 %" in by_clause["disconnection"].needed
    assert "90 % needed" in by_clause["disconnection"].needed
    assert by_clause["availability"].measured == pytest.approx(100 * (1 - 15 / 2592))
    outcome = remedies(results, SlaConfig(), "2026-04", 30)
    assert outcome.owed == ()
    assert outcome.summary.startswith("nothing owed")
    assert "without enough data to decide" in outcome.summary


def test_50_minutes_down_at_10_percent_coverage_is_a_breach_owed_once() -> None:
    """50 min against 44 is decided at any coverage; its remedy is owed once."""
    f = figures(observed_seconds=MONTH * 0.1, down_seconds=50 * 60.0)
    results = evaluate(f, SlaConfig(), Scope.ACCOUNT)
    got = {r.clause: r.verdict for r in results}
    assert got["disconnection"] is Verdict.BREACHED
    assert got["failure"] is Verdict.NOT_ENOUGH_DATA  # 50 of 100 min: more may come
    outcome = remedies(results, SlaConfig(), "2026-04", 30)
    # Availability is decided too: even with every unobserved second up it stays below 99.99 %.
    assert got["availability"] is Verdict.BREACHED
    (owed,) = outcome.owed
    assert owed.kind is RemedyKind.DOUBLE_SERVICE_TIME
    assert set(owed.clauses) == {"disconnection", "availability"}
    assert outcome.summary.count("double service time") == 1


def test_a_full_month_kept_says_kept_for_every_clause_it_judges() -> None:
    """Fully observed, nothing down, prompt mail: kept, and nothing needed."""
    results = evaluate(figures(), SlaConfig(), Scope.ROUTE)
    assert {r.verdict for r in results} == {Verdict.KEPT}
    assert all(r.needed == "" and r.projection is None for r in results)


def test_a_month_in_progress_is_not_kept_yet_and_gets_a_projection() -> None:
    """Half the month, fully observed: not decided, but the projection says where it is heading."""
    half = figures(period_seconds=MONTH / 2, observed_seconds=MONTH / 2, down_seconds=30 * 60.0)
    results = {r.clause: r for r in evaluate(half, SlaConfig(), Scope.ACCOUNT)}
    disconnection = results["disconnection"]
    assert disconnection.verdict is Verdict.NOT_ENOUGH_DATA
    assert "the month is not over (15.0 days left)" in disconnection.needed
    assert disconnection.projection is Verdict.BREACHED  # 30 min in half a month: 60 projected
    assert "60.0 min projected" in disconnection.detail
    assert results["failure"].projection is Verdict.KEPT
    over = figures(period_seconds=MONTH / 2, observed_seconds=MONTH / 2, down_seconds=45 * 60.0)
    assert verdicts(SlaConfig(), over)["disconnection"] is Verdict.BREACHED


def test_trouble_free_days_count_only_observed_days() -> None:
    """Nothing observed is not 365 trouble-free days; a breach is certain when the year says so."""
    nothing = figures(observed_seconds=0.0, year_observed_days=0, year_observed_percent=0.0)
    tfd = next(r for r in evaluate(nothing, SlaConfig(), Scope.ACCOUNT) if r.clause == "trouble_free_days")
    assert (tfd.measured, tfd.verdict) == (0.0, Verdict.NOT_ENOUGH_DATA)
    assert tfd.needed == "360 more observed trouble-free days"
    bad = figures(year_failure_days=6)
    assert verdicts(SlaConfig(), bad)["trouble_free_days"] is Verdict.BREACHED


def test_the_registry_defines_each_clause_once_with_a_remedy_for_its_group() -> None:
    """Unique ids; every group has a configured remedy; the exported targets come from it."""
    ids = [c.id for c in CLAUSES]
    assert len(ids) == len(set(ids))
    sla = SlaConfig()
    for clause in CLAUSES:
        assert hasattr(sla.remedies, clause.group), clause.id
        assert by_id(clause.id) is clause
    targets = sla_targets(sla)
    assert targets["disconnection"] == 44 * 60
    assert targets["failure"] == 100 * 60
    assert targets["maintenance"] == 100 * 60
    assert targets["delivery_delay_average"] == 60.0
    assert {key for key, _ in NOT_MEASURED} >= {"spam_handling", "force_majeure"}


def test_one_probe_filed_as_spam_breaches_anti_spam_and_waives_the_fee() -> None:
    """Legitimate mail in the junk folder: breached at once, the monthly fee owed, nothing else."""
    sla = SlaConfig.model_validate({"compensation": {"monthly_fee": 250, "currency": "EUR"}})
    results = evaluate(figures(junked=1), sla, Scope.ACCOUNT)
    spam = next(r for r in results if r.clause == "anti_spam")
    assert (spam.verdict, spam.measured, spam.limit) == (Verdict.BREACHED, 1.0, 0.0)
    assert "1 of 100 delivered probes filed into the junk folder" in spam.detail
    owed = remedies(results, sla, "2026-11", 30)
    assert [(o.kind, o.clauses, o.amount) for o in owed.owed] == [
        (RemedyKind.FEE_WAIVED, ("anti_spam",), 250.0)
    ]
    assert {r.clause for r in results if r.verdict is Verdict.BREACHED} == {"anti_spam"}


def test_anti_spam_is_undecided_without_a_watched_junk_folder() -> None:
    """No probe arrived while the junk folder was watched: no verdict, and what would decide it."""
    spam = by_id("anti_spam").judge(figures(junk_watched=0), SlaConfig(), Scope.ROUTE)
    assert spam is not None
    assert spam.verdict is Verdict.NOT_ENOUGH_DATA
    assert "junk_folder" in spam.needed


def test_probes_in_junk_within_the_allowance_keep_the_clause() -> None:
    """junked_allowed 2 and two probes in the junk folder: kept; a third would breach."""
    sla = SlaConfig(junked_allowed=2)
    assert verdicts(sla, figures(junked=2))["anti_spam"] is Verdict.KEPT
    assert verdicts(sla, figures(junked=3))["anti_spam"] is Verdict.BREACHED


def test_anti_spam_is_no_longer_listed_as_not_measured() -> None:
    """The clause registry measures it now."""
    assert "anti_spam" not in {key for key, _ in NOT_MEASURED}
    assert by_id("anti_spam").group == "anti_spam"
