"""Integration tests: a real Postfix + Dovecot (tests/mailstack), started once per session."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
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


_LOG_MARKS = pytest.StashKey[dict[Path, int]]()


@pytest.fixture(autouse=True)
def _mail_log_marks(request: pytest.FixtureRequest) -> None:
    """Where the stack's logs ended when the test began: a failure shows what followed."""
    if "mailstack" in request.fixturenames:
        stack: MailStack = request.getfixturevalue("mailstack")
        logs = (stack.layout.postfix_log, stack.layout.dovecot_log)
        request.node.stash[_LOG_MARKS] = {p: p.stat().st_size if p.exists() else 0 for p in logs}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, None]:
    """A failed test's report carries the Postfix and Dovecot log lines written during it."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    marks = item.stash.get(_LOG_MARKS, None)
    if report.when != "call" or not report.failed or not marks:
        return
    for path, start in marks.items():
        try:
            with path.open("rb") as log:
                log.seek(start)
                text = log.read()[-20000:].decode(errors="replace")
        except OSError:
            continue
        report.sections.append((f"mail stack: {path.name}", text))


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
