"""`mailprobe run` killed with SIGKILL and started again, on the embedded mail service (real time).

The agent runs as a subprocess, so the kill is real: nothing of its shutdown runs. What it had
written to the ledger is all the next agent gets.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from mailprobe.agent.books import TICK_INTERVAL
from mailprobe.agent.checks import Check
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.windows import intersect, total
from tests.helpers.agents import AgentProcess, free_port, metric, read, scrape
from tests.helpers.configs import config_data, write_config
from tests.helpers.waits import wait_until

HOLD = 6.0  # seconds the service holds each delivery while the first agent runs



async def test_sigkill_with_probes_in_flight_counts_each_once_with_its_true_delay(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """Probes accepted and held when the agent is killed are matched by the next agent when
    they arrive: each one row, status ok, delay = arrival - the send time stamped in it."""
    state, port = tmp_path / "state", free_port()
    data = config_data(mail, state, interval="1s")
    data["agent"]["listen"] = f"127.0.0.1:{port}"
    write_config(data, tmp_path / "c.yaml")
    first = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log")
    second = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log")
    mail.delay = HOLD
    try:
        await first.start()
        # After a heartbeat (a kill before the first one leaves an empty run) and with mail held.
        await wait_until(lambda: len(read(state, Ledger.runs) or []) == 1, 20, "a heartbeat")
        await wait_until(lambda: len(read(state, Ledger.in_flight) or []) >= 3, 20, "3 held")
        assert await first.signal(signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.time()
        mail.delay = 0.0
        held = {p.probe_id: p for p in read(state, Ledger.in_flight)}
        await second.start()

        def all_arrived() -> bool:
            rows = read(state, lambda ledger: [ledger.probe(i) for i in held])
            return all(r is not None and r.status == "ok" for r in rows)

        await wait_until(all_arrived, 30, "every held probe matched")
        text = await scrape(port)
        assert await second.signal(signal.SIGTERM) == 0
    finally:
        await first.ensure_gone()
        await second.ensure_gone()
    rows, runs, transitions = read(
        state,
        lambda ledger: (
            [ledger.probe(i) for i in held],
            ledger.runs(),
            ledger.transitions(base_only=False),
        ),
    )
    for row in rows:
        assert row.delay_seconds == row.arrived_at - row.sent_at
        # Seen live (to the poll) or found at the new agent's login (INTERNALDATE, whole seconds).
        assert HOLD - 1.0 <= row.delay_seconds <= HOLD + 2.0, row
    assert len(runs) == 2
    assert killed_at - TICK_INTERVAL - 1.0 <= runs[0][1] <= killed_at  # the last heartbeat
    assert transitions == []
    assert metric(text, "mailprobe_down_seconds_total", route="all", check="any") == 0.0
    assert metric(text, "mailprobe_probes_received_total", route="a2b") >= len(held)


async def test_outage_across_a_sigkill_is_one_down_period_without_the_gap(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """SMTP down before the kill and after the restart: one down period from the first failure
    (first agent) to the first accepted probe (second agent); the time no agent ran is not down."""
    state, port = tmp_path / "state", free_port()
    data = config_data(mail, state, interval="2s",
                       sla={"confirm_retry": "1s", "confirm_within": "10s"})  # fmt: skip
    data["agent"]["listen"] = f"127.0.0.1:{port}"
    write_config(data, tmp_path / "c.yaml")
    first = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log")
    second = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log")

    def send_transitions() -> list[tuple[str, float]]:
        trs = read(state, lambda ledger: ledger.transitions()) or []
        return [(t.state, t.at) for t in trs if t.check is Check.SEND]

    try:
        await first.start()
        await wait_until(lambda: len(read(state, lambda lg: lg.probes(0, 1e10)) or []) >= 1, 20,
                         "a first probe")  # fmt: skip
        await mail.set_outage("smtp", down=True)
        await wait_until(lambda: [s for s, _ in send_transitions()] == ["down"], 20, "down")
        # A heartbeat after the failure, so part of the outage is observed before the kill.
        down = send_transitions()[0][1]
        await wait_until(
            lambda: (read(state, Ledger.runs) or [(0.0, 0.0)])[-1][1] > down, 20, "a heartbeat"
        )
        await first.signal(signal.SIGKILL)
        await asyncio.sleep(2.0)  # no agent running: unobserved, not down
        await second.start()
        # The second agent's first heartbeat: it has been probing into the outage for a while.
        await wait_until(lambda: len(read(state, Ledger.runs) or []) == 2, 20, "the second run")
        await mail.set_outage("smtp", down=False)
        await wait_until(lambda: len(send_transitions()) == 2, 20, "up again")
        runs = read(state, lambda lg: lg.runs())
        [(_, down_at), (_, up_at)] = send_transitions()
        # The second run is still open: it observes at least until up_at.
        expected = total(intersect([(down_at, up_at)], [runs[0], (runs[1][0], up_at)]))

        async def exported() -> float:
            return metric(await scrape(port), "mailprobe_down_seconds_total", route="a2b",
                          check="send")  # fmt: skip

        deadline = time.monotonic() + 3 * TICK_INTERVAL
        while (value := await exported()) != pytest.approx(expected, abs=1e-6):
            assert time.monotonic() < deadline, (value, expected)
            await asyncio.sleep(0.2)
        assert await second.signal(signal.SIGTERM) == 0
    finally:
        await first.ensure_gone()
        await second.ensure_gone()
    assert [s for s, _ in send_transitions()] == ["down", "up"]
    failed = read(state, lambda lg: [p for p in lg.probes(0, 1e10) if p.status == "failed"])
    assert down_at == failed[0].sent_at
    assert runs[0][1] < up_at
    assert runs[1][0] > down_at
    gap = runs[1][0] - runs[0][1]
    assert gap >= 2.0
    assert expected == pytest.approx(up_at - down_at - gap, abs=1e-6)
