"""`mailprobe run` and its signals: a second SIGINT skips the drain; counters survive SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers.agents import AgentProcess, free_port, metric, scrape
from tests.helpers.configs import config_data, write_config
from tests.helpers.waits import wait_until
from tests.hostile.smtp_modes import GreetThenSilent


async def test_a_second_sigint_stops_at_once_while_a_submission_drains(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """The first SIGINT waits (shutdown_grace 30 s) for a submission that hangs; the second ends
    the agent within a second or two, exit 0."""
    async with GreetThenSilent() as silent:
        data = config_data(mail, tmp_path / "state")
        data["agent"].update(listen=f"127.0.0.1:{free_port()}", shutdown_grace="30s")
        data["accounts"]["bob"]["smtp"].update(port=silent.port, security="plain", timeout="60s")
        write_config(data, tmp_path / "c.yaml")
        agent = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log")
        try:
            await agent.start()
            await wait_until(lambda: silent.connections >= 1, 20, "the submission to hang")
            assert agent.proc is not None
            agent.proc.send_signal(signal.SIGINT)
            await asyncio.sleep(1.5)
            assert agent.proc.returncode is None  # draining, as the grace allows
            started = time.monotonic()
            assert await agent.signal(signal.SIGINT) == 0
            assert time.monotonic() - started < 3.0
        finally:
            await agent.ensure_gone()
    log = (tmp_path / "agent.log").read_text()
    assert "stopping: draining 1 submission(s)" in log
    assert "Traceback" not in log


async def test_probe_counters_never_go_back_across_a_sigkill(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """probes_sent/received after kill -9 and a restart start where the killed agent stopped
    (they come from the ledger), and grow from there."""
    port = free_port()
    data = config_data(mail, tmp_path / "state", interval="1s")
    data["agent"]["listen"] = f"127.0.0.1:{port}"
    write_config(data, tmp_path / "c.yaml")
    first = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log")
    second = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log")

    async def counts() -> tuple[float, float]:
        text = await scrape(port)
        return (metric(text, "mailprobe_probes_sent_total", route="a2b"),
                metric(text, "mailprobe_probes_received_total", route="a2b"))  # fmt: skip

    async def at_least(n: float) -> bool:
        try:
            return (await counts())[1] >= n
        except (OSError, AssertionError):
            return False

    async def wait_for(n: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not await at_least(n):
            assert loop.time() < deadline, f"{n} probes received"
            await asyncio.sleep(0.2)

    try:
        await first.start()
        await wait_for(5)
        before = await counts()
        assert await first.signal(signal.SIGKILL) == -signal.SIGKILL
        await second.start()
        await wait_for(1)
        after = await counts()
        assert after[0] >= before[0]
        assert after[1] >= before[1]
        await wait_for(after[1] + 2)
        assert (await counts())[0] > after[0]
        assert await second.signal(signal.SIGTERM) == 0
    finally:
        await first.ensure_gone()
        await second.ensure_gone()
