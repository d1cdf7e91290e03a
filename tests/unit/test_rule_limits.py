"""Limits written in the shipped Prometheus rules and alerts are the clause registry's defaults.

The rules are hand-written YAML; these checks hold every limit in them (the target rule's
fallbacks, alert thresholds, limits stated in alert texts) to ``mailprobe.agent.clauses`` and the
``SlaConfig`` defaults, so the contract's figures are defined once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.clauses import CLAUSES, Unit, sla_targets
from mailprobe.agent.sla import SlaConfig

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = [path for folder in ("rules", "fallback", "alerts")
              for path in sorted((ROOT / "config" / "prometheus" / folder).glob("*.yml"))]  # fmt: skip


def shipped_rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES
            for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"]]  # fmt: skip


SEED = SlaConfig()
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")
# Figures in alert expressions that are not contract limits: burn-rate factors (Google SRE
# workbook), "half spent", booleans and zero, the 15-minute probe silence, days in seconds, and
# the 14- and 3-day certificate notices.
NOT_LIMITS = {0.0, 1.0, 0.5, 14.4, 6.0, 3.0, 900.0, 86400.0, 14.0}
YEAR_DAYS = 365


def alerts_by_name() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in shipped_rules() if "alert" in r}


def numbers(text: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(text)]


def test_fallback_limits_are_the_registry_defaults() -> None:
    """The constants the target rule falls back to are sla_targets(SlaConfig()), clause for
    clause; the minutes rule takes exactly the clauses the registry states in minutes."""
    rules = {r["record"]: r["expr"] for r in shipped_rules() if "record" in r}
    fallbacks = re.findall(r'label_replace\(vector\(([\d.]+)\), "clause", "(\w+)", "", ""\)',
                           rules["clause:mailprobe_sla_target_seconds:effective"])  # fmt: skip
    assert {clause: float(v) for v, clause in fallbacks} == dict(sla_targets(SEED))
    minutes_rule = rules["clause:mailprobe_sla_target_minutes:effective"]
    (minutes,) = re.findall(r'clause=~"([\w|]+)"', minutes_rule)
    assert set(minutes.split("|")) == {c.id for c in CLAUSES if c.unit is Unit.MINUTES}


def test_limits_in_alert_expressions_are_the_registry_defaults() -> None:
    """Every figure in an alert expression is a contract default from SlaConfig() where it is a
    limit, or a factor that is not one; budget and delay alerts read the exported targets."""
    budget = (100.0 - SEED.connectivity_percent) / 100.0
    limits = {
        "MailprobeConnectivityBurnRatePage": budget,
        "MailprobeConnectivityBurnRateTicket": budget,
        "MailprobeDelayMaximumExceededTooOften": float(SEED.over_maximum_allowed),
        "MailprobeTroubleFreeDaysBreached": float(YEAR_DAYS - SEED.trouble_free_days),
        "MailprobeCoverageLow": SEED.coverage_floor_percent / 100.0,
        "MailprobeWebmailOverLimitTooOften": float(SEED.webmail.allowed),
    }
    alerts = alerts_by_name()
    assert set(limits) <= set(alerts)
    for name, rule in alerts.items():
        found = numbers(rule["expr"])
        if name in limits:
            assert limits[name] in [pytest.approx(n) for n in found], (name, found)
        strays = [n for n in found if n not in NOT_LIMITS
                  and not (name in limits and n == pytest.approx(limits[name]))]  # fmt: skip
        assert strays == [], f"{name}: {strays} hard-coded; read clause:mailprobe_sla_target_*"
    for name in ("MailprobeDisconnectionBudgetHalfSpent", "MailprobeDisconnectionBudgetSpent",
                 "MailprobeFailureBudgetHalfSpent", "MailprobeFailureBudgetSpent",
                 "MailprobeMaintenanceAllowanceSpent", "MailprobeDelayAverageHigh"):  # fmt: skip
        assert "clause:mailprobe_sla_target_" in alerts[name]["expr"], name


def test_limits_in_alert_texts_are_the_registry_defaults() -> None:
    """Where an annotation states a limit in words, it states the contract default."""
    budget_percent = 100.0 - SEED.connectivity_percent
    connectivity = (f"the {budget_percent:.1f} % that {SEED.connectivity_percent:g} % allows",
                    f"the month's {sla_targets(SEED)['disconnection'] / 60:g} minutes")  # fmt: skip
    words = {2: "twice"}
    phrases = {
        "MailprobeConnectivityBurnRatePage": connectivity,
        "MailprobeConnectivityBurnRateTicket": connectivity,
        "MailprobeDelayMaximumExceededTooOften": (
            f"{SEED.delay_maximum / 3600:g} h", f"at most {words[SEED.over_maximum_allowed]}"),
        "MailprobeTroubleFreeDaysBreached": (
            f"{SEED.trouble_free_days} trouble-free days",
            f"more than {YEAR_DAYS - SEED.trouble_free_days}"),
        "MailprobeCoverageLow": (f"less than {SEED.coverage_floor_percent:g} %",),
    }  # fmt: skip
    alerts = alerts_by_name()
    for name, wanted in phrases.items():
        text = " ".join(" ".join(str(v).split()) for v in alerts[name]["annotations"].values())
        missing = [w for w in wanted if w not in text]
        assert missing == [], f"{name}: {missing} not in {text!r}"
