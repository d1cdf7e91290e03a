"""The agent's books on the embedded mail service: ledger rows, transitions and accounting counters.

Virtual time (FakeClock) drives the schedule, ticks and deadlines; SMTP and IMAP are real servers
on loopback, and every probe really travels. Expected figures are computed from the probes' own
timestamps in the ledger, so they are exact to the float.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from mailprobe.agent.books import EXPORTED_FILE, LEDGER_FILE
from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Status
from mailprobe.agent.runtime import Agent
from tests.helpers.agents import anything, run_for, sample, scrape, settled, start, stop
from tests.helpers.clock import FakeClock
from tests.helpers.configs import config_data, write_config
from tests.helpers.outage import assert_retried_and_found_late
from tests.helpers.waits import wait_until


def ledger_of(state: Path) -> Ledger:
    return Ledger.open_readonly(state / LEDGER_FILE)


def seconds(agent: Agent, kind: str, route: str, check: str) -> float | None:
    return sample(agent, f"mailprobe_{kind}_seconds_total", route=route, check=check)


def base(transitions: list[Transition], check: Check) -> list[tuple[str, float]]:
    return [(t.state, t.at) for t in transitions if t.route == "a2b" and t.check is check]


async def test_accounting_series_exist_at_zero_before_the_first_probe(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Every route x check, all/any, each window and each clause target are exported from the start."""
    window = {"name": "nightly", "daily": True, "start": "03:00", "duration": "1h"}
    config = write_config(
        config_data(mail, tmp_path / "state", maintenance=[window]), tmp_path / "c.yaml"
    )
    agent = Agent(config, clock=FakeClock(), serve_http=False)
    for check in ("send", "receive", "connectivity"):
        for kind in ("observed", "down", "maintenance"):
            assert seconds(agent, kind, "a2b", check) == 0.0
        assert sample(agent, "mailprobe_check_up", route="a2b", check=check) == 1.0
    assert seconds(agent, "down", "all", "any") == 0.0
    assert sample(agent, "mailprobe_check_up", route="all", check="any") == 1.0
    assert sample(agent, "mailprobe_probes_over_max_total", route="a2b") == 0.0
    assert sample(agent, "mailprobe_maintenance_active", window="nightly") == 0.0
    targets = {c: sample(agent, "mailprobe_sla_target_seconds", clause=c) / 60
               for c in ("disconnection", "failure", "maintenance")}  # fmt: skip
    assert targets == {"disconnection": 44.0, "failure": 100.0, "maintenance": 100.0}


async def test_round_trips_are_ledger_rows_and_observed_seconds(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Each probe is one ledger row with its real delay; observed seconds follow the ticks exactly."""
    state = tmp_path / "state"
    clock = FakeClock()
    agent = Agent(write_config(config_data(mail, state), tmp_path / "c.yaml"), clock=clock,
                  rng=random.Random(1))  # fmt: skip
    task = await start(agent)
    t0 = clock.now
    try:
        await run_for(clock, agent, 300)
        text = await scrape(agent)
    finally:
        await stop(agent, task)
    with ledger_of(state) as ledger:
        probes = ledger.probes(t0 - 1, clock.now + 1)
        assert ledger.transitions(base_only=False) == []
        assert ledger.runs() == [(t0, t0 + 300)]
    # On the grid: at once (the only route has phase 0), then every minute, 300 s included.
    assert len(probes) == sample(agent, "mailprobe_probes_sent_total", route="a2b") == 6
    for p in probes:
        assert p.status is Status.OK, p
        assert p.accepted_at is not None
        assert p.arrived_at is not None
        assert p.delay_seconds == p.arrived_at - p.sent_at
        assert {"smtp_connect", "smtp_submit", "delivery"} <= set(p.phases)
    for check in ("send", "receive", "connectivity"):
        assert f'mailprobe_observed_seconds_total{{check="{check}",route="a2b"}} 300.0' in text
        assert f'mailprobe_down_seconds_total{{check="{check}",route="a2b"}} 0.0' in text
    assert 'mailprobe_observed_seconds_total{check="any",route="all"} 300.0' in text
    assert 'mailprobe_check_up{check="any",route="all"} 1.0' in text
    floors = json.loads((state / EXPORTED_FILE).read_text())["series"]
    assert floors['mailprobe_observed_seconds_total{check="any",route="all"}'] == 300.0


async def test_smtp_outage_is_confirmed_by_quick_retries_and_counted_to_the_second(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Refused submissions: retried every confirm_retry; down from the first failure's send time
    until the first accepted probe's send time, in the ledger and on /metrics."""
    state = tmp_path / "state"
    clock = FakeClock()
    agent = Agent(write_config(config_data(mail, state), tmp_path / "c.yaml"), clock=clock,
                  rng=random.Random(2), serve_http=False)  # fmt: skip
    task = await start(agent)
    t_start = clock.now
    try:
        await run_for(clock, agent, 150)
        await mail.set_outage("smtp", down=True)
        t_out = clock.now
        await run_for(clock, agent, 120)
        assert sample(agent, "mailprobe_check_up", route="a2b", check="send") == 0.0
        assert sample(agent, "mailprobe_check_up", route="all", check="any") == 0.0
        await mail.set_outage("smtp", down=False)
        t_back = clock.now
        await run_for(clock, agent, 100)
    finally:
        await stop(agent, task)
    with ledger_of(state) as ledger:
        probes = ledger.probes(0, clock.now + 1)
        transitions = ledger.transitions(base_only=False)
    failed = [p.sent_at for p in probes if p.status is Status.FAILED]
    after = [p.sent_at for p in probes if p.sent_at > failed[-1]]
    assert t_out < failed[0] <= t_out + 60
    # confirm_retry apart (a virtual step of slack: a sleep starts when its task first runs)
    assert all(15.0 <= b - a < 16.0 for a, b in itertools.pairwise(failed)), failed
    assert len(failed) >= 5  # 90 s or more of outage at one try per 15 s
    first_ok = after[0]
    assert first_ok - t_back <= 15.0
    # Back on the route's grid once the retry worked: the next whole minute since the start.
    assert 0.0 < after[1] - first_ok <= 60.0
    assert (after[1] - t_start) % 60.0 == 0.0
    assert all(b - a == 60.0 for a, b in itertools.pairwise(after[1:]))
    assert base(transitions, Check.SEND) == [("down", failed[0]), ("up", first_ok)]
    assert base(transitions, Check.RECEIVE) == []
    assert base(transitions, Check.CONNECTIVITY) == [("down", failed[0]), ("up", first_ok)]
    outage = first_ok - failed[0]
    assert seconds(agent, "down", "a2b", "send") == outage
    assert seconds(agent, "down", "a2b", "connectivity") == outage
    assert seconds(agent, "down", "all", "any") == outage
    assert seconds(agent, "down", "a2b", "receive") == 0.0
    assert sample(agent, "mailprobe_check_up", route="a2b", check="send") == 1.0


async def test_accepted_but_undelivered_mail_is_receive_downtime(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Mail accepted and never delivered: receive is down from the first such probe's send time
    until the first probe that arrives; a retry follows each receive deadline that passes."""
    state = tmp_path / "state"
    clock = FakeClock()
    # 70 s does not divide the 300 s receive deadline, so a retry stands out from the schedule.
    data = config_data(mail, state, interval="70s")
    agent = Agent(write_config(data, tmp_path / "c.yaml"), clock=clock, rng=random.Random(3),
                  serve_http=False)  # fmt: skip
    task = await start(agent)
    try:
        await run_for(clock, agent, 100)
        mail.delay = 3600.0  # held for an hour of real time: never delivered during the test
        t_hold = clock.now
        await run_for(clock, agent, 250, leave=anything)
        mail.delay = 0.0
        t_back = clock.now
        await run_for(clock, agent, 330, leave=lambda p: p.sent_at <= t_back)
    finally:
        await stop(agent, task)
    with ledger_of(state) as ledger:
        probes = ledger.probes(0, clock.now + 1)
        transitions = ledger.transitions(base_only=False)
    debug = [(p.sent_at - t_hold, p.status, p.delay_seconds) for p in probes], t_back - t_hold
    # Held: accepted while the service held deliveries (the last may be accepted in the step
    # that ended the hold).
    held = [p.sent_at for p in probes if p.arrived_at is None]
    assert t_hold < held[0], debug
    assert held[-1] <= t_back, debug
    first_back = next(p for p in probes if p.sent_at > held[-1])
    assert first_back.status is Status.OK, debug
    assert base(transitions, Check.RECEIVE) == [("down", held[0]), ("up", first_back.sent_at)], (
        debug
    )
    assert base(transitions, Check.SEND) == []
    retry = [p.sent_at - held[0] for p in probes if 300 < p.sent_at - held[0] <= 320]
    assert retry, [p.sent_at - held[0] for p in probes]
    outage = first_back.sent_at - held[0]
    assert seconds(agent, "down", "a2b", "receive") == outage
    assert seconds(agent, "down", "all", "any") == outage
    assert seconds(agent, "down", "a2b", "send") == 0.0


async def test_restart_continues_the_counters_and_matches_a_probe_sent_before_it(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Stop with a probe in flight, stay down 100 s, start a new agent on the same state dir:
    observed seconds continue without the gap, the probe is matched with its true delay, once."""
    state = tmp_path / "state"
    clock = FakeClock()
    config = write_config(config_data(mail, state), tmp_path / "c.yaml")
    first = Agent(config, clock=clock, rng=random.Random(4), serve_http=False)
    task = await start(first)
    t0 = clock.now
    try:
        await run_for(clock, first, 200)
        mail.delay = 3.0  # real seconds: the next probe is still held when the new agent starts
        while first.inflight == 0:
            await run_for(clock, first, 1, leave=anything)
    finally:
        await stop(first, task)
    t_stop = clock.now
    (held,) = first.books.inflight
    sent_first = sample(first, "mailprobe_probes_sent_total", route="a2b")
    assert seconds(first, "observed", "all", "any") == t_stop - t0
    mail.delay = 0.0
    await clock.advance(100)

    second = Agent(config, clock=clock, rng=random.Random(5), serve_http=False)
    task = await start(second)
    try:
        assert seconds(second, "observed", "all", "any") == t_stop - t0
        assert held.probe_id in second.books.inflight  # carried over from the ledger
        await wait_until(lambda: settled(second), 10, "the held probe to arrive")
        seen_at = clock.now
        await run_for(clock, second, 100)
    finally:
        await stop(second, task)
    with ledger_of(state) as ledger:
        row = ledger.probe(held.probe_id)
        rows = ledger.probes(0, clock.now + 1)
        runs = ledger.runs()
        transitions = ledger.transitions(base_only=False)
    assert row is not None
    assert (row.status, row.delay_seconds) == (Status.OK, seen_at - held.sent_at)
    assert seen_at - held.sent_at >= 100  # the agent's downtime is part of the probe's delay
    sent_second = sample(second, "mailprobe_probes_sent_total", route="a2b")
    assert sent_first is not None
    assert sent_second is not None
    # The counter continues from the ledger: the second agent counts the first one's probes too.
    assert sent_second > sent_first
    assert len(rows) == sent_second
    assert all(p.status is Status.OK for p in rows)
    assert runs == [(t0, t_stop), (t_stop + 100, clock.now)]
    assert transitions == []
    assert seconds(second, "observed", "all", "any") == (t_stop - t0) + 100
    assert seconds(second, "down", "all", "any") == 0.0


@pytest.mark.parametrize("minutes", [2, 6])
async def test_a_mailbox_refused_for_minutes_is_as_long_receive_down_with_retries_every_confirm_retry(
    mail: EmbeddedMailService, tmp_path: Path, minutes: int
) -> None:
    """IMAP refused while SMTP accepts: receive down from the moment the mailbox went away to the
    first probe sent after it came back (within one confirm_retry of the outage), the route
    probed every confirm_retry meanwhile, the probes sent meanwhile found late at reconnect
    (flagged, never arriving before they were sent); send stays up."""
    state = tmp_path / "state"
    clock = FakeClock()
    agent = Agent(write_config(config_data(mail, state), tmp_path / "c.yaml"), clock=clock,
                  rng=random.Random(6), serve_http=False)  # fmt: skip
    retry = agent.config.sla.confirm_retry
    task = await start(agent)
    try:
        await run_for(clock, agent, 90)
        await mail.set_outage("imap", down=True)
        t_out = clock.now
        await run_for(clock, agent, minutes * 60, leave=anything)
        assert sample(agent, "mailprobe_check_up", route="a2b", check="receive") == 0.0
        await mail.set_outage("imap", down=False)
        t_back = clock.now
        # The watcher retries on its backoff (at most confirm_retry): probes wait till then.
        while not agent.watchers.up("alice"):
            await run_for(clock, agent, 1, leave=anything)
            assert clock.now - t_back <= retry + 2, "the watcher did not come back in time"
        await run_for(clock, agent, 75)
    finally:
        await stop(agent, task)
    with ledger_of(state) as ledger:
        probes = ledger.probes(0, clock.now + 1)
        transitions = ledger.transitions(base_only=False)
        mailbox = ledger.mailbox_events()
    outage = t_back - t_out
    down = seconds(agent, "down", "a2b", "receive")
    assert down is not None
    assert outage <= down <= outage + retry + 1.0, (down, outage)  # + one step of virtual time
    [(went, start_at), (came, end_at)] = base(transitions, Check.RECEIVE)
    assert (went, came) == ("down", "up")
    assert t_out <= start_at <= t_out + 1.0
    assert seconds(agent, "down", "a2b", "send") == 0.0
    assert_retried_and_found_late(probes, t_out, t_back, minutes, retry)
    # The mailbox's record: away from the lost session, back when the new one was ready.
    assert [e.up for e in mailbox if e.at >= t_out][:2] == [False, False]
    back_at = next(e.at for e in mailbox if e.up and e.at >= t_back)
    # The first probe sent once the mailbox was back ends the outage.
    first_after = next(p for p in probes if p.sent_at >= back_at)
    assert end_at == first_after.sent_at
    assert first_after.status is Status.OK
