"""The real submit() against SMTP servers that misbehave on purpose.

Each test: submission fails with one ProbeError whose reason is from the fixed vocabulary, within
the configured timeout, and a submission to the honest embedded server right after still works.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.probes.errors import REASONS, ProbeError
from mailprobe.probes.smtp import SmtpEndpoint, submit
from mailprobe.probes.tls import client_context

from .harness import probe
from .smtp_modes import (
    DribbledGreeting,
    DropsAfterGreeting,
    GarbageAfterData,
    GarbageEhloReply,
    GarbageGreeting,
    GreetThenSilent,
    NeverGreets,
    TenMegabyteReply,
)
from .smtp_server import SmtpServer

TIMEOUT = 0.5
HONEST = "honest@demo.test"


@pytest.fixture
async def honest() -> AsyncIterator[EmbeddedMailService]:
    async with EmbeddedMailService({HONEST: "honest-pw"}) as service:
        yield service


def endpoint(port: int) -> SmtpEndpoint:
    return SmtpEndpoint(host="127.0.0.1", port=port, security="plain", username="u",
                        password="p", tls_context=ssl.create_default_context(),
                        timeout=TIMEOUT, helo_name="client.test")  # fmt: skip


async def honest_submission_works(service: EmbeddedMailService) -> None:
    ep = SmtpEndpoint(host=service.host, port=service.smtp_port, security="starttls",
                      username=HONEST, password="honest-pw",
                      tls_context=client_context(service.ca_file), timeout=2.0,
                      helo_name="client.test")  # fmt: skip
    _, raw = probe("honest", recipient=HONEST)
    result = await submit(ep, HONEST, HONEST, raw)
    assert result.reply_code == 250


@pytest.mark.parametrize(
    ("server_class", "reason", "phase"),
    [
        (GreetThenSilent, "timeout", "smtp_connect"),
        (NeverGreets, "timeout", "smtp_connect"),
        (DribbledGreeting, "timeout", "smtp_connect"),
        (GarbageGreeting, "protocol", "smtp_connect"),
        (GarbageEhloReply, "protocol", "smtp_connect"),
        (TenMegabyteReply, "protocol", "smtp_connect"),
        (DropsAfterGreeting, "connect", "smtp_connect"),
        (GarbageAfterData, "protocol", "smtp_submit"),
    ],
)
async def test_hostile_smtp_server_fails_submission_with_a_fixed_reason(
    server_class: type[SmtpServer], reason: str, phase: str, honest: EmbeddedMailService
) -> None:
    """One ProbeError with the right reason and phase, bounded by the timeout; honest SMTP works."""
    async with server_class() as server:
        started = time.monotonic()
        with pytest.raises(ProbeError) as failed:
            await submit(endpoint(server.port), "a@x.test", "b@y.test", probe()[1])
        elapsed = time.monotonic() - started
    assert failed.value.reason == reason, failed.value
    assert failed.value.reason in REASONS
    assert failed.value.phase == phase
    assert elapsed < 4 * TIMEOUT + 1.0  # per-phase timeouts, never a hang
    await honest_submission_works(honest)


async def test_many_silent_servers_at_once_leave_no_tasks_behind(
    honest: EmbeddedMailService,
) -> None:
    """Twenty concurrent submissions to a silent server all time out; no task outlives them."""
    before = len(asyncio.all_tasks())
    async with GreetThenSilent() as server:
        outcomes = await asyncio.gather(
            *(submit(endpoint(server.port), "a@x", "b@y", probe()[1]) for _ in range(20)),
            return_exceptions=True,
        )
    assert all(isinstance(o, ProbeError) and o.reason == "timeout" for o in outcomes), outcomes
    assert len(asyncio.all_tasks()) <= before
    await honest_submission_works(honest)
