"""Anti-virus tests through the real stack with ClamAV: refused, stripped, replaced, intact.

The stack's submission listeners scan with clamd (a local signature for the EICAR file): the
milter refuses infected mail at SMTP, or a content filter takes the attachment out or replaces
it, or nothing scans. The agent records each outcome from what the provider did; its clean
follow-up probe arrives as any probe; the report judges the anti-virus clause.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from mailprobe.agent.antivirus_test import AntivirusTest, Outcome
from mailprobe.agent.checks import Check
from mailprobe.agent.clauses import Verdict
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Status
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.report import build_report
from mailprobe.agent.runtime import Agent
from mailprobe.agent.sla import RemedyKind
from mailprobe.agent.windows import month_of
from tests.helpers.waits import wait_until
from tests.integration.test_roundtrip import stack_config
from tests.mailstack import MailStack
from tests.mailstack.antivirus import missing

pytestmark = pytest.mark.integration


@pytest.fixture
def scanning(mailstack: MailStack) -> Iterator[MailStack]:
    """The stack with ClamAV available; scanning is switched off again after the test."""
    problem = missing()
    if problem is not None:
        pytest.fail(problem)  # the installer brings ClamAV: its absence is a broken machine
    yield mailstack
    mailstack.antivirus("off")


@pytest.fixture
async def agent(scanning: MailStack) -> AsyncIterator[Agent]:
    """An agent whose route b2a sends anti-virus tests (scheduled a day apart: tests trigger)."""
    config = stack_config(scanning, antivirus={"every": "1d", "deadline": "30s"})
    running = Agent(config, serve_http=False)
    task = asyncio.ensure_future(running.run())
    assert await running.watchers.wait_up(["alice"], 15)
    yield running
    running.stop()
    await asyncio.wait_for(task, 15)


async def _tested(agent: Agent) -> AntivirusTest:
    """One test virus and its follow-up; the test's final record from the ledger."""
    route = agent.config.routes[0]
    sent = await agent.antivirus.test(route)
    await wait_until(lambda: sent.probe_id not in agent.antivirus.pending, 30, "an outcome")
    await wait_until(lambda: agent.inflight == 0, 30, "the follow-up to arrive")
    path = agent.config.agent.state_dir / "ledger.sqlite3"
    with Ledger.open_readonly(path) as ledger:
        (test,) = [t for t in ledger.antivirus() if t.probe_id == sent.probe_id]
        assert test.follow_up is not None
        follow = ledger.probe(test.follow_up)
    assert follow is not None
    assert follow.status is Status.OK  # the clean probe after it is an ordinary, counted probe
    return test


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [("reject", Outcome.REFUSED), ("strip", Outcome.STRIPPED), ("replace", Outcome.REPLACED),
     ("off", Outcome.INTACT), ("quarantine", Outcome.QUARANTINED)],
)  # fmt: skip
async def test_each_scanning_outcome_is_recorded(
    scanning: MailStack, agent: Agent, mode: str, outcome: Outcome
) -> None:
    """What ClamAV (or nothing) did to the test virus is the outcome the agent records; one
    filed into Junk (ClamAV's verdict, the Sieve rule) is found there by the junk watch and
    removed."""
    await asyncio.to_thread(scanning.antivirus, mode)
    test = await _tested(agent)
    assert test.outcome is outcome, test
    if outcome is Outcome.QUARANTINED:
        needle = test.probe_id.encode()
        assert not scanning.delivered("alice@probe.test", needle, folder=scanning.junk_folder)
        assert not scanning.delivered("alice@probe.test", needle)
    if outcome is Outcome.REFUSED:
        assert test.reply_code is not None
        assert test.reply_code >= 500
    assert agent.books.acc.is_up("b2a", Check.SEND)  # a refused test virus is no send failure
    counted = agent.registry.get_sample_value(
        "mailprobe_antivirus_tests_total", {"route": "b2a", "outcome": str(outcome)}
    )
    assert counted == 1.0


async def test_report_shows_the_anti_virus_clause(scanning: MailStack, agent: Agent) -> None:
    """A test virus delivered intact breaches anti_virus; the fee waived is owed for it; the
    follow-ups' delay is measured against the route's other probes."""
    baseline = await round_trip(agent, agent.config.routes[0], timeout=20)
    assert baseline.status is Status.OK
    await asyncio.to_thread(scanning.antivirus, "reject")
    assert (await _tested(agent)).outcome is Outcome.REFUSED
    await asyncio.to_thread(scanning.antivirus, "off")
    assert (await _tested(agent)).outcome is Outcome.INTACT
    now = agent.clock.time()
    with Ledger.open_readonly(agent.config.agent.state_dir / "ledger.sqlite3") as ledger:
        report = build_report(ledger, agent.config.sla, month_of(now, "UTC"), routes=["b2a"],
                              now=now, antivirus=["b2a"])  # fmt: skip
    for scope in report.scopes:
        clause = next(c for c in scope.clauses if c.clause == "anti_virus")
        assert clause.verdict is Verdict.BREACHED
        assert clause.measured == 1.0
        assert "1 refused" in clause.detail
        assert "1 intact" in clause.detail
    owed = {o.kind: o.clauses for o in report.remedy.owed}
    assert "anti_virus" in owed[RemedyKind.FEE_WAIVED]
    delay = next(c for c in report.scopes[0].clauses if c.clause == "anti_virus_delay")
    assert delay.measured is not None  # the follow-ups' delay against the route's median
