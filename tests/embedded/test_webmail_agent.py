"""Webmail checks run by the agent against the real test web server (aiohttp over TLS).

The agent loads the page on its interval, records every load in the ledger, confirms a slow or
failed webmail like a mail check (apart from mail connectivity), exports the loads, and the
report judges the webmail clause with its verdict and remedy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mailprobe.agent.checks import Check
from mailprobe.agent.clauses import Verdict
from mailprobe.agent.config import Config, parse_config
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.report import build_report
from mailprobe.agent.runtime import Agent
from mailprobe.agent.sla import RemedyKind
from mailprobe.agent.windows import month_of
from tests.helpers.agents import sample, start, stop
from tests.helpers.configs import config_data
from tests.helpers.waits import wait_until
from tests.helpers.webserver import WebServer


def _config(
    mail: EmbeddedMailService, web: WebServer, state: Path, *, interval: str, **sla: Any
) -> Config:
    data = config_data(mail, state, sla={"confirm_retry": "0.5s", "confirm_within": "20s",
                                         "webmail": {"limit": "1s", **sla}})  # fmt: skip
    data["webmail"] = [{"name": "portal", "url": web.url("/page"), "interval": interval,
                        "timeout": "4s", "limit": "1s", "ca_file": str(web.ca_file),
                        "expected_text": "Welcome"}]  # fmt: skip
    return parse_config(data)


def _rows(state: Path) -> tuple[list[Any], list[Any]]:
    with Ledger.open_readonly(state / "ledger.sqlite3") as ledger:
        return ledger.webmail(0, float("inf")), ledger.webmail_transitions()


async def test_loads_are_recorded_and_a_slow_webmail_is_confirmed_down_apart_from_mail(
    mail: EmbeddedMailService, webserver: WebServer, tmp_path: Path
) -> None:
    """Loads on the interval go to the ledger and the metrics; two loads over the limit confirm a
    webmail outage (retried after confirm_retry), a fast one ends it, mail stays up."""
    agent = Agent(_config(mail, webserver, tmp_path, interval="1s", policy="any"))
    task = await start(agent)
    try:
        opened = lambda: sample(agent, "mailprobe_webmail_load_seconds_count", webmail="portal")  # noqa: E731
        await wait_until(lambda: (opened() or 0) >= 2, 15, "two loads")
        assert sample(agent, "mailprobe_webmail_up", webmail="portal") == 1
        webserver.delay = 1.4  # over the 1 s limit, within the 4 s timeout
        await wait_until(lambda: not agent.books.webmail.is_up("portal"), 20, "confirmed down")
        assert sample(agent, "mailprobe_webmail_up", webmail="portal") == 0
        assert (sample(agent, "mailprobe_webmail_over_limit_total", webmail="portal") or 0) >= 2
        webserver.delay = 0.0
        await wait_until(lambda: agent.books.webmail.is_up("portal"), 20, "up again")
        now = agent.clock.time()
        month = agent.books.webmail.month(now, [(now - 3600.0, now)])  # all of it observed
        assert month["portal"].over_limit >= 2
        assert month["portal"].down_seconds > 1.0
    finally:
        await stop(agent, task)
    samples, transitions = _rows(tmp_path)
    slow = [s for s in samples if s.seconds > 1.0]
    assert len(slow) >= 2
    assert all(s.ok for s in slow)
    assert all(s.seconds < 1.0 for s in samples if s not in slow)
    assert [t.up for t in transitions] == [False, True]
    # The outage starts at the first slow load and ends at the first fast one after.
    first_slow = min(s.at for s in slow)
    assert transitions[0].at == first_slow
    assert transitions[1].at == min(s.at for s in samples if s.at > first_slow and s.seconds < 1)
    assert agent.books.acc.is_up("a2b", Check.CONNECTIVITY)  # mail is not webmail


async def test_report_shows_the_webmail_clause_with_verdict_and_remedy(
    mail: EmbeddedMailService, webserver: WebServer, tmp_path: Path
) -> None:
    """Loads over the limit breach the clause under policy `any`: breached, double service time
    owed for it, the webmail outage listed apart from the mail checks."""
    config = _config(mail, webserver, tmp_path, interval="10m", policy="any")
    agent = Agent(config)
    task = await start(agent)
    try:
        await wait_until(lambda: (sample(agent, "mailprobe_webmail_load_seconds_count",
                                         webmail="portal") or 0) >= 1, 15, "first load")  # fmt: skip
        webserver.delay = 1.3
        for _ in range(2):
            loaded = await agent.load_webmail("portal")
            assert loaded is not None
            assert loaded.ok
            assert loaded.seconds > 1.0
        webserver.delay = 0.0
        assert (await agent.load_webmail("portal")) is not None
    finally:
        await stop(agent, task)
    now = agent.clock.time()
    with Ledger.open_readonly(tmp_path / "ledger.sqlite3") as ledger:
        report = build_report(ledger, config.sla, month_of(now, "UTC"), routes=["a2b"], now=now,
                              webmail=["portal"])  # fmt: skip
    account = report.scopes[0]
    (clause,) = [c for c in account.clauses if c.clause == "webmail"]
    assert clause.verdict is Verdict.BREACHED
    assert clause.measured == 2.0
    assert clause.limit == 0.0
    owed = {o.kind: o.clauses for o in report.remedy.owed}
    assert "webmail" in owed[RemedyKind.DOUBLE_SERVICE_TIME]
    assert [o.check for o in report.outages if o.route == "portal"] == ["webmail"]
    assert dict(account.webmail)["portal"].samples == 4
    assert not any("Webmail" in text for text in report.not_measured)


async def test_browser_loads_run_one_at_a_time(tmp_path: Path) -> None:
    """Two browser checks never load at once; an http check runs beside them."""
    from mailprobe.agent.clock import SystemClock
    from mailprobe.agent.webmail_config import parse_webmail
    from mailprobe.agent.webmail_runner import WebmailRunner
    from mailprobe.probes.webmail import Recorder, WebmailResult

    checks = parse_webmail(
        [{"name": f"b{i}", "url": "https://w.test/", "mode": "browser", "interval": "1h"}
         for i in range(2)] + [{"name": "h", "url": "https://w.test/", "interval": "1h"}],
        check_secrets=False,
    )  # fmt: skip
    spans: list[tuple[str, float, float]] = []

    async def prober(target: Any, *, screenshot: Path | None = None) -> WebmailResult:
        mode = "http" if screenshot is None else "browser"
        begun = asyncio.get_running_loop().time()
        await asyncio.sleep(0.2)
        spans.append((mode, begun, asyncio.get_running_loop().time()))
        return Recorder(target.url, mode, 10.0).result()

    runner = WebmailRunner(checks, tmp_path, SystemClock(), lambda s: None, lambda c: False,
                           1.0, asyncio.Event(), prober=prober)  # fmt: skip
    loads = await asyncio.gather(*(runner.load(c) for c in checks))
    assert all(s is not None and s.ok for s in loads)
    (b1, b2) = sorted((lo, hi) for mode, lo, hi in spans if mode == "browser")
    ((_, h_lo, h_hi),) = [s for s in spans if s[0] == "http"]
    assert b2[0] >= b1[1]  # the second browser load waited for the first
    assert h_lo < b1[1]
    assert b1[0] < h_hi
