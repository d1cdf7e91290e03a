"""Logs: library chatter held back, repeats counted, secrets never shown in any form."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from mailprobe.agent import logs
from mailprobe.agent.config import Config
from mailprobe.agent.demo.command import _log_to
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.probe import Status
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.runtime import Agent
from mailprobe.probes.imap_session import ImapSession
from tests.helpers.configs import account, make_config
from tests.hostile.harness import plain_endpoint
from tests.hostile.imap_server import ImapServer

PASSWORD = 'pa"ss\\wo rd'  # a quote and a backslash: IMAP quotes it as "pa\"ss\\wo rd"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _record(msg: str, *args: object, created: float = 1000.0, name: str = "x") -> logging.LogRecord:
    record = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)
    record.created = created
    return record


@pytest.fixture
def root_debug() -> Iterator[Collect]:
    """The root logger at DEBUG with a collecting handler, restored afterwards."""
    root = logging.getLogger()
    handler, level = Collect(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        logs.install("warning", None, [])


def test_repeats_are_shown_five_times_then_counted() -> None:
    """500 identical lines in a minute: five shown, and the next one after it says 495 more."""
    handler = Collect()
    handler.addFilter(logs.RateLimit())
    for i in range(500):
        handler.handle(
            _record("ignored untagged response : %s", b"0 RECENT", created=1000 + i / 10)
        )
    assert len(handler.lines) == 5
    assert "counted, not shown" in handler.lines[-1]
    handler.handle(_record("ignored untagged response : %s", b"0 RECENT", created=1061))
    assert handler.lines[-1].endswith("[repeated 495 more times in 61 s]")


def test_numbers_do_not_make_a_message_new_but_other_text_does() -> None:
    """`1 EXISTS` and `2 EXISTS` are one message; a different route is another."""
    handler = Collect()
    handler.addFilter(logs.RateLimit(burst=2))
    for i in range(10):
        handler.handle(_record("untagged %s", f"{i} EXISTS".encode()))
    for route in ("a", "b", "c"):
        handler.handle(_record("submit route=%s failed", route))
    assert len(handler.lines) == 2 + 3


def test_rate_limit_state_stays_bounded() -> None:
    """A server inventing a new line each time cannot grow the limiter without bound."""
    limit = logs.RateLimit(max_keys=100)
    for i in range(5000):
        limit.filter(_record(f"garbage {chr(0x4E00 + i)}", created=1000 + i / 1000))
    assert len(limit._windows) <= 100


def test_every_form_of_a_secret_is_scrubbed() -> None:
    """Raw, IMAP-quoted, str and bytes repr, base64 of AUTH PLAIN/LOGIN: all become ***."""
    scrubber = logs.Scrubber(["signing-key"], [("bob@x.test", PASSWORD)])
    quoted = '"pa\\"ss\\\\wo rd"'
    plain = base64.b64encode(f"\0bob@x.test\0{PASSWORD}".encode()).decode()
    for text in (PASSWORD, quoted, repr(PASSWORD), repr(quoted.encode()), plain,
                 base64.b64encode(PASSWORD.encode()).decode(), "signing-key"):  # fmt: skip
        handler = Collect()
        handler.addFilter(scrubber)
        handler.handle(_record("sending: LOGIN bob %s", text))
        assert "***" in handler.lines[0], text
        assert "pa" not in handler.lines[0].replace("LOGIN", ""), handler.lines[0]
        assert "signing-key" not in handler.lines[0]


def test_traceback_walls_are_cut() -> None:
    """A RecursionError 1000 frames deep is logged in a handful of lines."""

    # Alternating frames, so Python's own "[Previous line repeated]" does not fold them.
    def ping(n: int) -> int:
        return pong(n + 1) + 1

    def pong(n: int) -> int:
        return ping(n + 1) + 1

    handler = Collect()
    handler.addFilter(logs.Scrubber())
    try:
        ping(0)
    except RecursionError:
        record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Fatal error", (),
                                   sys.exc_info())  # fmt: skip
    handler.handle(record)
    assert len(handler.lines[0].splitlines()) < 25
    assert "lines of traceback cut" in handler.lines[0]
    assert "RecursionError" in handler.lines[0]


def test_library_loggers_are_quiet_unless_debug() -> None:
    """aioimaplib's INFO is dropped at info level and shown at debug."""
    logs.install("info", None, [])
    assert not logging.getLogger("aioimaplib.aioimaplib").isEnabledFor(logging.INFO)
    logs.install("debug", None, [])
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        assert logging.getLogger("aioimaplib.aioimaplib").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(level)
        logs.install("info", None, [])


async def test_debug_login_never_shows_the_password(root_debug: Collect) -> None:
    """A real IMAP login at debug level: neither the raw nor the quoted password is logged."""
    logs.install("debug", _config_with_password(), [root_debug])
    async with ImapServer() as server:
        session = ImapSession(replace(plain_endpoint(server.port), password=PASSWORD))
        try:
            await session.open()
        finally:
            session.close()
        assert any(b"LOGIN" in c for c in server.commands)
    text = "\n".join(root_debug.lines)
    assert "LOGIN" in text
    for form in logs.secret_forms(PASSWORD):
        assert form not in text, form


async def test_demo_log_has_no_untagged_chatter_and_no_password(tmp_path: Path) -> None:
    """The demo's log after several probes: probe lines, no `ignored untagged response`."""
    users = {"alice@demo.test": PASSWORD, "bob@demo.test": "bob-pw"}
    async with EmbeddedMailService(users) as mail:
        config = _embedded_config(mail)
        with _log_to(tmp_path / "mailprobe.log", logging.INFO, config):
            agent = Agent(config, serve_http=False)
            task = asyncio.ensure_future(agent.watchers.watches["alice"].watcher.run())
            try:
                assert await agent.watchers.wait_up(["alice"], 10)
                for _ in range(3):
                    result = await round_trip(agent, config.routes[0], timeout=10)
                    assert result.status is Status.OK
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await agent.watchers.close()
    text = (tmp_path / "mailprobe.log").read_text()
    assert "probe route=b2a" in text
    assert "ignored untagged response" not in text
    assert PASSWORD not in text


def _config_with_password() -> Config:
    ca_file = Path(tempfile.mkdtemp(prefix="mailprobe-test-ca-")) / "ca.pem"
    ca_file.write_bytes(trustme.CA().cert_pem.bytes())
    return make_config(
        {
            "bob": account(
                "bob@x.test",
                PASSWORD,
                host="127.0.0.1",
                smtp_port=1,
                imap_port=1,
                ca_file=ca_file,
            )
        },
        [{"name": "r", "from": "bob", "to": "bob"}],
    )


def _embedded_config(mail: EmbeddedMailService) -> Config:
    common = {"host": mail.host, "smtp_port": mail.smtp_port, "imap_port": mail.imap_port,
              "ca_file": mail.ca_file}  # fmt: skip
    return make_config(
        {
            "alice": account("alice@demo.test", PASSWORD, **common),
            "bob": account("bob@demo.test", "bob-pw", **common),
        },
        [{"name": "b2a", "from": "bob", "to": "alice", "interval": "1h"}],
    )
