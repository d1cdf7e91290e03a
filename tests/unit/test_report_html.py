"""HTML report: one self-contained page: clause summary, figures, charts, precision, rules."""

from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch

from mailprobe.agent.budgets import DEFAULT
from mailprobe.agent.checks import Check
from mailprobe.agent.probe import Status
from mailprobe.agent.report import Report, build_report
from mailprobe.agent.report_charts import (
    BACKGROUND,
    daily_figure,
    delay_bounds,
    delay_figure,
    timeline_figure,
)
from mailprobe.agent.report_html import SECTIONS, render_html
from mailprobe.agent.report_precision import BENCH_FILES, MEASURED_P99_MS
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


class _Sections(HTMLParser):
    """The page's h2 titles, and the summary table's rows as (clause, verdict words)."""

    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self.summary: list[list[str]] = []
        self._in: str | None = None
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._section = dict(attrs).get("id")
        if tag == "h2":
            self._in = "h2"
            self.titles.append("")
        if tag == "tr" and self._section == "summary":
            self.summary.append([])
        if tag == "td" and self._section == "summary":
            self._in = "td"
            self.summary[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h2", "td"):
            self._in = None
        if tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._in == "h2":
            self.titles[-1] += data
        elif self._in == "td":
            self.summary[-1][-1] += data


def _report(tmp_path: Path, delays: list[float] | None = None) -> Report:
    start, end = ts("2026-10-01T00:00", BERLIN), ts("2026-11-01T00:00", BERLIN)
    outages = [("a", Check.SEND, start + 3 * 86400, start + 3 * 86400 + 3000)]
    values = delays if delays is not None else [0.010 + 0.07 * i / 99 for i in range(100)]
    probes = [_probe(f"p{i}", start + 600 * i, v) for i, v in enumerate(values)]
    with fill(tmp_path / "l.db", [(start, end)], outages, probes) as ledger:
        return build_report(ledger, SlaConfig(timezone="Europe/Berlin"), "2026-10",
                            routes=["a"], now=end)  # fmt: skip


def test_the_page_opens_with_a_verdict_per_clause_and_scope(tmp_path: Path) -> None:
    """Summary first, then Owed: each clause a row, each scope a column, verdicts in words."""
    page = _page(tmp_path)
    parsed = _Sections()
    parsed.feed(page)
    assert parsed.titles[:3] == ["Summary", "Owed", "Account (all routes)"]
    assert [t for t in SECTIONS if t not in parsed.titles] == []
    rows = [r for r in parsed.summary if r]
    assert rows[0][0] == "Disconnection"
    assert all(len(r) == 3 for r in rows)  # the clause, the account, route a
    assert {v for r in rows for v in r[1:]} <= {"kept", "breached", "not enough data"}
    assert rows[0][1:] == ["breached", "breached"]  # 50 min + 60 min down against 44


def test_every_chart_legend_swatch_stands_out_from_the_background(tmp_path: Path) -> None:
    """Each swatch's edge has at least 3:1 contrast with the white background (WCAG's bar for
    graphics), and no fill is the background's own colour."""
    report = _report(tmp_path)
    figures = [timeline_figure(report), daily_figure(report.scopes[0], report),
               delay_figure(report.scopes[0].delays, 60.0, 3600.0)]  # fmt: skip
    for fig in figures:
        (ax,) = fig.axes
        background = to_rgb(ax.get_facecolor())
        assert background == to_rgb(BACKGROUND)
        handles = ax.get_legend().legend_handles
        assert handles
        for handle in handles:
            if isinstance(handle, Patch):
                edge, face = to_rgb(handle.get_edgecolor()), to_rgb(handle.get_facecolor())
                assert face != background, handle.get_label()
            else:
                edge = to_rgb(handle.get_color())
            assert _contrast(edge, background) >= 3.0, handle.get_label()


def _contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    def lum(c: tuple[float, float, float]) -> float:
        lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize(
    ("delays", "bounds"),
    [([0.010 + 0.07 * i / 99 for i in range(100)], (0.001, 0.1)),
     ([0.0004, 0.02, 4200.0], (0.001, 10000.0)), ([2.5, 7.0], (0.001, 10.0)), ([], (0.001, 0.01))],
)  # fmt: skip
def test_the_delay_axis_is_logarithmic_from_1_ms_to_the_decade_above_the_data(
    delays: list[float], bounds: tuple[float, float]
) -> None:
    """10-80 ms deliveries fill the decade from 10 to 100 ms, not one bar from 0.1 s."""
    assert delay_bounds(delays) == pytest.approx(bounds)
    (ax,) = delay_figure(delays, 60.0, 3600.0).axes
    assert ax.get_xscale() == "log"
    assert ax.get_xlim() == pytest.approx(bounds)
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert sum(p.get_height() for p in bars) == len(delays)
    if delays and max(delays) < 0.1:
        assert len(bars) >= 8  # spread over several bins
        assert min(p.get_x() for p in bars) >= 0.0099


def test_figures_are_written_as_in_the_text_report_and_never_wrap(tmp_path: Path) -> None:
    """Minutes two decimals, seconds three, percent four, the unit joined by a no-break space."""
    page = render_html(_report(tmp_path))
    cells = re.findall(r"<td class=num>([^<]*)</td>", page)
    assert "99.9900&nbsp;%" in " ".join(cells)  # the availability target, never "99.99 %"
    assert "≤&nbsp;44.00&nbsp;min" in cells
    units = {c.rsplit("&nbsp;", 1)[-1] for c in cells if "&nbsp;" in c}
    assert units == {"min", "s", "%", "probes", "days"}
    for cell in cells:
        assert " " not in cell  # a plain space could wrap
    assert re.search(r"td\.num,th\.num\{[^}]*white-space:nowrap", page)


def test_the_page_prints_on_a4_with_page_breaks_and_no_dark_background(tmp_path: Path) -> None:
    page = _page(tmp_path)
    assert "@page{size:A4" in page
    assert "@media print" in page
    assert "section.page{break-before:page}" in page
    for colour in re.findall(r"background:(#[0-9a-f]{6}|#[0-9a-f]{3})\b", page):
        assert _contrast(to_rgb(colour), (0.0, 0.0, 0.0)) > 12, colour  # light: black text reads


def test_the_page_states_the_precision_of_its_figures(tmp_path: Path) -> None:
    """How arrival is stamped and bounded, the month's bounds, the measured p99, the junk checks,
    found-late probes, coverage: all on the page."""
    page = render_html(_report(tmp_path))
    section = html.unescape(
        page.split("<h2>Precision of the figures</h2>")[1].split("</section>")[0]
    )
    assert "half the bracket's width is the error bound" in section
    assert "so the bound is max(22 ms, 1.9 % of the delay)" in section
    assert "In this period" in section
    measured = ", ".join(f"{ms} ms at {delay}" for delay, ms in MEASURED_P99_MS)
    assert f"at the default budget was {measured}" in section
    assert "junk folder is found at the folder's next check" in section
    assert "flagged as found late" in section
    assert "Coverage: the agent observed 100.0000 % of the evaluated period" in section


def test_the_stated_p99_is_the_committed_benchmark_result() -> None:
    """MEASURED_P99_MS says what bench/results/ says at the default budget, so the report never
    claims a stale figure."""
    root = Path(__file__).resolve().parents[2]
    [name] = BENCH_FILES
    text = (root / name).read_text()
    lane = text.split(f"## self_hosted: {DEFAULT.per_probe} per probe")[1].split("\n## ")[0]
    found: dict[str, int] = {}
    for row in lane.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) > 5 and cells[0].endswith(" s"):
            found[cells[0]] = int(cells[4])
    assert dict(MEASURED_P99_MS) == found
