"""The HTML report printed to PDF by headless Chromium: the file that gets attached to a claim.

Chromium lays the page out exactly as a browser shows it and honours the page's print CSS (A4,
a page break before each section). It runs with a throwaway profile and everything that would
reach the network turned off, on a copy of the page in a temporary folder; it is given
``timeout`` seconds, after which its whole process group is ended. Whatever goes wrong (no
Chromium, a crash, no PDF written, the time out) is a ``PdfError`` with a one-line reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 120.0
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--disable-extensions", "--no-pdf-header-footer",
)  # fmt: skip
INSTALL_HINT = "install Chromium (Debian/Ubuntu: apt-get install chromium)"


class PdfError(RuntimeError):
    """The PDF could not be made; the message is one line."""


def find_chromium() -> str | None:
    """The Chromium to print with: ``MAILPROBE_CHROMIUM`` if set, else the first on PATH."""
    if chosen := os.environ.get("MAILPROBE_CHROMIUM"):
        return chosen
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def html_to_pdf(html: str, *, chromium: str | None = None, timeout: float = TIMEOUT) -> bytes:
    """Print ``html`` (a self-contained page) to PDF and return the file's bytes."""
    binary = chromium or find_chromium()
    if binary is None:
        raise PdfError(f"--format pdf needs Chromium, and none was found: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="mailprobe-pdf-") as tmp:
        folder = Path(tmp)
        page, pdf = folder / "report.html", folder / "report.pdf"
        page.write_text(html, encoding="utf-8")
        command = [binary, *FLAGS, f"--user-data-dir={folder / 'profile'}",
                   f"--print-to-pdf={pdf}", page.as_uri()]  # fmt: skip
        _run(command, timeout, binary)
        data = pdf.read_bytes() if pdf.is_file() else b""
    if not data.startswith(b"%PDF-"):
        raise PdfError(f"{binary} wrote no PDF")
    return data


def _run(command: list[str], timeout: float, binary: str) -> None:
    try:
        # A session of its own, so a time out ends Chromium's helper processes too.
        proc = subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise PdfError(f"cannot run {binary}: {exc.strerror or exc}") from exc
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise PdfError(f"{binary} did not print the PDF within {timeout:g} s") from None
    if proc.returncode != 0:
        raise PdfError(f"{binary} failed to print the PDF (exit {proc.returncode}){_last(err)}")


def _last(stderr: bytes) -> str:
    """Chromium's last complaint, if it said one, for the one-line error."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return f": {lines[-1][:200]}" if lines else ""
