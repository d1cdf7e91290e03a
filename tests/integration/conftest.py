"""Integration tests: a real Postfix + Dovecot (tests/mailstack), started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mailstack import MailStack, missing_prerequisites

_HERE = Path(__file__).parent
# Set in CI so a missing stack fails the run instead of silently skipping it.
_REQUIRED_ENV = "MAILPROBE_REQUIRE_MAILSTACK"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as `integration`."""
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mailstack() -> Iterator[MailStack]:
    """The session's Postfix + Dovecot; tests that change its state restore it."""
    problem = missing_prerequisites()
    if problem is not None:
        if os.environ.get(_REQUIRED_ENV):
            pytest.fail(f"{problem} ({_REQUIRED_ENV} is set)")
        pytest.skip(problem)
    with MailStack() as stack:
        yield stack
