"""Render the HTML SLA report of a ledger and screenshot it in headless Chromium.

    python -m bench.report_screenshot [--config FILE --month YYYY-MM] [--out PNG]

With --config, the report of that config's ledger; without, a ledger made here first: the agent
runs two virtual hours (last month, contract zone UTC) on the embedded mail service with an SMTP
outage, a stretch where mail is accepted but not delivered, and an agreed maintenance window.
The page is opened from a file with networking off, so anything it would fetch stays blank.
Needs the Debian package `chromium`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.config import Config, load_config
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.report import build_report
from mailprobe.agent.report_command import default_month
from mailprobe.agent.report_html import render_html
from mailprobe.agent.runtime import Agent
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import month_bounds
from tests.helpers.agents import start, stop
from tests.helpers.clock import FakeClock
from tests.helpers.configs import USERS, config_data, write_config
from tests.helpers.waits import wait_until

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--window-size=1200,2400",
)  # fmt: skip
STEP = 5.0  # virtual seconds per step; arrivals are seen within a step


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def _steps(
    clock: FakeClock, agent: Agent, seconds: float, held: tuple[float, float] = (0.0, 0.0)
) -> None:
    """Advance virtual time; between steps wait for submissions and for mail not `held`."""

    def calm() -> bool:
        return agent.submitter.idle.is_set() and all(
            held[0] <= p.sent_at < held[1] for p in agent.books.inflight
        )

    for _ in range(int(seconds / STEP)):
        await clock.advance(STEP)
        await wait_until(calm, 30, "probes to settle")


async def make_ledger(workdir: Path, month: str) -> Config:
    """Two virtual hours of probing with trouble, on the 10th of `month` from 08:00 UTC."""
    t0 = month_bounds(month, "UTC")[0] + 9 * 86400 + 8 * 3600
    clock = FakeClock(start=t0)
    async with EmbeddedMailService(USERS) as mail:
        window = {"name": "agreed-upgrade", "start": _iso(t0 + 2100), "end": _iso(t0 + 2700)}
        data = config_data(mail, workdir / "state", maintenance=[window])
        data["agent"]["log_level"] = "warning"
        config = write_config(data, workdir / "mailprobe.yaml")
        agent = Agent(config, clock=clock, rng=random.Random(1), serve_http=False)
        task = await start(agent)
        try:
            await _steps(clock, agent, 1800)
            await mail.set_outage("smtp", down=True)  # 10 min, half of it in the agreed window
            await _steps(clock, agent, 600)
            await mail.set_outage("smtp", down=False)
            await _steps(clock, agent, 1800)
            mail.delay = 86400.0  # accepted, not delivered (real seconds: never, here)
            held = (clock.now, float("inf"))
            await _steps(clock, agent, 900, held)
            mail.delay = 0.0
            held = (held[0], clock.now + 0.001)  # one accepted in the last step is held too
            await _steps(clock, agent, 2100, held)
        finally:
            await stop(agent, task)
    return config


def screenshot(html: Path, png: Path, chromium: str) -> None:
    """Headless Chromium, its own throwaway profile, the page from a file."""
    with tempfile.TemporaryDirectory(prefix="mailprobe-chromium-") as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--screenshot={png}", html.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Build or read a ledger, write the HTML report, screenshot it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="report this config's ledger")
    parser.add_argument("--month", help="YYYY-MM (default: last month)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/report-screenshot.png"))
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mailprobe-report-") as tmp:
        workdir = Path(tmp)
        if args.config is not None:
            config = load_config(args.config, check_secrets=False)
            month = args.month or default_month(config.sla, time.time())
        else:
            month = args.month or default_month(SlaConfig(), time.time())
            started = time.monotonic()
            config = asyncio.run(make_ledger(workdir, month))
            print(f"ledger: 2 virtual hours in {time.monotonic() - started:.1f} s")
        with Ledger.open_readonly(config.agent.state_dir / LEDGER_FILE) as ledger:
            report = build_report(ledger, config.sla, month, windows=config.maintenance,
                                  routes=[r.name for r in config.routes])  # fmt: skip
        html = args.out.with_suffix(".html")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(report))
        started = time.monotonic()
        screenshot(html, args.out, chromium)
    print(f"report: {html} ({html.stat().st_size} bytes)")
    print(f"screenshot: {args.out} ({args.out.stat().st_size} bytes, "
          f"{time.monotonic() - started:.1f} s in chromium)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
