"""The report as documents: a month with an outage and maintenance, rendered by `mailprobe report`
as text, HTML (screenshotted by headless Chromium) and PDF (printed by Chromium, pages by
pdftoppm, text by pdftotext), each with every section. Without Chromium or poppler-utils the
tests skip, except in CI, where they fail."""

from __future__ import annotations

import html
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailprobe.agent.report_html import SECTIONS
from mailprobe.agent.report_pdf import PdfError, html_to_pdf
from tests.helpers import documents, report_month

SCOPES = ("Account (all routes)", "Route internal", "Route partner-inbound")
TEXT_SECTIONS = ("Owed", *SCOPES, "Outages", "Agreed maintenance windows",
                 "Precision of the figures", "Accounting rules", "Not measured")  # fmt: skip


def needs(name: str) -> str:
    """Path of a tool; skip outside CI when missing, fail in CI."""
    found = shutil.which(name)
    if found:
        return found
    if "CI" in os.environ:
        pytest.fail(f"{name} is not installed, and CI requires it")
    pytest.skip(f"{name} is not installed")


def report(config: Path, *args: str, env: dict[str, str] | None = None,
           stdout: int | None = None) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "report", "--config", str(config),
         "--month", report_month.MONTH, *args],
        stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
        check=False, timeout=300, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """October 2026: an SMTP outage, maintenance, a restart (tests/helpers/report_month.py)."""
    return report_month.write_month(tmp_path_factory.mktemp("month"))


def test_text_report_has_every_section_in_order(config: Path) -> None:
    proc = report(config, "--format", "text")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    at = [text.index(f"\n{title}\n{'=' * len(title)}\n") for title in TEXT_SECTIONS]
    assert at == sorted(at)
    assert "Disconnection (any route is down)" in text


def test_html_report_has_every_section_and_renders_in_chromium(
    config: Path, tmp_path: Path
) -> None:
    """The page parses with every section title; Chromium draws it as a long, non-blank page."""
    binary = needs("chromium")
    page = tmp_path / "report.html"
    proc = report(config, "--format", "html", "--output", str(page))
    assert proc.returncode == 0, proc.stderr
    source = page.read_text()
    titles = [html.unescape(t.split("</h2>")[0]) for t in source.split("<h2>")[1:]]
    assert [t for t in (*SECTIONS, *SCOPES) if t not in titles] == []
    png = tmp_path / "report.png"
    documents.screenshot(page, png, binary=binary)
    from matplotlib import image

    height, width = image.imread(png).shape[:2]
    assert width == 1200
    assert height > 3000  # every section drawn, not one screen of it
    assert documents.drawn_share(png) > 0.03


def test_pdf_report_has_pages_with_every_section_title(config: Path, tmp_path: Path) -> None:
    """--format pdf --output: a PDF of several A4 pages; its text layer has every title."""
    needs("chromium")
    needs("pdftoppm")
    pdf = tmp_path / "report.pdf"
    started = time.monotonic()
    proc = report(config, "--format", "pdf", "--output", str(pdf))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""
    assert time.monotonic() - started < 300
    assert pdf.read_bytes().startswith(b"%PDF-")
    pages = documents.pdf_pages(pdf, tmp_path / "page", dpi=50)
    assert len(pages) > 1
    assert all(documents.drawn_share(p) > 0.005 for p in pages)
    text = " ".join(documents.pdf_text(pdf).split())
    for title in (*SECTIONS, *SCOPES):
        assert title in text, title
    assert "Month in progress" not in text


def test_pdf_goes_to_stdout_when_it_is_not_a_terminal(config: Path) -> None:
    needs("chromium")
    proc = report(config, "--format", "pdf")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"%PDF-")


def test_pdf_is_not_written_to_a_terminal(config: Path) -> None:
    """Without --output and with a terminal on stdout: exit 2 and say to use --output."""
    main, other = pty.openpty()
    try:
        proc = report(config, "--format", "pdf", stdout=other)
    finally:
        os.close(other)
        os.close(main)
    assert proc.returncode == 2
    assert b"--format pdf: give --output FILE" in proc.stderr


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MAILPROBE_CHROMIUM"}
    return {**env, **extra}


def test_pdf_without_chromium_is_one_line_and_exit_2(config: Path, tmp_path: Path) -> None:
    """No Chromium on PATH: exit 2, one line naming the package to install, no traceback."""
    bare = tmp_path / "bin"
    bare.mkdir()
    proc = report(config, "--format", "pdf", "--output", str(tmp_path / "r.pdf"),
                  env=_env(PATH=str(bare)))  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert lines == ["mailprobe: --format pdf needs Chromium, and none was found: install "
                     "Chromium (Debian/Ubuntu: apt-get install chromium)"]  # fmt: skip
    assert not (tmp_path / "r.pdf").exists()


def _fake(tmp_path: Path, body: str) -> str:
    """A stand-in for Chromium that fails in a chosen way (the error paths, not Chromium)."""
    path = tmp_path / "chromium"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_pdf_when_chromium_fails_is_one_line_and_exit_2(config: Path, tmp_path: Path) -> None:
    fake = _fake(tmp_path, "echo 'cannot open display' >&2; exit 3")
    proc = report(config, "--format", "pdf", "--output", str(tmp_path / "r.pdf"),
                  env=_env(MAILPROBE_CHROMIUM=fake))  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        f"mailprobe: {fake} failed to print the PDF (exit 3): cannot open display"
    ]


def test_chromium_that_prints_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PdfError, match="wrote no PDF"):
        html_to_pdf("<p>x</p>", chromium=_fake(tmp_path, "exit 0"))


def test_chromium_past_the_timeout_is_ended_with_its_children(tmp_path: Path) -> None:
    """A hung Chromium (and the helper it started) is killed at the timeout; the error says so."""
    pid_file = tmp_path / "child.pid"
    fake = _fake(tmp_path, f"sleep 60 & echo $! > {pid_file}; wait")
    started = time.monotonic()
    with pytest.raises(PdfError, match=r"did not print the PDF within 1 s"):
        html_to_pdf("<p>x</p>", chromium=fake, timeout=1.0)
    assert time.monotonic() - started < 30
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: it holds no resources but its table entry.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"
