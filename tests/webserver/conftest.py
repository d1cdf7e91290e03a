"""The test webmail server, started per test on free loopback ports, and the browser check."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailprobe.probes.webmail import DEFAULT_CHROMIUM
from tests.webserver.server import WebServer

# Set in CI so a machine without Chromium fails the browser tests instead of skipping them.
_REQUIRED_ENV = "MAILPROBE_REQUIRE_BROWSER"


@pytest.fixture
async def webserver(tmp_path: Path) -> AsyncIterator[WebServer]:
    """A started test webmail (TLS from its own CA, `ca_file`); stopped after the test."""
    async with WebServer(tmp_path) as server:
        yield server


def _browser_problem() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install 'mailprobe[browser]')"
    if not os.access(DEFAULT_CHROMIUM, os.X_OK):
        return f"{DEFAULT_CHROMIUM} is missing (apt-get install chromium)"
    if shutil.which("certutil") is None:
        return "certutil is missing (apt-get install libnss3-tools)"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system Chromium for browser-mode tests; skipped without it unless CI requires it."""
    problem = _browser_problem()
    if problem is not None:
        if os.environ.get(_REQUIRED_ENV):
            pytest.fail(f"{problem} ({_REQUIRED_ENV} is set)")
        pytest.skip(problem)
    return DEFAULT_CHROMIUM
