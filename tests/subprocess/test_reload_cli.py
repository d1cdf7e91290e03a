"""`mailprobe run` reloads its config on SIGHUP (issue 14 item 4): the real CLI in a subprocess,
on the embedded mail service. A route added is probed, a broken file and a change that needs a
restart leave the running config and say why on stderr; SIGTERM still stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers import readme
from tests.helpers.agents import AgentProcess, free_port, scrape
from tests.helpers.configs import config_data, write_config
from tests.helpers.waits import wait_until


async def metrics(port: int) -> str:
    try:
        return await scrape(port)
    except OSError:
        return ""


async def wait_for_metric(port: int, needle: str, what: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while needle not in await metrics(port):
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_sighup_reloads_the_config_file(mail: EmbeddedMailService, tmp_path: Path) -> None:
    """Add a route, then break the file, then change the listen address: one reload applied, two
    refused with their reasons, and the agent stops cleanly after."""
    state, port, path = tmp_path / "state", free_port(), tmp_path / "mailprobe.yaml"
    data = config_data(mail, state, interval="1s")
    data["agent"]["listen"] = f"127.0.0.1:{port}"
    data["agent"]["log_level"] = "info"
    write_config(data, path)
    agent = AgentProcess(path, tmp_path / "agent.log", "--vantage", "hq")
    try:
        await agent.start()
        await wait_for_metric(port, 'mailprobe_probes_received_total{route="a2b"} 1', "a2b")
        assert agent.proc is not None
        data["routes"].append({"name": "b2a", "from": "alice", "to": "bob", "interval": "1s"})
        write_config(data, path)
        agent.proc.send_signal(signal.SIGHUP)
        await wait_for_metric(port, 'mailprobe_probes_received_total{route="b2a"} 1', "b2a")
        text = await metrics(port)
        assert "mailprobe_config_last_reload_successful 1.0" in text
        # The command line's --vantage still holds after the reload.
        assert 'mailprobe_vantage_info{region="",site="",vantage="hq"} 1.0' in text
        # README's curl reloads too, and says what changed (nothing, here).
        (curl,) = [c for c in readme.commands("Reloading the config") if c[0] == "curl"]
        curl = [w.replace("127.0.0.1:9478", f"127.0.0.1:{port}") for w in curl]
        done = await asyncio.create_subprocess_exec(*curl, stdout=asyncio.subprocess.PIPE)
        out, _ = await done.communicate()
        assert done.returncode == 0
        assert out.decode().strip().endswith(": no route or account changed")
        path.write_text("agent: [")
        agent.proc.send_signal(signal.SIGHUP)
        await wait_for_metric(port, "mailprobe_config_last_reload_successful 0.0", "a failed reload")
        data["agent"]["listen"] = f"127.0.0.1:{free_port()}"
        write_config(data, path)
        agent.proc.send_signal(signal.SIGHUP)
        log = tmp_path / "agent.log"
        await wait_until(lambda: "a restart is needed" in log.read_text(), 15, "the refusal")
        assert 'mailprobe_probes_received_total{route="b2a"}' in await metrics(port)
        assert await agent.signal(signal.SIGTERM) == 0
    finally:
        await agent.ensure_gone()
    lines = (tmp_path / "agent.log").read_text().splitlines()
    assert any("config reloaded from" in line and "routes added: b2a" in line for line in lines)
    failed = [line for line in lines if "config reload failed, the running config stays" in line]
    assert len(failed) == 2, failed
    assert "not valid YAML" in failed[0]
    assert "agent.listen: changed" in failed[1]
    assert "Traceback" not in "\n".join(lines)
