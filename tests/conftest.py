"""Fixtures every kind of test shares: the embedded mail service and the fake clock.

Tests are laid out by kind: tests/unit (pure code, no sockets), tests/embedded (the in-process
SMTP + IMAP service of the demo), tests/subprocess (the real CLI, promtool, Prometheus),
tests/integration (a real Postfix + Dovecot from tests/mailstack).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers.clock import FakeClock
from tests.helpers.configs import USERS


@pytest.fixture
async def mail() -> AsyncIterator[EmbeddedMailService]:
    """A started embedded mail service with alice, bob and carol @demo.test; stopped after."""
    async with EmbeddedMailService(USERS, rng=random.Random(20240601)) as service:
        yield service


@pytest.fixture
def clock() -> FakeClock:
    """Virtual time for an agent: nothing sleeps for real."""
    return FakeClock()
