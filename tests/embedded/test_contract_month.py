"""The contract month the agent exports equals `mailprobe report` for that month, across a month
end in Europe/Berlin.

Virtual time (FakeClock) runs an agent on the embedded mail service from 23:30 local on the
month's last day to 00:10 on the next month's first: deliveries held from 23:51:30 (two probes
pass the delay maximum, one at 23:59 and one at the stroke of midnight), SMTP refused from
23:53:30 to 00:04:30, an agreed maintenance window 23:58-00:02. The month gauges are read at the
last tick before midnight, the first after it, and at the end, each against the report of the
month they count, built from the ledger at the same instant.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailprobe.agent.books import LEDGER_FILE, TICK_INTERVAL
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.report import Report, ScopeReport, build_report
from mailprobe.agent.runtime import Agent
from mailprobe.agent.windows import month_bounds, month_of
from tests.helpers.agents import anything, run_for, sample, start, stop
from tests.helpers.clock import FakeClock
from tests.helpers.configs import config_data, write_config

TZ = "Europe/Berlin"
START = 30 * 60  # the agent starts this long before midnight (on the tick grid: 23:59:55 is one)
HOLD_AT = 8 * 60 + 30  # before midnight: deliveries held from 23:51:30
SMTP_DOWN_AT = 6 * 60 + 30  # before midnight: SMTP refused from 23:53:30 ...
SMTP_BACK_AT = 4 * 60 + 30  # after midnight: ... to 00:04:30
END = 10 * 60  # after midnight
DELAY_MAXIMUM = 7 * 60  # the 23:52 probe passes it at 23:59, the 23:53 one at 00:00:00


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def gauge(agent: Agent, kind: str, route: str, check: str) -> float | None:
    return sample(agent, f"mailprobe_contract_month_{kind}_seconds", route=route, check=check)


def report_now(agent: Agent, state: Path) -> Report:
    """The report of the month the agent counts now, as of its last export."""
    at = agent.books.exported.at
    config = agent.config
    with Ledger.open_readonly(state / LEDGER_FILE) as ledger:
        return build_report(ledger, config.sla, month_of(at, TZ), windows=config.maintenance,
                            routes=["a2b"], now=at)  # fmt: skip


def assert_gauges_are_the_report(agent: Agent, report: Report) -> None:
    """Every contract-month series of the agent equals the report's figure for it."""
    scopes: dict[str, ScopeReport] = {s.route: s for s in report.scopes}
    account, route = scopes["all"].figures, scopes["a2b"].figures
    expected = {
        ("observed", "all", "any"): account.observed_seconds,
        ("down", "all", "any"): account.down_seconds,
        ("maintenance", "all", "any"): account.maintenance_seconds,
        ("observed", "a2b", "connectivity"): route.observed_seconds,
        ("down", "a2b", "connectivity"): route.down_seconds,
        ("maintenance", "a2b", "connectivity"): route.maintenance_seconds,
        ("down", "a2b", "send"): scopes["a2b"].send_down_seconds,
        ("down", "a2b", "receive"): scopes["a2b"].receive_down_seconds,
    }
    exported = {key: gauge(agent, *key) for key in expected}
    assert exported == {k: pytest.approx(v, abs=1e-6) for k, v in expected.items()}
    over = sample(agent, "mailprobe_contract_month_probes_over_max", route="a2b")
    assert over == route.delivery.over_max
    labels = {"timezone": TZ}
    assert sample(agent, "mailprobe_contract_month_start_timestamp_seconds", **labels) == report.start
    assert sample(agent, "mailprobe_contract_month_end_timestamp_seconds", **labels) == report.end


@pytest.mark.parametrize(
    ("month", "utc_hour"),
    [("2026-10", 23), ("2027-03", 22)],
    ids=["winter-time-23h-utc", "summer-time-22h-utc"],
)
async def test_contract_month_gauges_equal_the_report_across_a_berlin_month_end(
    mail: EmbeddedMailService, tmp_path: Path, month: str, utc_hour: int
) -> None:
    """Before midnight the gauges are the old month's report, after it the new month's, down,
    maintenance and probes over the maximum split at local midnight (22:00 or 23:00 UTC)."""
    midnight = month_bounds(month, TZ)[1]
    assert datetime.fromtimestamp(midnight, UTC).hour == utc_hour
    state = tmp_path / "state"
    clock = FakeClock(start=midnight - START)
    window = {"name": "agreed", "start": iso(midnight - 120), "end": iso(midnight + 120)}
    data = config_data(mail, state, maintenance=[window],
                       sla={"timezone": TZ, "delay_maximum": f"{DELAY_MAXIMUM}s"})  # fmt: skip
    agent = Agent(write_config(data, tmp_path / "c.yaml"), clock=clock, rng=random.Random(5),
                  serve_http=False)  # fmt: skip
    task = await start(agent)
    try:
        await run_for(clock, agent, START - HOLD_AT)
        mail.delay = 3600.0  # real seconds: held past the end of the test
        await run_for(clock, agent, HOLD_AT - SMTP_DOWN_AT, leave=anything)
        await mail.set_outage("smtp", down=True)
        await run_for(clock, agent, SMTP_DOWN_AT - int(TICK_INTERVAL), leave=anything)
        assert clock.now == midnight - TICK_INTERVAL == agent.books.exported.at
        before = report_now(agent, state)
        assert before.month == month
        assert_gauges_are_the_report(agent, before)
        # The old month holds the 23:54 send outage and the receive outage of the held probes,
        # outside and inside the window, and the probe over the maximum at 23:59.
        assert gauge(agent, "down", "a2b", "send")
        assert gauge(agent, "down", "a2b", "receive")
        assert gauge(agent, "maintenance", "all", "any")
        assert sample(agent, "mailprobe_contract_month_probes_over_max", route="a2b") == 1

        await run_for(clock, agent, 2 * int(TICK_INTERVAL), leave=anything)
        assert agent.books.exported.at == midnight + TICK_INTERVAL
        after = report_now(agent, state)
        assert after.month != month
        # The UTC month has not turned: the gauges followed the contract's midnight.
        assert month_of(midnight + TICK_INTERVAL, "UTC") == month
        assert_gauges_are_the_report(agent, after)
        assert gauge(agent, "observed", "all", "any") == TICK_INTERVAL
        assert gauge(agent, "down", "all", "any") == 0.0  # inside the window until 00:02
        assert gauge(agent, "maintenance", "all", "any") == TICK_INTERVAL
        assert sample(agent, "mailprobe_contract_month_probes_over_max", route="a2b") == 1

        await run_for(clock, agent, SMTP_BACK_AT - int(TICK_INTERVAL), leave=anything)
        await mail.set_outage("smtp", down=False)
        mail.delay = 0.0
        await run_for(clock, agent, END - SMTP_BACK_AT, leave=anything)
        assert agent.books.exported.at == midnight + END
        end = report_now(agent, state)
        assert end.month == after.month
        assert_gauges_are_the_report(agent, end)
        # The outage ended after midnight: the new month holds its part after the window.
        assert sample(agent, "mailprobe_check_up", route="a2b", check="send") == 1.0
        assert gauge(agent, "down", "a2b", "send")
        assert gauge(agent, "maintenance", "a2b", "connectivity") == 120.0
    finally:
        await stop(agent, task)
