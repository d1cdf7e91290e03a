"""Fixtures for the in-process mail service; tests/conftest.py re-exports `embedded_mail`."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from mailprobe.agent.demo.service import EmbeddedMailService

#: The fixture's users and their passwords (logins are the addresses).
EMBEDDED_USERS = {
    "alice@demo.test": "alice-secret",
    "bob@demo.test": "bob-secret",
    "carol@demo.test": "carol-secret",
}


@pytest.fixture
async def embedded_mail() -> AsyncIterator[EmbeddedMailService]:
    """A started embedded mail service with alice, bob and carol @demo.test; stopped after."""
    async with EmbeddedMailService(EMBEDDED_USERS, rng=random.Random(20240601)) as service:
        yield service
