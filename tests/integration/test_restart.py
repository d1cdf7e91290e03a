"""`mailprobe run` SIGKILLed and restarted against the real Postfix + Dovecot.

Postfix holds every probe carrying the hold header (header_checks HOLD) until the test releases
it, so probes are truly in flight when the agent dies: accepted, queued, not delivered.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.books import TICK_INTERVAL
from mailprobe.agent.checks import Check
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.windows import intersect, total
from tests.helpers.agents import AgentProcess, free_port, metric, read, scrape
from tests.helpers.configs import SECRET, account
from tests.helpers.waits import wait_until
from tests.mailstack import MailStack

pytestmark = pytest.mark.integration

SENDER, RECEIVER = "bob@probe.test", "alice@probe.test"


def write(stack: MailStack, state: Path, port: int, path: Path, **agent: Any) -> Path:
    """A config for route b2a (bob -> alice) over STARTTLS on the stack, state in `state`."""
    common = {"host": stack.host, "ca_file": stack.ca_file, "smtp_port": stack.submission_port,
              "imap_port": stack.imap_port}  # fmt: skip
    accounts = {"alice": account(RECEIVER, stack.users[RECEIVER], **common),
                "bob": account(SENDER, stack.users[SENDER], **common)}  # fmt: skip
    for acc in accounts.values():
        for side in ("smtp", "imap"):
            acc[side]["ca_file"] = str(acc[side]["ca_file"])
    data = {
        "agent": {"listen": f"127.0.0.1:{port}", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(state), "log_level": "debug", **agent},
        "accounts": accounts,
        "routes": [{"name": "b2a", "from": "bob", "to": "alice", "interval": "1s",
                    "jitter": "0s"}],
        "sla": {"confirm_retry": "1s", "confirm_within": "10s"},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def healthy(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await reader.read()
    writer.close()
    body = data.split(b"\r\n\r\n", 1)[-1]
    return bool(body) and json.loads(body).get("status") == "ok"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MP_TEST_SECRET", SECRET)


async def test_held_probes_survive_sigkill_and_count_once_with_their_true_delay(
    mailstack: MailStack, tmp_path: Path
) -> None:
    """Kill the agent with probes on hold in Postfix, restart it, release them: each probe is
    one ledger row, ok, its delay from its stamped send time to the new agent seeing it."""
    state, port = tmp_path / "state", free_port()
    held_cfg = write(mailstack, state, port, tmp_path / "held.yaml",
                     extra_headers={mailstack.hold_header: "yes"})  # fmt: skip
    plain_cfg = write(mailstack, state, port, tmp_path / "plain.yaml")
    first = AgentProcess(held_cfg, tmp_path / "agent.log")
    second = AgentProcess(plain_cfg, tmp_path / "agent.log")
    assert mailstack.held_queue_ids() == []
    try:
        await first.start()
        await wait_until(lambda: len(read(state, Ledger.runs) or []) == 1, 20, "a heartbeat")
        await wait_until(lambda: len(read(state, Ledger.in_flight) or []) >= 3, 20, "3 held")
        assert await first.signal(signal.SIGKILL) == -signal.SIGKILL
        held = {p.probe_id: p for p in read(state, Ledger.in_flight)}
        queue = mailstack.held_queue_ids()
        # A probe accepted in the instant of the kill may be queued without its ledger row.
        assert len(queue) >= len(held) >= 3
        await second.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not await healthy(port):
            assert loop.time() < deadline, "second agent never became healthy"
            await asyncio.sleep(0.05)
        released = time.time()
        for queue_id in queue:
            mailstack.release(queue_id)
        done = time.time()

        def all_arrived() -> bool:
            rows = read(state, lambda ledger: [ledger.probe(i) for i in held])
            return rows is not None and all(r.status in {"ok", "late"} for r in rows)

        await wait_until(all_arrived, 30, "every held probe matched")
        text = await scrape(port)
        assert await second.signal(signal.SIGTERM) == 0
    finally:
        await first.ensure_gone()
        await second.ensure_gone()
        for queue_id in mailstack.held_queue_ids():
            mailstack.release(queue_id)
    rows = read(state, lambda ledger: [ledger.probe(i) for i in held])
    transitions = read(state, lambda ledger: ledger.transitions(base_only=False))
    for row in rows:
        assert row.status == "ok", row
        assert row.delay_seconds == row.arrived_at - row.sent_at
        # Released at `released`..`done`; seen by the new agent's watcher within a second. The
        # arrival is the middle of its bracket: before the release by no more than its bound.
        bound = row.arrival_error_seconds or 0.0
        assert released - row.sent_at - bound <= row.delay_seconds <= done - row.sent_at + 1.0, row
    assert transitions == []
    assert metric(text, "mailprobe_probes_received_total", route="b2a") >= len(held)
    assert metric(text, "mailprobe_down_seconds_total", route="all", check="any") == 0.0
    assert metric(text, "mailprobe_probes_unmatched_total") <= len(queue) - len(held)


async def test_smtp_outage_spanning_a_sigkill_is_one_down_period_without_the_gap(
    mailstack: MailStack, tmp_path: Path
) -> None:
    """Postfix stopped before the kill and started after the restart: one send down period from
    the first refused probe to the first accepted one; the seconds no agent ran are not down."""
    state, port = tmp_path / "state", free_port()
    cfg = write(mailstack, state, port, tmp_path / "c.yaml")
    first = AgentProcess(cfg, tmp_path / "agent.log")
    second = AgentProcess(cfg, tmp_path / "agent.log")

    def send_transitions() -> list[tuple[str, float]]:
        trs = read(state, lambda ledger: ledger.transitions()) or []
        return [(t.state, t.at) for t in trs if t.check is Check.SEND]

    try:
        await first.start()
        await wait_until(lambda: len(read(state, Ledger.runs) or []) == 1, 20, "a heartbeat")
        mailstack.stop_postfix()
        await wait_until(lambda: [s for s, _ in send_transitions()] == ["down"], 20, "down")
        # A heartbeat after the failure, so part of the outage is observed before the kill.
        down = send_transitions()[0][1]
        await wait_until(
            lambda: (read(state, Ledger.runs) or [(0.0, 0.0)])[-1][1] > down, 20, "a heartbeat"
        )
        assert await first.signal(signal.SIGKILL) == -signal.SIGKILL
        await asyncio.sleep(2.0)  # no agent running: unobserved, not down
        await second.start()
        await wait_until(lambda: len(read(state, Ledger.runs) or []) == 2, 20, "the second run")
        mailstack.start_postfix()
        await wait_until(lambda: len(send_transitions()) == 2, 20, "up again")
        runs = read(state, Ledger.runs)
        [(_, down_at), (_, up_at)] = send_transitions()
        expected = total(intersect([(down_at, up_at)], [runs[0], (runs[1][0], up_at)]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * TICK_INTERVAL
        while (value := metric(await scrape(port), "mailprobe_down_seconds_total", route="b2a",
                               check="send")) != pytest.approx(expected, abs=1e-6):  # fmt: skip
            assert loop.time() < deadline, (value, expected)
            await asyncio.sleep(0.2)
        assert await second.signal(signal.SIGTERM) == 0
    finally:
        await first.ensure_gone()
        await second.ensure_gone()
        mailstack.start_postfix()
    probes = read(state, lambda ledger: ledger.probes(0, 1e10))
    failed = [p for p in probes if p.status == "failed"]
    assert down_at == failed[0].sent_at
    # Refused at connect; one probe may have been in its session when Postfix stopped.
    assert all(p.phase is not None and p.phase.submission for p in failed), failed
    assert sum(p.phase == "smtp_connect" for p in failed) >= len(failed) - 1
    assert up_at == min(p.sent_at for p in probes if p.sent_at > down_at and p.accepted_at)
    gap = runs[1][0] - runs[0][1]
    assert gap >= 2.0
    assert expected == pytest.approx(up_at - down_at - gap, abs=1e-6)
    assert [s for s, _ in send_transitions()] == ["down", "up"]
