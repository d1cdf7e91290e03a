"""A browser-mode webmail check run by the agent: headless Chromium against the test web server."""

from __future__ import annotations

import os
from pathlib import Path

from mailprobe.agent.config import parse_config
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.runtime import Agent
from tests.helpers.agents import start, stop
from tests.helpers.configs import config_data
from tests.helpers.webserver import WebServer


async def test_a_browser_check_is_run_by_the_agent_and_its_failure_screenshot_kept(
    mail: EmbeddedMailService, webserver: WebServer, tmp_path: Path, chromium: str
) -> None:
    """Mode browser in the agent: the inbox after a login is timed in headless Chromium; a
    failed load is recorded with its reason and leaves the screenshot in state_dir."""
    data = config_data(
        mail,
        tmp_path,
        sla={"confirm_retry": "0.5s", "confirm_within": "20s", "webmail": {"limit": "2s"}},
    )
    data["webmail"] = [{
        "name": "inbox", "url": webserver.url("/login"), "mode": "browser", "interval": "1h",
        "timeout": "5s", "limit": "2s", "ca_file": str(webserver.ca_file), "ready_selector": "#messages.loaded",
        "chromium": chromium,
        "login": {"username": "alice@webmail.test", "password_env": "MP_WM_PW",
                  "username_selector": "#username", "password_selector": "#password",
                  "submit_selector": "#submit"},
    }]  # fmt: skip
    os.environ["MP_WM_PW"] = "alice-webmail-secret"
    agent = Agent(parse_config(data))
    task = await start(agent)
    try:
        opened = await agent.load_webmail("inbox")
        assert opened is not None
        assert opened.ok, opened
        assert opened.mode == "browser"
        assert webserver.logins >= 1
        os.environ["MP_WM_PW"] = "wrong"
        failed = await agent.load_webmail("inbox")
        assert failed is not None
        assert not failed.ok
        assert failed.reason in ("login", "timeout")
    finally:
        await stop(agent, task)
    assert (tmp_path / "webmail" / "inbox-last-failure.png").is_file()
    with Ledger.open_readonly(tmp_path / "ledger.sqlite3") as ledger:
        samples = ledger.webmail(0, float("inf"))
    assert [s.ok for s in samples if s.mode == "browser"][-2:] == [True, False]
