"""Fixtures every kind of test shares: the embedded mail service, the fake clock, the test webmail
server and the system Chromium.

Tests are laid out by kind: tests/unit (pure code, no sockets), tests/embedded (the in-process
SMTP + IMAP service of the demo), tests/subprocess (the real CLI, promtool, Prometheus),
tests/integration (a real Postfix + Dovecot from tests/mailstack).
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.probes.webmail import DEFAULT_CHROMIUM
from tests.helpers.clock import FakeClock
from tests.helpers.configs import USERS
from tests.helpers.webserver import WebServer


@pytest.fixture
async def mail() -> AsyncIterator[EmbeddedMailService]:
    """A started embedded mail service with alice, bob and carol @demo.test; stopped after."""
    async with EmbeddedMailService(USERS, rng=random.Random(20240601)) as service:
        yield service


@pytest.fixture
def clock() -> FakeClock:
    """Virtual time for an agent: nothing sleeps for real."""
    return FakeClock()


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
