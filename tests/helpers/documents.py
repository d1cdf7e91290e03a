"""Pictures of the report documents: headless Chromium screenshots and PDF pages as PNG.

Used by the document test and by ``bench/report_screenshot.py``, which writes the pictures under
docs/. Chromium runs as `mailprobe report --format pdf` runs it (its flags, a throwaway profile),
the page opened from a file.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import image

from mailprobe.agent.report_pdf import FLAGS, find_chromium

TALL = 16000  # px: taller than any report, so one screenshot holds the whole page


def chromium() -> str | None:
    """The Chromium the report would print with, if any."""
    return find_chromium()


def screenshot(page: Path, png: Path, *, width: int = 1200, binary: str | None = None) -> None:
    """The whole page as a PNG: a tall window, then the blank bottom cut off."""
    binary = binary or find_chromium()
    assert binary is not None, "chromium is not installed"
    with tempfile.TemporaryDirectory(prefix="mailprobe-shot-") as profile:
        subprocess.run(
            [binary, *FLAGS, "--hide-scrollbars", f"--window-size={width},{TALL}",
             f"--user-data-dir={profile}", f"--screenshot={png}", page.resolve().as_uri()],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
    crop_blank_bottom(png)


def crop_blank_bottom(png: Path, margin: int = 24) -> None:
    """Cut the white rows below the last drawn one (keeping a margin)."""
    pixels = image.imread(png)[:, :, :3]
    drawn = np.flatnonzero((pixels < 0.98).any(axis=(1, 2)))
    if len(drawn):
        image.imsave(png, pixels[: min(len(pixels), int(drawn[-1]) + margin)])


def text_page(text: str, page: Path) -> None:
    """The text report as a page of monospace text, as a mail client or terminal shows it."""
    page.write_text(
        "<!doctype html><meta charset=utf-8><style>body{margin:24px;background:#fff}"
        "pre{font:13px/1.35 'DejaVu Sans Mono',monospace;color:#111;margin:0}</style>"
        f"<pre>{html.escape(text)}</pre>",
        encoding="utf-8",
    )


def pdf_pages(pdf: Path, prefix: Path, *, dpi: int = 110) -> list[Path]:
    """Every page of the PDF as a PNG, via poppler's pdftoppm."""
    tool = shutil.which("pdftoppm")
    assert tool is not None, "pdftoppm (poppler-utils) is not installed"
    subprocess.run([tool, "-r", str(dpi), "-png", str(pdf), str(prefix)], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return sorted(prefix.parent.glob(f"{prefix.name}-*.png"))


def pdf_text(pdf: Path) -> str:
    """The PDF's text layer, via poppler's pdftotext."""
    tool = shutil.which("pdftotext")
    assert tool is not None, "pdftotext (poppler-utils) is not installed"
    done = subprocess.run([tool, "-layout", str(pdf), "-"], check=True, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    return done.stdout


def drawn_share(png: Path) -> float:
    """Share of the picture's pixels that are not white: 0 for a blank page."""
    pixels = image.imread(png)[:, :, :3]
    return float((pixels < 0.95).any(axis=2).mean())
