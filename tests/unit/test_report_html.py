"""HTML report: one self-contained page with the verdict table and three charts."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

from mailprobe.agent.checks import Check
from mailprobe.agent.probe import Status
from mailprobe.agent.report import build_report
from mailprobe.agent.report_html import render_html
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import RecurringWindow
from tests.unit.test_report import BERLIN, _probe, fill, ts


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in {"src", "href", "srcset", "action"}]


def _page(tmp_path: Path) -> str:
    start, end = ts("2026-10-01T00:00", BERLIN), ts("2026-11-01T00:00", BERLIN)
    window = RecurringWindow.model_validate(
        {"name": "sun", "weekly": ["sun"], "start": "02:00", "duration": "2h",
         "timezone": "Europe/Berlin"}
    )  # fmt: skip
    outages = [
        ("a", Check.SEND, start + 3 * 86400, start + 3 * 86400 + 3000),
        ("a", Check.RECEIVE, ts("2026-10-25T01:30", BERLIN), ts("2026-10-25T02:30", BERLIN)),
    ]
    probes = [_probe(f"p{i}", start + 600 * i, 1.0 + i % 7) for i in range(200)]
    probes.append(_probe("slow", start + 20 * 86400, 4200.0, Status.LATE))
    runs = [(start, start + 15 * 86400), (start + 15 * 86400 + 3 * 3600, end)]
    with fill(tmp_path / "l.db", runs, outages, probes) as ledger:
        report = build_report(
            ledger, SlaConfig(timezone="Europe/Berlin"), "2026-10", windows=[window],
            routes=["a"], now=end,
        )  # fmt: skip
    return render_html(report)


def test_html_page_has_the_verdict_table_and_three_embedded_svg_charts(tmp_path: Path) -> None:
    page = _page(tmp_path)
    assert page.startswith("<!doctype html>")
    assert "Disconnection (any route is down)" in page
    assert "class='v breached'" in page
    assert "double service time for 2026-10" in page
    images = [r for r in _collect(page).refs if r.startswith("data:image/svg+xml;base64,")]
    assert len(images) == 3
    for image in images:
        svg = base64.b64decode(image.split(",", 1)[1])
        assert b"<svg" in svg
        assert svg.rstrip().endswith(b"</svg>")


def test_html_page_loads_nothing_from_the_network(tmp_path: Path) -> None:
    refs = _collect(_page(tmp_path))
    assert all(ref.startswith("data:") for ref in refs.refs)
    assert "link" not in refs.tags
    assert "script" not in refs.tags


def test_html_page_is_reproducible(tmp_path: Path) -> None:
    assert _page(tmp_path / "one") == _page(tmp_path / "two")


def _collect(page: str) -> _Refs:
    parser = _Refs()
    parser.feed(page)
    return parser
