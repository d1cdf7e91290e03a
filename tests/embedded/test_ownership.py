"""Probe ownership on a shared mailbox (real pymap): each watcher takes only its own probes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.probes.imap import WatchPolicy
from mailprobe.probes.imap_session import ImapEndpoint
from mailprobe.probes.tls import client_context
from tests.helpers.clients import imap_login, uids
from tests.helpers.waits import wait_until
from tests.hostile.harness import probe, watching

BOX = "shared@demo.test"
POLICY = WatchPolicy(reconnect_min=0.05, reconnect_max=0.4, idle_refresh=5.0)


@pytest.fixture
async def shared_box() -> AsyncIterator[EmbeddedMailService]:
    """An embedded service with one mailbox that several agents' watchers share."""
    async with EmbeddedMailService({BOX: "shared-pw"}) as service:
        yield service


def endpoint(svc: EmbeddedMailService) -> ImapEndpoint:
    return ImapEndpoint(host=svc.host, port=svc.imap_port, security="starttls", username=BOX,
                        password="shared-pw", tls_context=client_context(svc.ca_file),
                        timeout=3.0)  # fmt: skip


async def mailbox_uids(svc: EmbeddedMailService) -> list[int]:
    client = await imap_login(svc, BOX)
    try:
        return await uids(client)
    finally:
        await client.logout()


async def test_two_agents_on_one_mailbox_each_get_only_their_own_probes(
    shared_box: EmbeddedMailService,
) -> None:
    """Agents A and B share secret and mailbox: each reports and removes only its probes."""
    ep = endpoint(shared_box)
    async with (
        watching(ep, policy=POLICY, agent_id="agent-a") as (wa, ra, _),
        watching(ep, policy=POLICY, agent_id="agent-b") as (wb, rb, _),
    ):
        await wait_until(lambda: wa.up and wb.up, 5, "both watchers up")
        sent = {"agent-a": [], "agent-b": []}  # type: dict[str, list[str]]
        for i in range(6):
            agent = "agent-a" if i % 2 else "agent-b"
            stamp, raw = probe(f"r{i}", agent=agent, sent_at=time.time())
            sent[agent].append(stamp.probe_id)
            await shared_box.deliver(BOX, raw)
        await wait_until(lambda: len(ra.arrivals) == 3 and len(rb.arrivals) == 3, 10, "arrivals")
        await wait_until(lambda: wa.foreign_seen == 3 and wb.foreign_seen == 3, 5, "foreign")
    assert sorted(a.stamp.probe_id for a in ra.arrivals) == sorted(sent["agent-a"])
    assert sorted(a.stamp.probe_id for a in rb.arrivals) == sorted(sent["agent-b"])
    assert all(not removed for _, removed in ra.foreign + rb.foreign)
    assert await mailbox_uids(shared_box) == []  # every probe removed, each by its owner


async def test_foreign_probe_is_left_alone_and_reported_once(
    shared_box: EmbeddedMailService, caplog: pytest.LogCaptureFixture
) -> None:
    """Another agent's fresh probe stays in the mailbox and is announced once, not per rescan."""
    stamp, raw = probe(agent="agent-b", sent_at=time.time())
    await shared_box.deliver(BOX, raw)
    caplog.set_level(logging.INFO, logger="mailprobe.probes")
    async with watching(endpoint(shared_box), policy=POLICY, agent_id="agent-a") as (w, rec, _):
        await wait_until(lambda: w.foreign_seen == 1, 5, "the foreign probe")
        for i in range(3):  # rescans, with probes of its own coming and going
            _, own_raw = probe(f"own{i}", agent="agent-a", sent_at=time.time())
            w.wake()
            await shared_box.deliver(BOX, own_raw)
            await wait_until(lambda i=i: len(rec.arrivals) == i + 1, 5, "own probe")
        w.session.close()  # type: ignore[union-attr] - a dropped session: reconnect, rescan
        await wait_until(lambda: len(rec.reconnects) == 1 and w.up, 5, "the reconnect")
        await asyncio.sleep(0.2)
    assert rec.foreign == [(stamp, False)]
    assert w.foreign_seen == 1
    assert len(await mailbox_uids(shared_box)) == 1  # only the foreign probe remains
    notices = [r for r in caplog.records if "also holds probes of agent agent-b" in r.message]
    assert len(notices) == 1


async def test_stale_foreign_probe_is_removed_after_max_age(
    shared_box: EmbeddedMailService,
) -> None:
    """A stopped agent's probe goes once it is older than foreign_probe_max_age, counted once."""
    old, old_raw = probe(agent="gone", sent_at=time.time() - 7 * 3600)
    await shared_box.deliver(BOX, old_raw)
    async with watching(endpoint(shared_box), policy=POLICY, agent_id="agent-a") as (w, rec, _):
        await wait_until(lambda: w.foreign_removed == 1, 5, "the stale probe removed")
        assert rec.foreign == [(old, False), (old, True)]
    assert await mailbox_uids(shared_box) == []


async def test_foreign_probe_is_removed_when_it_ages_past_max_age_while_watched(
    shared_box: EmbeddedMailService,
) -> None:
    """A fresh foreign probe stays until max age passes, then goes without a new delivery."""
    policy = WatchPolicy(reconnect_min=0.05, reconnect_max=0.4, foreign_probe_max_age=1.5)
    stamp, raw = probe(agent="agent-b", sent_at=time.time())
    await shared_box.deliver(BOX, raw)
    async with watching(endpoint(shared_box), policy=policy, agent_id="agent-a") as (w, rec, _):
        await wait_until(lambda: w.foreign_seen == 1, 5, "the foreign probe")
        assert len(await mailbox_uids(shared_box)) == 1
        await wait_until(lambda: w.foreign_removed == 1, 6, "removal after max age")
        assert time.time() - stamp.sent_at >= 1.5
        assert rec.arrivals == []
    assert await mailbox_uids(shared_box) == []


async def test_probe_without_identity_is_taken_as_own(shared_box: EmbeddedMailService) -> None:
    """A probe from before agent identities (v1) is reported and removed, as it always was."""
    stamp, raw = probe(sent_at=time.time())
    await shared_box.deliver(BOX, raw)
    async with watching(endpoint(shared_box), policy=POLICY, agent_id="agent-a") as (_, rec, _):
        await wait_until(lambda: len(rec.arrivals) == 1, 5, "the v1 probe")
        assert rec.arrivals[0].stamp == stamp
    assert await mailbox_uids(shared_box) == []


async def test_unverified_probe_is_never_touched_and_warned_once(
    shared_box: EmbeddedMailService, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe signed with another secret stays, and one warning covers the scan."""
    for i in range(3):
        await shared_box.deliver(BOX, probe(f"x{i}", agent="agent-a", secret=b"other")[1])
    async with watching(endpoint(shared_box), policy=POLICY, agent_id="agent-a") as (w, rec, _):
        await wait_until(lambda: "do not verify" in caplog.text, 5, "the warning")
        await asyncio.sleep(0.3)
        assert rec.arrivals == []
        assert w.foreign_seen == 0
    assert len(await mailbox_uids(shared_box)) == 3
    warnings = [r for r in caplog.records if "do not verify" in r.message]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("3 message(s)")


async def test_two_agents_remove_a_stale_probe_once_between_them(
    shared_box: EmbeddedMailService,
) -> None:
    """B has seen A's fresh probes here, so A (the lower identity) removes the dead agent's probe
    at max age and B, waiting its deferral longer, finds it gone: one removal counted, not two."""
    policy = WatchPolicy(reconnect_min=0.05, reconnect_max=0.4, foreign_probe_max_age=20.0)
    ep = endpoint(shared_box)
    async with watching(ep, policy=policy, agent_id="agent-b") as (wb, _, _):
        await wait_until(lambda: wb.up, 5, "B up")
        await shared_box.deliver(BOX, probe("a-fresh", agent="agent-a", sent_at=time.time())[1])
        wb.wake()  # look now rather than when IDLE tells (slow on a loaded machine)
        await wait_until(lambda: wb.foreign_seen == 1, 10, "B sees A's probe")
        async with watching(ep, policy=policy, agent_id="agent-a") as (wa, ra, _):
            await wait_until(lambda: len(ra.arrivals) == 1, 5, "A takes its own probe")
            _, raw = probe(agent="gone", sent_at=time.time() - 18.5)
            await shared_box.deliver(BOX, raw)
            wa.wake()
            wb.wake()
            await wait_until(lambda: wa.foreign_seen == 1 and wb.foreign_seen == 2, 10, "seen")
            assert await mailbox_uids(shared_box) != []
            await wait_until(lambda: wa.foreign_removed == 1, 10, "A removes it at max age")
            await asyncio.sleep(6.5)  # past B's deferral (5 s at this max age) and a scan
            wb.wake()
            await asyncio.sleep(0.5)
    assert (wa.foreign_removed, wb.foreign_removed) == (1, 0)
    assert await mailbox_uids(shared_box) == []
