"""TLS failures against the real Postfix and Dovecot: a CA the agent does not trust is `tls`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trustme

from mailprobe.agent.probe import Status
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.runtime import Agent
from tests.mailstack import MailStack

from .test_roundtrip import stack_config

UNTRUSTED = "unable to get local issuer certificate"


def _stranger_ca(tmp_path: Path) -> Path:
    path = tmp_path / "stranger-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def _agent(stack: MailStack, security: str, ca_file: Path) -> Agent:
    config = stack_config(stack, security=security)
    accounts = {
        name: acc.model_copy(update={
            "smtp": acc.smtp.model_copy(update={"ca_file": ca_file}),  # type: ignore[union-attr]
            "imap": acc.imap.model_copy(update={"ca_file": ca_file}),  # type: ignore[union-attr]
        })
        for name, acc in config.accounts.items()
    }  # fmt: skip
    return Agent(config.model_copy(update={"accounts": accounts}), serve_http=False)


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_postfix_certificate_from_an_untrusted_ca_is_tls(
    mailstack: MailStack, tmp_path: Path, security: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Submission to Postfix whose CA the agent does not trust: failed in smtp_tls, reason tls."""
    agent = _agent(mailstack, security, _stranger_ca(tmp_path))
    result = await round_trip(agent, agent.config.routes[0], timeout=10)
    assert (result.status, result.phase, result.reason) == (Status.FAILED, "smtp_tls", "tls")
    assert UNTRUSTED in caplog.text


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_dovecot_certificate_from_an_untrusted_ca_is_tls(
    mailstack: MailStack, tmp_path: Path, security: str
) -> None:
    """The watcher on Dovecot with a CA it does not trust: down with tls and OpenSSL's reason."""
    agent = _agent(mailstack, security, _stranger_ca(tmp_path))
    task = asyncio.ensure_future(agent.watchers.watches["alice"].watcher.run())
    try:
        assert not await agent.watchers.wait_up(["alice"], 3)
        error = agent.watchers.watches["alice"].error
        assert error is not None
        assert error.reason == "tls"
        assert UNTRUSTED in str(error)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.watchers.close()
