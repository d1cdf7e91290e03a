"""Round trips through a real Postfix + Dovecot: success, each failure reason, held mail, restarts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.config import Config
from mailprobe.agent.probe import Status
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.runtime import Agent
from mailprobe.probes.message import build_probe
from tests.helpers.configs import SECRET, account, make_config
from tests.helpers.waits import wait_until
from tests.mailstack import MailStack

pytestmark = pytest.mark.integration

SENDER, RECEIVER = "bob@probe.test", "alice@probe.test"


def stack_config(
    stack: MailStack, *, security: str = "starttls", password: str | None = None, **route: Any
) -> Config:
    tls = security == "tls"
    common = {
        "host": stack.host,
        "ca_file": stack.ca_file,
        "smtp_security": security,
        "imap_security": security,
        "smtp_port": stack.submissions_port if tls else stack.submission_port,
        "imap_port": stack.imaps_port if tls else stack.imap_port,
    }
    return make_config(
        {
            "alice": account(RECEIVER, stack.users[RECEIVER], **common),
            "bob": account(SENDER, password or stack.users[SENDER], **common),
        },
        [{"name": "b2a", "from": "bob", "to": "alice", "interval": "1d", **route}],
    )


@pytest.fixture
async def running(mailstack: MailStack) -> AsyncIterator[Agent]:
    """An agent watching alice's mailbox (its route loop idles: interval 1d, first probe spread)."""
    agent = Agent(stack_config(mailstack), serve_http=False)
    task = asyncio.ensure_future(agent.run())
    assert await agent.watchers.wait_up(["alice"], 15)
    yield agent
    agent.stop()
    await asyncio.wait_for(task, 15)


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_round_trip_over_tls(mailstack: MailStack, security: str) -> None:
    """Submission + IMAP over STARTTLS and over implicit TLS: delivered in well under a second."""
    agent = Agent(stack_config(mailstack, security=security), serve_http=False)
    task = asyncio.ensure_future(agent.run())
    try:
        assert await agent.watchers.wait_up(["alice"], 15)
        result = await round_trip(agent, agent.config.routes[0], timeout=20)
        assert result.status is Status.OK, result
        assert result.delay_seconds is not None
        assert 0 < result.delay_seconds < 1.0
        assert any("probe.test" in hop for hop in result.received)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 15)


async def test_wrong_password_is_auth(mailstack: MailStack) -> None:
    """Postfix refuses the login (535): reason auth in phase smtp_auth."""
    agent = Agent(stack_config(mailstack, password="wrong-password"), serve_http=False)
    result = await round_trip(agent, agent.config.routes[0], timeout=10)
    assert (result.status, result.phase, result.reason) == (Status.FAILED, "smtp_auth", "auth")
    assert result.reply_code == 535


@pytest.mark.parametrize("code", [550, 450])
async def test_recipient_refused_at_rcpt_is_rejected(mailstack: MailStack, code: int) -> None:
    """A permanent or temporary refusal at RCPT: reason rejected with the server's code."""
    await asyncio.to_thread(mailstack.reject_recipient, RECEIVER, code)
    try:
        agent = Agent(stack_config(mailstack), serve_http=False)
        result = await round_trip(agent, agent.config.routes[0], timeout=10)
    finally:
        await asyncio.to_thread(mailstack.clear_rejects)
    assert (result.status, result.phase, result.reason) == (
        Status.FAILED,
        "smtp_submit",
        "rejected",
    )
    assert result.reply_code == code


async def test_smtp_server_down_is_connect(mailstack: MailStack) -> None:
    """Postfix stopped: the submission fails with reason connect."""
    mailstack.stop_postfix()
    try:
        agent = Agent(stack_config(mailstack), serve_http=False)
        result = await round_trip(agent, agent.config.routes[0], timeout=10)
    finally:
        mailstack.start_postfix()
    assert (result.status, result.phase, result.reason) == (
        Status.FAILED,
        "smtp_connect",
        "connect",
    )


def _probe_once(config_path: Path, *extra: str) -> tuple[int, str, str]:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "probe-once", "--config", str(config_path),
         "--route", "b2a", "--timeout", "20", *extra],
        capture_output=True, text=True, check=False, env=dict(os.environ), timeout=60,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def _write_config(stack: MailStack, tmp_path: Path) -> Path:
    config = stack_config(stack)
    data = config.model_dump(mode="json", by_alias=True, exclude_defaults=False)
    for acc in data["accounts"].values():
        for proto in ("smtp", "imap"):
            for key in [k for k, v in acc[proto].items() if v is None]:
                del acc[proto][key]
    for key in [k for k, v in data["agent"].items() if v is None]:
        del data["agent"][key]
    path = tmp_path / "mailprobe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_probe_once_cli_reports_subsecond_delay(mailstack: MailStack, tmp_path: Path) -> None:
    """`mailprobe probe-once` prints a sub-second delay with Nagios perfdata and JSON; exit 0."""
    path = _write_config(mailstack, tmp_path)
    code, out, err = _probe_once(path)
    assert code == 0, out + err
    assert out.startswith("MAILPROBE OK - route b2a delivered in 0.")
    assert "| delay=" in out
    code, out, err = _probe_once(path, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "ok"
    assert data["delay_seconds"] < 1
    assert data["arrived_at"] > data["sent_at"]
    assert {"smtp_connect", "smtp_tls", "smtp_auth", "smtp_submit"} <= set(data["phases"])


def test_probe_once_cli_imap_down_exits_2(mailstack: MailStack, tmp_path: Path) -> None:
    """Dovecot stopped: probe-once cannot watch the mailbox, says why, exits 2."""
    path = _write_config(mailstack, tmp_path)
    mailstack.stop_dovecot()
    try:
        code, out, _ = _probe_once(path, "--json")
    finally:
        mailstack.start_dovecot()
    assert code == 2
    data = json.loads(out)
    assert (data["status"], data["phase"], data["reason"]) == ("failed", "imap", "connect")


async def test_held_mail_delay_is_measured_within_300ms(mailstack: MailStack) -> None:
    """A probe held in Postfix and released N s after it was sent measures N within 0.3 s."""
    agent = Agent(stack_config(mailstack), serve_http=False)
    agent.extra_headers = {mailstack.hold_header: "yes"}
    # Only the watcher runs: no route loop, so the one held probe is ours.
    task = asyncio.ensure_future(agent.watchers.watches["alice"].watcher.run())
    try:
        assert await agent.watchers.wait_up(["alice"], 15)
        hold = 2.0
        trip = asyncio.ensure_future(round_trip(agent, agent.config.routes[0], timeout=30))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        # Postfix may hold the message before our client has read its 250: wait for both.
        while not (mailstack.held_queue_ids() and agent.inflight):
            assert loop.time() < deadline, "probe was not held"
            await asyncio.sleep(0.01)
        (queue_id,) = mailstack.held_queue_ids()
        (pending,) = agent.books.inflight
        await asyncio.sleep(pending.sent_at + hold - agent.clock.time())
        await asyncio.to_thread(mailstack.release, queue_id)
        result = await trip
        assert result.status is Status.OK, result
        assert result.delay_seconds is not None
        assert abs(result.delay_seconds - hold) <= 0.3, result.delay_seconds
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.watchers.close()


async def test_watcher_survives_dovecot_restart(mailstack: MailStack, running: Agent) -> None:
    """Dovecot restarted under an idling watcher: it reconnects and the next probe succeeds."""
    watcher = running.watchers.watches["alice"].watcher
    before = watcher.session
    await asyncio.to_thread(mailstack.restart_dovecot)
    await wait_until(lambda: watcher.session is not before and watcher.up, 30, "a new session")
    result = await round_trip(running, running.config.routes[0], timeout=20)
    assert result.status is Status.OK, result


def _mailbox(stack: MailStack, address: str) -> dict[str, tuple[str, bytes]]:
    """Message-ID -> (Maildir flags, bytes) for every message in the mailbox."""
    root = stack.maildir(address)
    out: dict[str, tuple[str, bytes]] = {}
    for sub in ("new", "cur"):
        for path in (root / sub).iterdir():
            data = path.read_bytes()
            mid = str(message_from_bytes(data)["Message-ID"]).strip()
            flags = path.name.partition(":2,")[2]
            out[mid] = (flags, data)
    return out


@pytest.fixture
def foreign_mail(mailstack: MailStack) -> Iterator[None]:
    """Ordinary mails (some flagged) and forged probes in alice's INBOX, alone; removed afterwards."""
    for left in mailstack.maildir(RECEIVER).glob("*/*"):  # earlier tests' probes, say
        if left.is_file():
            left.unlink()
    paths = []
    for i, flags in enumerate(("", "\\Seen", "\\Flagged \\Seen", "\\Deleted")):
        body = (f"From: carol@probe.test\r\nTo: {RECEIVER}\r\nSubject: ordinary {i}\r\n"
                f"Message-ID: <ordinary-{i}@probe.test>\r\n\r\nhello {i}\r\n").encode()  # fmt: skip
        paths.append(mailstack.append_raw(RECEIVER, body, flags=flags))
    for i, (secret, tamper) in enumerate(((b"another-agent", False), (SECRET.encode(), True))):
        _, raw = build_probe(secret=secret, route="b2a", sender=SENDER, recipient=RECEIVER,
                             sent_at=1_700_000_000.0 + i)  # fmt: skip
        if tamper:
            raw = raw.replace(b"X-Mailprobe-Route: b2a", b"X-Mailprobe-Route: evil")
        raw = raw.replace(b"Message-ID: <", f"Message-ID: <forged-{i}-".encode(), 1)
        paths.append(mailstack.append_raw(RECEIVER, raw))
    yield
    for mid_path in mailstack.maildir(RECEIVER).glob("*/*"):
        if mid_path.is_file():
            mid_path.unlink()


async def test_foreign_and_forged_mail_untouched_after_many_probes(
    mailstack: MailStack, foreign_mail: None
) -> None:
    """Ordinary mail and forged probes (bad HMAC) stay byte-identical with their flags."""
    before = _mailbox(mailstack, RECEIVER)
    assert len(before) == 6
    agent = Agent(stack_config(mailstack), serve_http=False)
    task = asyncio.ensure_future(agent.run())
    try:
        assert await agent.watchers.wait_up(["alice"], 15)
        for _ in range(12):
            result = await round_trip(agent, agent.config.routes[0], timeout=20)
            assert result.status is Status.OK, result
        # The route's own loop probes too: let its last probe arrive (and be removed).
        await wait_until(lambda: agent.inflight == 0, 20, "the last probe to arrive")
    finally:
        agent.stop()
        await asyncio.wait_for(task, 15)
    after = _mailbox(mailstack, RECEIVER)
    assert after == before  # nothing of ours left behind, nothing of theirs touched
