"""OAuth2 sign-in against the real Postfix + Dovecot, with tokens from a local issuer.

Dovecot checks each bearer token itself (its oauth2 passdb validates the JWT's HS256 signature,
issuer and expiry); Postfix's submission authenticates through Dovecot's SASL, so both
protocols see the same check. The issuer (tests/helpers/issuer.py) hands out short-lived tokens
through the grants of msal (client credentials) and google-auth (service account, refresh token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailprobe.agent.config import Config
from mailprobe.agent.probe import Status
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.runtime import Agent
from tests.helpers.configs import make_config
from tests.helpers.issuer import TENANT, Issuer
from tests.helpers.waits import wait_until
from tests.mailstack import MailStack

pytestmark = pytest.mark.integration

SENDER, RECEIVER = "bob@probe.test", "alice@probe.test"
ADDRESSES = {"alice": RECEIVER, "bob": SENDER}


@pytest.fixture
async def issuer(mailstack: MailStack, tmp_path: Path) -> AsyncIterator[Issuer]:
    """The token issuer, signing with the key the stack's Dovecot validates with."""
    issuer = Issuer(tmp_path, mailstack.oauth2_key, mailstack.oauth2_issuer)
    for name, address in ADDRESSES.items():
        secret = f"{name}-app-secret"
        issuer.add_client(f"{name}-app", address, secret=secret)
        os.environ[f"MP_{name.upper()}_APP_SECRET"] = secret
    await issuer.start()
    yield issuer
    await issuer.stop()


def microsoft(issuer: Issuer, name: str, **auth: Any) -> dict[str, Any]:
    """An auth section: the Microsoft flow of `name`'s app, at the local issuer."""
    flow = {"tenant": TENANT, "client_id": f"{name}-app", "authority": issuer.authority,
            "client_secret_env": f"MP_{name.upper()}_APP_SECRET", "ca_file": str(issuer.ca_file)}  # fmt: skip
    return {"microsoft": flow, "timeout": "5s", **auth}


def oauth_config(stack: MailStack, auth: dict[str, dict[str, Any]]) -> Config:
    """alice (receiving) and bob (sending), each signing in with its auth section."""
    accounts = {}
    for name, address in ADDRESSES.items():
        common = {"host": stack.host, "ca_file": str(stack.ca_file), "username": address,
                  "timeout": "5s", "security": "starttls", "auth": auth[name]}  # fmt: skip
        accounts[name] = {
            "address": address,
            "smtp": {**common, "port": stack.submission_port},
            "imap": {**common, "port": stack.imap_port},
        }
    route = {"name": "b2a", "from": "bob", "to": "alice", "interval": "1d"}
    return make_config(accounts, [route], sla={"confirm_retry": "2s"})


class Logs:
    """What Dovecot and Postfix logged since this object was made."""

    def __init__(self, stack: MailStack) -> None:
        self._files = (stack.layout.dovecot_log, stack.layout.postfix_log)
        self._start = [path.stat().st_size if path.exists() else 0 for path in self._files]

    def text(self) -> str:
        return "".join(
            path.read_bytes()[start:].decode(errors="replace")
            for path, start in zip(self._files, self._start, strict=True)
        )


@pytest.fixture
async def running(mailstack: MailStack, issuer: Issuer) -> AsyncIterator[Agent]:
    """An agent signing in with Microsoft-flow tokens, its watcher on alice up."""
    config = oauth_config(mailstack, {n: microsoft(issuer, n) for n in ADDRESSES})
    async with _agent(config) as agent:
        yield agent


@contextlib.asynccontextmanager
async def _agent(config: Config) -> AsyncIterator[Agent]:
    """A running agent whose watcher on alice is up; stopped on the way out."""
    agent = Agent(config, serve_http=False)
    task = asyncio.ensure_future(agent.run())
    try:
        assert await agent.watchers.wait_up(["alice"], 15), agent.watchers.watches
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 15)


@pytest.mark.parametrize(
    ("mechanism", "used"),
    [("xoauth2", "XOAUTH2"), ("oauthbearer", "OAUTHBEARER"), ("auto", "OAUTHBEARER")],
)
async def test_round_trip_signs_in_with_the_mechanism(
    mailstack: MailStack, issuer: Issuer, mechanism: str, used: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Submission and the watcher sign in with XOAUTH2 or OAUTHBEARER (auto: OAUTHBEARER)."""
    logs = Logs(mailstack)
    auth = {n: microsoft(issuer, n, mechanism=mechanism) for n in ADDRESSES}
    async with _agent(oauth_config(mailstack, auth)) as agent:
        result = await round_trip(agent, agent.config.routes[0], timeout=20)
    text = logs.text()
    assert result.status is Status.OK, (result, text)
    assert f"user=<{RECEIVER}>, method={used}" in text  # Dovecot: the watcher's IMAP login
    assert f"sasl_method={used}, sasl_username={SENDER}" in text  # Postfix: the submission
    # Signed in, the session knows UIDPLUS (from the OK's capabilities): the probe is removed.
    assert not mailstack.delivered(RECEIVER, result.probe_id.encode())
    assert sorted(set(issuer.issued)) == [RECEIVER, SENDER]
    assert not any(token in caplog.text for token in issuer.tokens)


async def test_round_trip_with_a_microsoft_certificate(
    mailstack: MailStack, issuer: Issuer
) -> None:
    """msal signs a client assertion with the app's certificate key; the issuer checks it."""
    auth = {}
    for name, address in ADDRESSES.items():
        cert, key = issuer.add_certificate_client(f"{name}-cert-app", address)
        flow = {"tenant": TENANT, "client_id": f"{name}-cert-app", "authority": issuer.authority,
                "certificate_file": str(cert), "private_key_file": str(key),
                "ca_file": str(issuer.ca_file)}  # fmt: skip
        auth[name] = {"microsoft": flow}
    async with _agent(oauth_config(mailstack, auth)) as agent:
        result = await round_trip(agent, agent.config.routes[0], timeout=20)
    assert result.status is Status.OK, result
    assert sorted(set(issuer.issued)) == [RECEIVER, SENDER]


async def test_round_trip_with_google_service_account_and_refresh_token(
    mailstack: MailStack, issuer: Issuer, tmp_path: Path
) -> None:
    """bob signs in through a service account (domain-wide delegation: sub is the mailbox),
    alice through an installed app's refresh token; both grants run in google-auth."""
    key = issuer.add_service_account("prober@mailprobe-tests.iam.gserviceaccount.test")
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(key))
    os.environ["MP_GOOGLE_SECRET"] = "installed-app-secret"
    os.environ["MP_GOOGLE_REFRESH"] = issuer.add_refresh_token(
        "installed-app", "installed-app-secret", RECEIVER
    )
    ca = str(issuer.ca_file)
    auth = {
        "bob": {"google": {"service_account_file": str(key_file), "ca_file": ca}},
        "alice": {"google": {"client_id": "installed-app", "client_secret_env": "MP_GOOGLE_SECRET",
                             "refresh_token_env": "MP_GOOGLE_REFRESH",
                             "token_uri": issuer.token_uri, "ca_file": ca}},
    }  # fmt: skip
    async with _agent(oauth_config(mailstack, auth)) as agent:
        result = await round_trip(agent, agent.config.routes[0], timeout=20)
    assert result.status is Status.OK, result
    assert sorted(issuer.issued) == [RECEIVER, SENDER]


async def test_round_trip_with_command_and_file_tokens(
    mailstack: MailStack, issuer: Issuer, tmp_path: Path
) -> None:
    """bob's token comes from a command (told the login in MAILPROBE_USERNAME), alice's from a
    file that a renewal rewrites; a renewed file is read again."""
    script = tmp_path / "token.py"
    script.write_text(
        "import json, os, sys\n"
        "tokens = json.load(open(sys.argv[1]))\n"
        "print(json.dumps({'access_token': tokens[os.environ['MAILPROBE_USERNAME']],"
        " 'expires_in': 60}))\n"
    )
    table = tmp_path / "tokens.json"
    table.write_text(json.dumps({SENDER: issuer.mint(SENDER, lifetime=60)}))
    token_file = tmp_path / "alice.token"
    token_file.write_text(issuer.mint(RECEIVER, lifetime=60) + "\n")
    auth = {"bob": {"command": [sys.executable, str(script), str(table)]},
            "alice": {"file": str(token_file)}}  # fmt: skip
    async with _agent(oauth_config(mailstack, auth)) as agent:
        result = await round_trip(agent, agent.config.routes[0], timeout=20)
        assert result.status is Status.OK, result
        # Renewed with a token signed by another key: the next login uses it, and fails.
        token_file.write_text(issuer.mint(RECEIVER, lifetime=60, key=b"k" * 32) + "\n")
        watch = agent.watchers.watches["alice"]
        assert mailstack.kick(RECEIVER)
        await wait_until(lambda: watch.away, 15, "the watcher to fail with the renewed token")
        assert watch.error is not None
        assert watch.error.reason == "auth"


async def test_expired_tokens_are_refreshed_without_a_failed_probe(
    mailstack: MailStack, issuer: Issuer
) -> None:
    """Tokens living 4 s over a 14 s test: each sign-in gets a valid one, no probe fails."""
    issuer.lifetime = 4
    config = oauth_config(mailstack, {n: microsoft(issuer, n) for n in ADDRESSES})
    async with _agent(config) as agent:
        watcher = agent.watchers.watches["alice"].watcher
        loop = asyncio.get_running_loop()
        end = loop.time() + 14
        results = []
        while loop.time() < end:
            before = watcher.session
            # A new IMAP login too, with whatever token is current.
            assert mailstack.kick(RECEIVER)
            await wait_until(lambda b=before: watcher.up and watcher.session is not b, 15,
                             "the watcher to sign in again")  # fmt: skip
            results.append(await round_trip(agent, agent.config.routes[0], timeout=20))
            await asyncio.sleep(1.5)
    assert [r.status for r in results] == [Status.OK] * len(results), results
    assert len(results) >= 4
    # Several tokens per mailbox: each expired during the test and was replaced in time.
    assert issuer.issued.count(SENDER) >= 3
    assert issuer.issued.count(RECEIVER) >= 3


async def test_a_token_dovecot_refuses_is_auth(
    mailstack: MailStack, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens signed with a key Dovecot does not know: submission fails in smtp_auth and the
    mailbox cannot be opened, both reason auth, the server's status in the log, never the token."""
    issuer.signing_key = b"not-the-key-dovecot-knows-000000"
    auth = {n: microsoft(issuer, n) for n in ADDRESSES}
    agent = Agent(oauth_config(mailstack, auth), serve_http=False)
    result = await round_trip(agent, agent.config.routes[0], timeout=20)
    assert (result.status, result.phase, result.reason) == (Status.FAILED, "smtp_auth", "auth")
    assert result.reply_code == 535
    assert "SMTP AUTH OAUTHBEARER refused" in caplog.text
    assert "status=invalid_token" in caplog.text  # RFC 7628's error challenge, decoded
    task = asyncio.ensure_future(agent.watchers.watches["alice"].watcher.run())
    try:
        assert not await agent.watchers.wait_up(["alice"], 4)
        error = agent.watchers.watches["alice"].error
        assert error is not None
        assert (error.reason, error.phase) == ("auth", "imap")
        assert "AUTHENTICATE OAUTHBEARER refused" in str(error)
        assert "AUTHENTICATIONFAILED" in str(error)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.watchers.close()
    assert issuer.tokens
    assert not any(token in caplog.text for token in issuer.tokens)


async def test_issuer_down_is_auth_and_the_agent_recovers(
    mailstack: MailStack, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """With the issuer down and the tokens expired, submission and the mailbox fail as auth and
    the log says the issuer is unreachable; once it is back, both work again by themselves."""
    issuer.lifetime = 3
    config = oauth_config(mailstack, {n: microsoft(issuer, n) for n in ADDRESSES})
    async with _agent(config) as agent:
        assert (await round_trip(agent, agent.config.routes[0], timeout=20)).status is Status.OK
        await issuer.stop()
        await asyncio.sleep(3.2)  # every token handed out has expired
        failed = await round_trip(agent, agent.config.routes[0], timeout=20)
        assert (failed.status, failed.phase, failed.reason) == (Status.FAILED, "smtp_auth", "auth")
        assert "the token issuer is unreachable (issuer down?)" in caplog.text
        watch = agent.watchers.watches["alice"]
        assert mailstack.kick(RECEIVER)
        await wait_until(lambda: watch.away, 15, "the mailbox to be down")
        assert watch.error is not None
        assert watch.error.reason == "auth"
        assert "unreachable" in str(watch.error)
        await issuer.start()
        assert await agent.watchers.wait_up(["alice"], 15)
        result = await round_trip(agent, agent.config.routes[0], timeout=20)
        assert result.status is Status.OK, result
