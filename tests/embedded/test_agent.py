"""The agent against the embedded SMTP + IMAP servers (real aiosmtpd and pymap on loopback)."""

from __future__ import annotations

import asyncio
import shutil
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aioimaplib import aioimaplib

from mailprobe.agent.config import Config
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.probe import Status
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.runtime import Agent
from mailprobe.probes.message import build_probe
from mailprobe.probes.tls import client_context
from tests.helpers.agents import scrape
from tests.helpers.clock import FakeClock
from tests.helpers.configs import SECRET, account, make_config
from tests.helpers.waits import wait_until

USERS = {"alice@demo.test": "alice-pw", "bob@demo.test": "bob-pw"}


def config_for(
    svc: EmbeddedMailService, *, security: str = "starttls", bob_pw: str = "bob-pw", **route: Any
) -> Config:
    tls = security == "tls"
    ports = {"smtp_port": svc.smtps_port if tls else svc.smtp_port,
             "imap_port": svc.imaps_port if tls else svc.imap_port}  # fmt: skip
    common = {"host": svc.host, "ca_file": svc.ca_file, "smtp_security": security,
              "imap_security": security, **ports}  # fmt: skip
    return make_config(
        {
            "alice": account("alice@demo.test", "alice-pw", **common),
            "bob": account("bob@demo.test", bob_pw, **common),
        },
        [{"name": "a2b", "from": "bob", "to": "alice", "interval": "1m", **route}],
    )


async def started(agent: Agent) -> asyncio.Task[None]:
    task = asyncio.ensure_future(agent.run())
    assert await agent.watchers.wait_up(["alice"], 10), "watcher did not come up"
    return task


def sample(agent: Agent, name: str, **labels: str) -> float:
    value = agent.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_round_trip_is_measured_and_exported(
    mail: EmbeddedMailService, security: str
) -> None:
    """A probe goes out, is seen in the mailbox, and its delay shows on /metrics."""
    agent = Agent(config_for(mail, security=security))
    task = await started(agent)
    try:
        result = await round_trip(agent, agent.config.routes[0], timeout=10)
        assert result.status is Status.OK, result
        assert result.delay_seconds is not None
        assert 0 < result.delay_seconds < 1
        assert {"smtp_connect", "smtp_tls", "smtp_auth", "smtp_submit", "delivery"} <= set(
            result.phases
        )
        text = await scrape(agent)
        # The route loop may have sent its own probe meanwhile: compare the counts, not 1.
        received = sample(agent, "mailprobe_probes_received_total", route="a2b")
        assert received >= 1
        assert f'mailprobe_probes_received_total{{route="a2b"}} {received}' in text
        assert f'mailprobe_delivery_delay_seconds_count{{route="a2b"}} {received}' in text
        assert 'mailprobe_up{protocol="imap",route="a2b"} 1.0' in text
        assert (
            'mailprobe_tls_cert_expiry_timestamp_seconds{account="alice",protocol="imap"}' in text
        )
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)


async def test_wrong_password_fails_with_auth(mail: EmbeddedMailService) -> None:
    """Refused credentials: failed in smtp_auth with reason auth and the server's 535."""
    agent = Agent(config_for(mail, bob_pw="wrong"))
    result = await round_trip(agent, agent.config.routes[0], timeout=5)
    assert (result.status, result.phase, result.reason) == (Status.FAILED, "smtp_auth", "auth")
    assert result.reply_code == 535
    assert sample(agent, "mailprobe_probes_failed_total", route="a2b", phase="smtp_auth",
                  reason="auth") == 1  # fmt: skip


async def test_refused_recipient_is_rejected(mail: EmbeddedMailService) -> None:
    """A recipient the server does not know: rejected at RCPT with 550."""
    config = config_for(mail)
    nobody = config.accounts["alice"].model_copy(update={"address": "nobody@demo.test"})
    config = config.model_copy(update={"accounts": {**config.accounts, "alice": nobody}})
    agent = Agent(config)
    result = await round_trip(agent, config.routes[0], timeout=5)
    assert (result.status, result.reason, result.reply_code) == (Status.FAILED, "rejected", 550)


async def test_smtp_down_fails_with_connect(mail: EmbeddedMailService) -> None:
    """Nobody listening on the submission port: reason connect, SMTP marked down."""
    await mail.set_outage("smtp", down=True)
    agent = Agent(config_for(mail))
    result = await round_trip(agent, agent.config.routes[0], timeout=5)
    assert (result.status, result.phase, result.reason) == (
        Status.FAILED,
        "smtp_connect",
        "connect",
    )
    assert sample(agent, "mailprobe_up", route="a2b", protocol="smtp") == 0


async def test_watcher_reconnects_after_imap_outage(mail: EmbeddedMailService) -> None:
    """The IMAP side goes away under an idling watcher: it notices, reconnects, probes succeed."""
    agent = Agent(config_for(mail))
    task = await started(agent)
    try:
        await mail.set_outage("imap", down=True)
        await wait_until(lambda: sample(agent, "mailprobe_up", route="a2b", protocol="imap") == 0,
                         5, "imap down")  # fmt: skip
        await mail.set_outage("imap", down=False)
        assert await agent.watchers.wait_up(["alice"], 15)
        result = await round_trip(agent, agent.config.routes[0], timeout=10)
        assert result.status is Status.OK
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)


async def _imap(mail: EmbeddedMailService, user: str) -> aioimaplib.IMAP4_SSL:
    client = aioimaplib.IMAP4_SSL(mail.host, mail.imaps_port,
                                  ssl_context=client_context(mail.ca_file))  # fmt: skip
    await client.wait_hello_from_server()
    await client.login(user, USERS[user])
    await client.select("INBOX")
    return client


async def _snapshot(client: aioimaplib.IMAP4_SSL) -> dict[bytes, tuple[bytes, bytes]]:
    """Message-ID -> (flags line, full bytes) for every message in the mailbox."""
    response = await client.fetch("1:*", "(FLAGS BODY.PEEK[])")
    out: dict[bytes, tuple[bytes, bytes]] = {}
    lines = response.lines
    for i, line in enumerate(lines):
        if isinstance(line, bytes) and b"FETCH (" in line and i + 1 < len(lines):
            body = bytes(lines[i + 1])
            mid = str(message_from_bytes(body)["Message-ID"]).strip().encode()
            flags = line[line.index(b"FLAGS") : line.index(b")", line.index(b"FLAGS")) + 1]
            # \Recent belongs to the session, not the message: only stored flags count.
            out[mid] = (flags.replace(b"\\Recent", b"").replace(b" )", b")"), body)
    return out


async def test_foreign_and_forged_mail_is_never_touched(mail: EmbeddedMailService) -> None:
    """After many probes, ordinary mail and forged probes are all still there, unchanged."""
    context = client_context(mail.ca_file)
    kw = {"hostname": mail.host, "port": mail.smtp_port, "start_tls": True,
          "tls_context": context, "username": "bob@demo.test", "password": "bob-pw"}  # fmt: skip
    for i in range(3):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "bob@demo.test", "alice@demo.test", f"hello {i}"
        msg["Message-ID"] = f"<ordinary-{i}@demo.test>"
        msg.set_content(f"ordinary mail {i}\n")
        await aiosmtplib.send(msg, **kw)
    for i, secret in enumerate((b"not-our-secret", SECRET.encode())):
        _, raw = build_probe(secret=secret, route="a2b", sender="bob@demo.test",
                             recipient="alice@demo.test", sent_at=1_800_000_000.0 + i)  # fmt: skip
        if secret == SECRET.encode():  # a genuine signature over other fields: tamper the route
            raw = raw.replace(b"X-Mailprobe-Route: a2b", b"X-Mailprobe-Route: evil")
        raw = raw.replace(b"Message-ID: <", f"Message-ID: <forged-{i}-".encode(), 1)
        await aiosmtplib.send(raw, sender="bob@demo.test", recipients=["alice@demo.test"], **kw)
    reader = await _imap(mail, "alice@demo.test")
    await wait_until(lambda: mail.pending_deliveries == 0, 5, "deliveries")
    before = await _snapshot(reader)
    assert len(before) == 5
    agent = Agent(config_for(mail))
    task = await started(agent)
    try:
        for _ in range(8):
            result = await round_trip(agent, agent.config.routes[0], timeout=10)
            assert result.status is Status.OK
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
    after = await _snapshot(reader)
    await reader.logout()
    assert after == before  # same messages, byte-identical, same flags; every probe removed


@pytest.mark.parametrize(("confirm_retry", "expected"), [(60.0, 10), (15.0, 40)])
async def test_routes_are_probed_on_their_interval_without_waiting(
    mail: EmbeddedMailService, confirm_retry: float, expected: int
) -> None:
    """Injected clock: 10 virtual minutes at a 1 m interval; a failing route is retried sooner."""
    await mail.set_outage("smtp", down=True)  # each probe fails at once; only timing matters
    clock = FakeClock()
    config = config_for(mail, jitter="0s")
    config = config.model_copy(
        update={"sla": config.sla.model_copy(update={"confirm_retry": confirm_retry})}
    )
    agent = Agent(config, clock=clock, serve_http=False)
    task = asyncio.ensure_future(agent.run())
    try:
        for _ in range(600):
            await clock.advance(1.0)
            await asyncio.sleep(0.002)  # let the refused connect come back
        sent = sample(agent, "mailprobe_probes_sent_total", route="a2b")
        assert expected <= sent <= expected + 1, sent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)


async def test_overdue_then_lost_on_the_injected_clock() -> None:
    """A probe accepted but never delivered: overdue after overdue_after, lost after lost_after."""
    async with EmbeddedMailService(USERS, delay=10**6) as held:  # accepts, never delivers
        clock = FakeClock()
        config = config_for(held, overdue_after="1h", lost_after="2h", interval="1d")
        # Keep the receive check quiet, so no confirmation retries add probes of their own.
        sla = config.sla.model_copy(update={"receive_deadline": 3 * 3600.0})
        agent = Agent(config.model_copy(update={"sla": sla}), clock=clock, serve_http=False)
        task = asyncio.ensure_future(agent.run())
        try:
            # The only route's first probe goes at once (its grid phase is 0).
            await wait_until(lambda: agent.inflight == 1, 5, "the probe in flight")
            await clock.advance(3599)
            assert sample(agent, "mailprobe_probes_overdue_total", route="a2b") == 0
            await clock.advance(1)
            assert sample(agent, "mailprobe_probes_overdue_total", route="a2b") == 1
            await clock.advance(3600)
            assert sample(agent, "mailprobe_probes_lost_total", route="a2b") == 1
            assert sample(agent, "mailprobe_probes_overdue_total", route="a2b") == 1
            assert sample(agent, "mailprobe_probes_in_flight", route="a2b") == 0
        finally:
            agent.stop()
            await asyncio.wait_for(task, 10)


async def test_stop_is_prompt_and_releases_the_port(mail: EmbeddedMailService) -> None:
    """stop() ends run() within the grace period and the metrics port is closed afterwards."""
    agent = Agent(config_for(mail))
    task = await started(agent)
    assert agent.http is not None
    port = agent.http.port
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    agent.stop()
    await asyncio.wait_for(task, 10)
    assert loop.time() - t0 < 6
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
async def test_metrics_pass_promtool(mail: EmbeddedMailService, tmp_path: Path) -> None:
    """`promtool check metrics` accepts the exposition after real traffic."""
    agent = Agent(config_for(mail))
    task = await started(agent)
    try:
        await round_trip(agent, agent.config.routes[0], timeout=10)
        text = await scrape(agent)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
    body = text  # the body: scrape() drops the HTTP head
    proc = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate(body.encode())
    assert proc.returncode == 0, out.decode()


async def test_delay_is_split_into_send_and_receive(mail: EmbeddedMailService) -> None:
    """With the service's hosts configured, arrived probes carry send and receive delay."""
    config = config_for(mail)
    accounts = {
        name: acc.model_copy(update={"service_hosts": ("*.embedded.test",)})
        for name, acc in config.accounts.items()
    }
    agent = Agent(config.model_copy(update={"accounts": accounts}))
    task = await started(agent)
    try:
        result = await round_trip(agent, agent.config.routes[0], timeout=10)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
    assert result.status is Status.OK
    assert result.send_delay_seconds is not None
    assert result.receive_delay_seconds is not None
    assert result.accepted_at is not None
    assert result.arrived_at is not None
    # The embedded service files a message before its 250 reaches the agent, so the arrival
    # (a stamp with a stated bound) may come a fraction of a millisecond before accepted_at.
    total = max(0.0, result.arrived_at - result.accepted_at) + (result.arrival_error_seconds or 0.0)
    assert 0 <= result.send_delay_seconds <= total + 1e-9
    assert 0 <= result.receive_delay_seconds <= total + 1e-9
    assert sample(agent, "mailprobe_send_delay_seconds_count", route="a2b") >= 1
    assert sample(agent, "mailprobe_receive_delay_seconds_count", route="a2b") >= 1
