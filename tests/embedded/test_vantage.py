"""The vantage point an agent probes from: in its probes' signed headers, on /metrics, in its
ledger (issue 14 item 1), against the embedded SMTP + IMAP servers."""

from __future__ import annotations

import asyncio
from email import message_from_bytes

from aioimaplib import aioimaplib

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.config import Config
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Status
from mailprobe.agent.runtime import Agent
from mailprobe.agent.vantage import META_KEY, Vantage, from_meta
from mailprobe.probes.message import HEADER_VANTAGE, verify_probe
from mailprobe.probes.tls import client_context
from tests.helpers.configs import SECRET, account, make_config
from tests.helpers.waits import wait_until

USERS = {"alice@demo.test": "alice-pw", "bob@demo.test": "bob-pw"}


def config_for(svc: EmbeddedMailService, **agent: object) -> Config:
    common = {"host": svc.host, "ca_file": svc.ca_file, "smtp_port": svc.smtp_port,
              "imap_port": svc.imap_port}  # fmt: skip
    return make_config(
        {"alice": account("alice@demo.test", "alice-pw", **common),
         "bob": account("bob@demo.test", "bob-pw", **common)},
        [{"name": "a2b", "from": "bob", "to": "alice", "interval": "1d"}],
        **agent,
    )  # fmt: skip


async def inbox(mail: EmbeddedMailService, user: str) -> list[bytes]:
    """Every message in the user's INBOX, whole."""
    client = aioimaplib.IMAP4_SSL(mail.host, mail.imaps_port,
                                  ssl_context=client_context(mail.ca_file))  # fmt: skip
    await client.wait_hello_from_server()
    await client.login(user, USERS[user])
    await client.select("INBOX")
    response = await client.fetch("1:*", "(BODY.PEEK[])")
    await client.logout()
    lines = response.lines
    return [bytes(lines[i + 1]) for i, line in enumerate(lines)
            if isinstance(line, bytes) and b"FETCH (" in line and i + 1 < len(lines)]  # fmt: skip


async def test_probe_is_signed_with_the_configured_vantage(mail: EmbeddedMailService) -> None:
    """A probe of an agent with agent.vantage carries the vantage in a signed v3 header."""
    agent = Agent(config_for(mail, vantage={"name": "berlin", "site": "hq"}), serve_http=False)
    record = await agent.probe(agent.config.routes[0])
    assert record is not None
    assert record.status is Status.SENT
    await wait_until(lambda: mail.pending_deliveries == 0, 5, "the probe delivered")
    (raw,) = await inbox(mail, "alice@demo.test")
    assert message_from_bytes(raw)[HEADER_VANTAGE] == "berlin"
    stamp = verify_probe(raw, SECRET.encode())
    assert stamp is not None
    assert (stamp.probe_id, stamp.agent, stamp.vantage) == (record.probe_id, agent.identity,
                                                            "berlin")  # fmt: skip


async def test_without_a_vantage_probes_stay_v2(mail: EmbeddedMailService) -> None:
    """No vantage configured: no vantage header, so agents of before read the probes still."""
    agent = Agent(config_for(mail), serve_http=False)
    assert await agent.probe(agent.config.routes[0]) is not None
    await wait_until(lambda: mail.pending_deliveries == 0, 5, "the probe delivered")
    (raw,) = await inbox(mail, "alice@demo.test")
    assert HEADER_VANTAGE not in message_from_bytes(raw)
    stamp = verify_probe(raw, SECRET.encode())
    assert stamp is not None
    assert (stamp.agent, stamp.vantage) == (agent.identity, None)


def test_vantage_and_quorum_are_exported_as_an_info_series_and_a_gauge(
    mail: EmbeddedMailService,
) -> None:
    """mailprobe_vantage_info carries name, site and region; mailprobe_quorum fleet.quorum."""
    config = config_for(mail, vantage={"name": "paris", "site": "dc2", "region": "eu-west"})
    config = config.model_copy(update={"fleet": config.fleet.model_copy(update={"quorum": 3})})
    agent = Agent(config, serve_http=False)
    labels = {"vantage": "paris", "site": "dc2", "region": "eu-west"}
    assert agent.registry.get_sample_value("mailprobe_vantage_info", labels) == 1.0
    assert agent.registry.get_sample_value("mailprobe_quorum") == 3.0


def test_an_unnamed_vantage_is_called_by_the_agent_identity(mail: EmbeddedMailService) -> None:
    """Without agent.vantage the vantage is the agent's stable identity, site and region empty;
    the quorum is the default 2."""
    agent = Agent(config_for(mail), serve_http=False)
    assert agent.vantage == Vantage(agent.identity)
    labels = {"vantage": agent.identity, "site": "", "region": ""}
    assert agent.registry.get_sample_value("mailprobe_vantage_info", labels) == 1.0
    assert agent.registry.get_sample_value("mailprobe_quorum") == 2.0


async def test_the_ledger_names_the_vantage_its_agent_ran_as(mail: EmbeddedMailService) -> None:
    """Each start writes the vantage into the ledger's meta table; a later start under another
    name overwrites it, and nothing else of the ledger changes."""
    config = config_for(mail, vantage={"name": "berlin", "region": "eu-central"})
    for runs, name in enumerate(("berlin", "munich"), start=1):
        vantage = config.agent.vantage.model_copy(update={"name": name})
        agent = Agent(config.model_copy(update={"agent": config.agent.model_copy(
            update={"vantage": vantage})}), serve_http=False)  # fmt: skip
        task = asyncio.ensure_future(agent.run())
        await asyncio.wait_for(agent.ready.wait(), 10)
        agent.stop()
        await asyncio.wait_for(task, 10)
        with Ledger.open_readonly(config.agent.state_dir / LEDGER_FILE) as ledger:
            assert from_meta(ledger.meta(META_KEY)) == Vantage(name, "", "eu-central")
            assert len(ledger.runs()) == runs
