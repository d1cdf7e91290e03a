"""A real Prometheus scrapes a real `mailprobe run --web.config.file` over TLS with basic auth.

One agent (TLS with a throwaway CA's certificate, one bcrypt user), one Prometheus with three
jobs on it: the right credentials over HTTPS, a wrong password over HTTPS, and plain HTTP. Only
the first may get samples. Needs the prometheus binary (Debian: prometheus); no root.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import trustme
import yaml

from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers.agents import AgentProcess, free_port
from tests.helpers.configs import config_data, write_config
from tests.subprocess.test_prometheus_e2e import tool

PASSWORD = "prometheus-scrape-pw"



def prometheus_config(tmp: Path, target: str) -> dict[str, Any]:
    tls = {"ca_file": str(tmp / "ca.pem")}

    def job(name: str, scheme: str, password: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"job_name": name, "scheme": scheme,
                               "static_configs": [{"targets": [target]}]}  # fmt: skip
        if scheme == "https":
            out["tls_config"] = tls
        if password is not None:
            (tmp / f"{name}.pw").write_text(password)
            out["basic_auth"] = {"username": "prometheus", "password_file": str(tmp / f"{name}.pw")}
        return out

    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [job("tls_auth", "https", PASSWORD),
                           job("wrong_password", "https", "not-it"),
                           job("plain_http", "http", PASSWORD)],
    }  # fmt: skip


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def targets(port: int) -> dict[str, dict[str, Any]]:
    """Active targets by job, once Prometheus answers (empty before)."""
    try:
        body = await asyncio.to_thread(api, port, "/api/v1/targets")
    except OSError:
        return {}
    return {t["labels"]["job"]: t for t in body["data"]["activeTargets"]}


async def test_prometheus_scrapes_over_tls_with_basic_auth_and_nothing_else_gets_in(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """The job with the CA and the right password scrapes the agent's series; a wrong password
    gets 401 and plain HTTP gets no answer: both targets are down and hold no mailprobe data."""
    prometheus = tool("prometheus")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "agent.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "agent.key"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    (tmp_path / "web.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "agent.crt", "key_file": "agent.key"},
        "basic_auth_users": {"prometheus": hashed},
    }))  # fmt: skip

    agent_port, prom_port = free_port(), free_port()
    data = config_data(mail, tmp_path / "state", interval="1s")
    data["agent"]["listen"] = f"127.0.0.1:{agent_port}"
    write_config(data, tmp_path / "c.yaml")
    agent = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log",
                         "--web.config.file", str(tmp_path / "web.yml"))  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(tmp_path, f"127.0.0.1:{agent_port}")))
    prom: asyncio.subprocess.Process | None = None
    try:
        await agent.start()
        with (tmp_path / "prometheus.log").open("wb") as log:
            prom = await asyncio.create_subprocess_exec(
                prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", stdout=log, stderr=log,
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            seen = await targets(prom_port)
            scraped = [t for t in seen.values() if t.get("lastScrape", "").startswith("20")]
            if len(scraped) == 3 and seen["tls_auth"]["health"] == "up":
                break
            assert loop.time() < deadline, f"targets: {seen}\n{(tmp_path / 'agent.log').read_text()[-2000:]}"
            await asyncio.sleep(0.2)
        assert seen["wrong_password"]["health"] == "down"
        assert "401 Unauthorized" in seen["wrong_password"]["lastError"]
        assert seen["plain_http"]["health"] == "down"
        assert seen["plain_http"]["lastError"]

        body = await asyncio.to_thread(api, prom_port, "/api/v1/query",
                                       query="count by (job) (mailprobe_build_info)")  # fmt: skip
        assert [r["metric"]["job"] for r in body["data"]["result"]] == ["tls_auth"]
        assert agent.proc is not None
        assert await agent.signal(signal.SIGTERM) == 0
    finally:
        if prom is not None and prom.returncode is None:
            prom.terminate()
            await asyncio.wait_for(prom.wait(), 15)
        await agent.ensure_gone()
    assert f"serving metrics on https://127.0.0.1:{agent_port}/metrics" in (
        tmp_path / "agent.log"
    ).read_text()
