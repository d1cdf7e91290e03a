"""Mailbox down is receive down, on the real Postfix + Dovecot: the IMAP server cannot be reached
for about 20 s (real time), or for 2 and 6 minutes (virtual time: the agent on a FakeClock, the
mail really travelling), while Postfix keeps accepting and delivering. The report counts that
route's receive downtime from the moment the mailbox went away to the first probe sent after it
came back; send stays up.

Only IMAP goes away: the agent reaches Dovecot's IMAP port through a proxy the test cuts. (Stopping
Dovecot itself would take SMTP AUTH and delivery with it: Postfix authenticates through
Dovecot's SASL socket and delivers over its LMTP.)"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.checks import Check
from mailprobe.agent.config import Config
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.report import build_report
from mailprobe.agent.runtime import Agent
from mailprobe.agent.windows import month_of
from tests.helpers.agents import anything, run_for, start, stop
from tests.helpers.clock import FakeClock
from tests.helpers.configs import account, make_config
from tests.helpers.outage import assert_retried_and_found_late
from tests.helpers.proxy import CuttableProxy
from tests.helpers.waits import wait_until
from tests.mailstack import MailStack

pytestmark = pytest.mark.integration

SENDER, RECEIVER = "bob@probe.test", "alice@probe.test"
INTERVAL, RETRY, OUTAGE = 5.0, 2.0, 20.0


def _config(stack: MailStack, state: Path, imap_port: int, interval: float = INTERVAL) -> Config:
    common = {"host": stack.host, "ca_file": stack.ca_file, "smtp_port": stack.submission_port,
              "imap_port": imap_port}  # fmt: skip
    return make_config(
        {
            "alice": account(RECEIVER, stack.users[RECEIVER], **common),
            "bob": account(SENDER, stack.users[SENDER], **common),
        },
        [{"name": "b2a", "from": "bob", "to": "alice", "interval": f"{interval:g}s",
          "jitter": "0s"}],
        state_dir=state,
    )  # fmt: skip


async def test_imap_away_for_20_s_is_that_long_receive_down_and_send_stays_up(
    mailstack: MailStack, tmp_path: Path
) -> None:
    """Receive down from the lost session until a probe sent after the mailbox came back; the
    probes sent meanwhile are found in the mailbox at reconnect, flagged, and end nothing."""
    async with CuttableProxy(mailstack.host, mailstack.imap_port) as proxy:
        await _outage(mailstack, proxy, tmp_path)


async def _outage(mailstack: MailStack, proxy: CuttableProxy, tmp_path: Path) -> None:
    config = _config(mailstack, tmp_path / "state", proxy.port)
    sla = config.sla.model_copy(update={"confirm_retry": RETRY, "confirm_within": 30.0})
    config = config.model_copy(update={"sla": sla})
    records: list[Probe] = []
    agent = Agent(config, serve_http=False, sinks=[records.append])
    task = asyncio.ensure_future(agent.run())
    try:
        assert await agent.watchers.wait_up(["alice"], 15)
        await asyncio.sleep(2 * INTERVAL)
        lost_at = time.time()
        await proxy.cut()
        await asyncio.sleep(OUTAGE)
        await proxy.restore()
        back_at = time.time()

        def up_again() -> bool:
            return agent.books.acc.is_up("b2a", Check.RECEIVE) and not agent.books.unsettled("b2a")

        await wait_until(up_again, 30, "receive up again")
        await wait_until(lambda: agent.inflight == 0, 30, "every probe seen")
    finally:
        agent.stop()
        await asyncio.wait_for(task, 15)
    with Ledger.open_readonly(config.agent.state_dir / LEDGER_FILE) as ledger:
        report = build_report(ledger, config.sla, month_of(back_at, "UTC"), routes=["b2a"])
        probes = ledger.probes(lost_at - 60, time.time())
    route = next(s for s in report.scopes if s.route == "b2a")
    outage = back_at - lost_at
    assert route.receive_down_seconds is not None
    # From the lost session (at most a moment after lost_at) to a probe sent once the watcher
    # reconnected (it retries every confirm_retry) and saw the mailbox again.
    assert outage - 1.0 <= route.receive_down_seconds <= outage + RETRY + INTERVAL, (
        route.receive_down_seconds, outage,
    )  # fmt: skip
    assert route.send_down_seconds == 0.0
    [receive] = [o for o in report.outages if o.check == "receive"]
    assert lost_at <= receive.start <= lost_at + 1.0
    assert back_at <= receive.end <= back_at + RETRY + INTERVAL
    # While receive was down the route was probed every confirm_retry, not every interval.
    during = sorted(p.sent_at for p in probes if lost_at + 3 < p.sent_at < back_at)
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert gaps, during
    assert max(gaps) <= RETRY + 1.0, gaps
    # Sent while the mailbox was away: found at reconnect, flagged, their arrival the moment the
    # session could see them (never before they were sent), their delay no measurement.
    away = [p for p in probes if lost_at + 0.5 < p.sent_at < back_at - 0.5]
    assert away
    for probe in away:
        assert probe.status in (Status.OK, Status.LATE), probe
        assert probe.found_late, probe
        assert probe.arrived_at is not None
        assert probe.arrived_at >= max(probe.sent_at, back_at - 0.5)
        assert probe.measured_delay is None
    assert all(p.arrived_at >= p.sent_at for p in probes if p.arrived_at is not None)


@pytest.mark.parametrize("minutes", [2, 6])
async def test_imap_away_for_minutes_in_virtual_time_is_that_long_receive_down(
    mailstack: MailStack, tmp_path: Path, minutes: int
) -> None:
    """The agent on a FakeClock (the default confirm_retry, 15 s; probes every minute), Dovecot's
    IMAP cut for 2 or 6 virtual minutes: receive down from the moment the mailbox went away to
    the first probe sent after it came back, within one confirm_retry; the route probed every
    confirm_retry meanwhile; the probes of the outage found late, never arriving before they
    were sent; send up throughout."""
    clock = FakeClock(time.time())
    async with CuttableProxy(mailstack.host, mailstack.imap_port) as proxy:
        config = _config(mailstack, tmp_path / "state", proxy.port, interval=60.0)
        retry = config.sla.confirm_retry
        agent = Agent(config, clock=clock, serve_http=False)
        task = await start(agent)
        try:
            await run_for(clock, agent, 90)
            await proxy.cut()
            t_out = clock.now
            await run_for(clock, agent, minutes * 60, leave=anything)
            assert not agent.books.acc.is_up("b2a", Check.RECEIVE)
            await proxy.restore()
            t_back = clock.now
            while not agent.watchers.up("alice"):
                await run_for(clock, agent, 1, leave=anything)
                # A reconnect attempt talks to the real Dovecot: real time for it to finish.
                await asyncio.sleep(0.2)
                assert clock.now - t_back <= retry + 2, "the watcher did not come back in time"
            await run_for(clock, agent, 75)
        finally:
            await stop(agent, task)
    with Ledger.open_readonly(config.agent.state_dir / LEDGER_FILE) as ledger:
        report = build_report(ledger, config.sla, month_of(clock.now, "UTC"), routes=["b2a"],
                              now=clock.now)  # fmt: skip
        probes = ledger.probes(t_out - 120, clock.now + 1)
    route = next(s for s in report.scopes if s.route == "b2a")
    outage = t_back - t_out
    assert route.receive_down_seconds is not None
    assert outage <= route.receive_down_seconds <= outage + retry + 1.0, (
        route.receive_down_seconds, outage,
    )  # fmt: skip
    assert route.send_down_seconds == 0.0
    [receive] = [o for o in report.outages if o.check == "receive"]
    assert t_out <= receive.start <= t_out + 1.0
    assert_retried_and_found_late(probes, t_out, t_back, minutes, retry)
    first_after = next(p for p in probes if p.sent_at >= t_back and not p.found_late)
    assert receive.end == first_after.sent_at
    assert first_after.status is Status.OK
