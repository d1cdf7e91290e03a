"""SLA config (defaults are the seed contract), clause verdicts and remedies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mailprobe.agent.sla import (
    DelayStats,
    Figures,
    RemedyKind,
    SlaConfig,
    Verdict,
    evaluate,
    remedies,
)

MONTH = 30 * 86400.0


def figures(**changes: object) -> Figures:
    base: dict[str, object] = {
        "period_seconds": MONTH, "month_seconds": MONTH, "observed_seconds": MONTH,
        "down_seconds": 0.0, "maintenance_seconds": 0.0, "year_days": 365,
        "year_failure_days": 0, "year_observed_percent": 100.0,
        "delivery": DelayStats(100, 5.0, 30.0, 0),
    }  # fmt: skip
    base.update(changes)
    return Figures(**base)  # type: ignore[arg-type]


def verdicts(sla: SlaConfig, f: Figures) -> dict[str, Verdict]:
    return {c.clause: c.verdict for c in evaluate(f, sla, route_scope=False)}


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
    f = figures(down_seconds=44.5 * 60, month_seconds=31 * 86400.0)
    assert verdicts(SlaConfig(), f)["connectivity"] is Verdict.BREACHED
    # 0.1 % of a 31-day month is 44.64 min.
    assert verdicts(SlaConfig(ratio_mode=True), f)["connectivity"] is Verdict.KEPT


def test_low_coverage_gives_insufficient_data_unless_the_breach_is_already_certain() -> None:
    thin = figures(observed_seconds=MONTH * 0.5, down_seconds=60.0)
    got = verdicts(SlaConfig(), thin)
    assert got["connectivity"] is Verdict.INSUFFICIENT_DATA
    # 60 s down is below 99.99 % of the observed half month, and of the whole month too? No:
    # best case 1 - 60 / 2592000 = 99.9977 % >= 99.99 %, so not certain.
    assert got["availability"] is Verdict.INSUFFICIENT_DATA
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
    outcome = remedies(evaluate(f, sla, route_scope=False), sla, "2026-04", 30)
    (owed,) = outcome.owed
    assert owed.kind is RemedyKind.DOUBLE_SERVICE_TIME
    assert set(owed.clauses) == {"connectivity", "failure_time", "availability"}
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
    outcome = remedies(evaluate(f, sla, route_scope=False), sla, "2026-04", 30)
    amounts = {o.clauses[0]: o.amount for o in outcome.owed}
    assert amounts["connectivity"] == pytest.approx(1000000 * 11 / 44 * 2)
    # Availability: rate 1 % per hour over the allowed 259.2 s: (3300 - 259.2) / 3600 h.
    assert amounts["availability"] == pytest.approx(1000000 * 0.01 * (3300 - 259.2) / 3600)
    assert not outcome.capped
    assert "failure_time" not in amounts


def test_a_tiny_overrun_is_raised_to_the_minimum_per_event() -> None:
    sla = SlaConfig.model_validate(
        {"remedies": {"connectivity": {"kind": "percentage"}},
         "compensation": {"contract_total": 10000}}
    )  # fmt: skip
    f = figures(down_seconds=44.1 * 60)
    outcome = remedies(evaluate(f, sla, route_scope=False), sla, "2026-04", 30)
    connectivity = next(o for o in outcome.owed if o.clauses == ("connectivity",))
    assert connectivity.amount == 1000.0
    assert "raised to the minimum" in connectivity.reason


def test_nothing_owed_when_nothing_was_breached() -> None:
    outcome = remedies(evaluate(figures(), SlaConfig(), route_scope=True), SlaConfig(), "x", 30)
    assert outcome.owed == ()
    assert outcome.summary.startswith("nothing owed")
