"""Pictures of the SLA report as text, HTML and PDF, for docs/ (or of any config's ledger).

    python -m bench.report_screenshot [--out docs] [--config FILE --month YYYY-MM] [--agent-run]

Without --config, the month of ``tests/helpers/report_month.py`` (October 2026, Europe/Berlin: an
SMTP outage that breaches the disconnection clause, a mailbox outage inside the agreed Sunday
window and a shorter one outside it, a three-hour agent restart, probes found late, one delivered
after 70 minutes). With --agent-run, a ledger made by the real agent instead: two virtual hours
last month on the embedded mail service, with an SMTP outage, a stretch where mail is accepted
but not delivered, and an agreed maintenance window.

Writes, under --out: report.txt, report.html and report.pdf as `mailprobe report` makes them
(the PDF by headless Chromium), report-text.png (the text in a monospace page), report-html.png
(the whole page) and report-pdf-page1.png (the PDF's first page by pdftoppm). Needs the Debian
packages chromium and poppler-utils.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
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
from mailprobe.agent.report_pdf import html_to_pdf
from mailprobe.agent.report_render import render_text
from mailprobe.agent.runtime import Agent
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import month_bounds
from tests.helpers import documents, report_month
from tests.helpers.agents import start, stop
from tests.helpers.clock import FakeClock
from tests.helpers.configs import USERS, config_data, write_config
from tests.helpers.waits import wait_until

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


def _config(args: argparse.Namespace, workdir: Path) -> tuple[Config, str, float]:
    """The config to report on, its month, and the report's `now`."""
    if args.config is not None:
        config = load_config(args.config, check_secrets=False)
        return config, args.month or default_month(config.sla, time.time()), time.time()
    if args.agent_run:
        month = args.month or default_month(SlaConfig(), time.time())
        return asyncio.run(make_ledger(workdir, month)), month, time.time()
    path = report_month.write_month(workdir)
    # Generated as if on the 2nd of the next month, so the document does not change per run.
    return load_config(path, check_secrets=False), report_month.MONTH, report_month.END + 86400


def main(argv: list[str] | None = None) -> int:
    """Build or read a ledger, write the report in three forms and a picture of each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="report this config's ledger")
    parser.add_argument("--month", help="YYYY-MM (default: last month, or the sample month)")
    parser.add_argument("--agent-run", action="store_true", help="a ledger from a real agent run")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    binary = documents.chromium()
    if binary is None or shutil.which("pdftoppm") is None:
        print("needs chromium and pdftoppm (Debian: apt-get install chromium poppler-utils)",
              file=sys.stderr)  # fmt: skip
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mailprobe-report-") as tmp:
        workdir = Path(tmp)
        config, month, now = _config(args, workdir)
        with Ledger.open_readonly(config.agent.state_dir / LEDGER_FILE) as ledger:
            report = build_report(ledger, config.sla, month, windows=config.maintenance,
                                  routes=[r.name for r in config.routes], now=now)  # fmt: skip
        text, page = render_text(report), render_html(report)
        (out / "report.txt").write_text(text)
        (out / "report.html").write_text(page)
        started = time.monotonic()
        (out / "report.pdf").write_bytes(html_to_pdf(page, chromium=binary))
        print(f"report.pdf: {time.monotonic() - started:.1f} s in chromium")
        documents.text_page(text, workdir / "text.html")
        documents.screenshot(workdir / "text.html", out / "report-text.png", width=940)
        documents.screenshot(out / "report.html", out / "report-html.png")
        first, *_ = documents.pdf_pages(out / "report.pdf", workdir / "page")
        shutil.copyfile(first, out / "report-pdf-page1.png")
    for name in ("report.txt", "report.html", "report.pdf", "report-text.png", "report-html.png",
                 "report-pdf-page1.png"):  # fmt: skip
        print(f"{out / name}: {(out / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
