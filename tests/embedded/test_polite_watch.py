"""Polite watching on a real IMAP server (pymap, in-process): the budget holds, arrivals carry a
bound that holds the truth, prompt pushes stand in for looks, the junk folder is watched."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.probe import Status
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.runtime import Agent
from mailprobe.probes.imap import Arrival, MailboxWatcher, WatchPolicy
from mailprobe.probes.imap_session import ImapEndpoint
from mailprobe.probes.poll import HANDLING, Budget, Schedule, Sparse
from mailprobe.probes.stamp import Push
from mailprobe.probes.tls import client_context
from tests.embedded.test_agent import config_for
from tests.helpers.clients import imap_login
from tests.helpers.configs import SECRET
from tests.helpers.waits import wait_until
from tests.hostile.harness import probe

BOX = "polite@demo.test"
FAST = {"reconnect_min": 0.05, "reconnect_max": 0.4, "idle_refresh": 5.0}


@dataclass
class Watched:
    """A running watcher, the send times it awaits, and what it reported."""

    watcher: MailboxWatcher = field(init=False)
    awaited: set[float] = field(default_factory=set)
    arrivals: list[Arrival] = field(default_factory=list)

    def expect(self, sent_at: float) -> None:
        """A probe sent at ``sent_at`` is on its way: watch closely."""
        self.awaited.add(sent_at)
        self.watcher.wake()

    def seen(self, arrival: Arrival) -> None:
        self.arrivals.append(arrival)
        self.awaited = {s for s in self.awaited if abs(s - arrival.stamp.sent_at) > 1e-3}


@asynccontextmanager
async def watched(service: EmbeddedMailService, policy: WatchPolicy) -> AsyncIterator[Watched]:
    """A watcher on BOX; stopped and logged out after."""
    endpoint = ImapEndpoint(host=service.host, port=service.imap_port, security="starttls",
                            username=BOX, password=service.users[BOX],
                            tls_context=client_context(service.ca_file), timeout=3.0)  # fmt: skip
    w = Watched()
    watcher = MailboxWatcher(
        endpoint, SECRET.encode(), w.seen, lambda s: None, awaited=lambda: list(w.awaited),
        policy=policy, agent_id="agent-a",
    )  # fmt: skip
    w.watcher = watcher
    task = asyncio.ensure_future(watcher.run())
    try:
        await wait_until(lambda: watcher.up, 5, "the watcher up")
        yield w
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.close()


def session_commands(service: EmbeddedMailService) -> int:
    """Commands the server has received from the watcher's (latest) session."""
    return service.imap_stats().per_session[-1]


async def test_a_probe_that_never_comes_costs_no_more_than_its_budget() -> None:
    """20 commands a probe: the looks stop while the probe's handling still fits, and they were
    looks (more than a few), not silence."""
    budget = Budget(per_probe=20, per_minute=100)
    policy = WatchPolicy(budget=budget, schedule=Schedule(window=2.0),
                         sparse=Sparse(count=1, first=1.0, until=1.5), **FAST)  # type: ignore[arg-type]  # fmt: skip
    async with EmbeddedMailService({BOX: "pw"}) as service, watched(service, policy) as w:
        await asyncio.sleep(0.2)
        before = session_commands(service)
        w.expect(time.time())
        await asyncio.sleep(3.0)
        spent = session_commands(service) - before
    # The IDLE the watcher goes back to is counted by the server when it starts: one more.
    assert 8 <= spent <= budget.per_probe - HANDLING + 1


async def test_no_minute_holds_more_than_the_minute_budget() -> None:
    """12 commands a minute: however many looks a probe's schedule would like, the server gets
    at most 12 in these seconds, the login's included."""
    budget = Budget(per_probe=100, per_minute=12)
    policy = WatchPolicy(budget=budget, schedule=Schedule(window=3.0), **FAST)  # type: ignore[arg-type]
    async with EmbeddedMailService({BOX: "pw"}) as service, watched(service, policy) as w:
        w.expect(time.time())
        await asyncio.sleep(3.5)
        assert session_commands(service) <= budget.per_minute


async def test_the_stated_bound_holds_the_moment_of_delivery() -> None:
    """Delivered 0.3 s after sending: the stamp's bracket overlaps the delivery itself."""
    policy = WatchPolicy(**FAST)  # type: ignore[arg-type]
    async with EmbeddedMailService({BOX: "pw"}) as service, watched(service, policy) as w:
        for _ in range(3):
            sent = time.time()
            stamp, raw = probe("r", agent="agent-a", sent_at=sent, recipient=BOX)
            w.expect(sent)
            await asyncio.sleep(0.3)
            before = time.time()
            await service.deliver(BOX, raw)
            after = time.time()
            await wait_until(lambda s=stamp: any(a.stamp == s for a in w.arrivals), 5, "it")
            arrival = next(a for a in w.arrivals if a.stamp == stamp)
            assert arrival.error is not None
            assert arrival.error < 0.1
            assert arrival.arrived_at - arrival.error <= after + 0.001
            assert arrival.arrived_at + arrival.error >= before - 0.001


async def test_prompt_pushes_stand_in_for_the_looks() -> None:
    """pymap pushes new mail at once: after three probes the session trusts IDLE, and the next
    probe costs a handful of commands instead of a look every 44 ms, its bound still small."""
    policy = WatchPolicy(**FAST)  # type: ignore[arg-type]
    async with EmbeddedMailService({BOX: "pw"}) as service, watched(service, policy) as w:

        async def one(delay: float) -> tuple[Arrival, int]:
            sent = time.time()
            stamp, raw = probe("r", agent="agent-a", sent_at=sent, recipient=BOX)
            before = session_commands(service)
            w.expect(sent)
            await asyncio.sleep(delay)
            await service.deliver(BOX, raw)
            await wait_until(lambda: any(a.stamp == stamp for a in w.arrivals), 5, "the probe")
            await asyncio.sleep(0.1)
            found = next(a for a in w.arrivals if a.stamp == stamp)
            return found, session_commands(service) - before

        for _ in range(5):
            if w.watcher.push.state is not Push.UNKNOWN:
                break
            await one(0.2)
        assert w.watcher.push.state is Push.PROMPT
        arrival, commands = await one(0.8)
        assert arrival.error is not None
        assert arrival.error <= 0.05
        # IDLE, SEARCH, FETCH, STORE, EXPUNGE, the IDLE after: no looks in 0.8 s (they would be 18).
        assert commands <= HANDLING + 2


async def test_a_probe_filed_as_spam_is_found_reported_junked_and_only_it_is_removed() -> None:
    """Junk holds ordinary mail, another agent's probe and, later, our own: ours is reported
    junked with its delay and removed; the other two keep their place and their flags."""
    async with EmbeddedMailService({BOX: "pw"}) as service:
        client = await imap_login(service, BOX)
        await client.create("Junk")
        spam = b"From: x@spam.test\r\nTo: polite@demo.test\r\nSubject: win\r\n\r\nbuy\r\n"
        await client.append(spam, mailbox="Junk")
        _, foreign = probe("r", agent="agent-b", sent_at=time.time(), recipient=BOX)
        await client.append(foreign, mailbox="Junk")
        policy = WatchPolicy(junk_folder="Junk", sparse=Sparse(count=2, first=1.0, until=3.0),
                             **FAST)  # type: ignore[arg-type]  # fmt: skip
        async with watched(service, policy) as w:
            sent = time.time()
            stamp, raw = probe("r", agent="agent-a", sent_at=sent, recipient=BOX)
            w.expect(sent)
            await asyncio.sleep(0.3)
            await client.append(raw, mailbox="Junk")
            await wait_until(lambda: any(a.stamp == stamp for a in w.arrivals), 6, "the probe")
            inbox = probe("r", agent="agent-a", sent_at=time.time(), recipient=BOX)
            w.expect(inbox[0].sent_at)
            await service.deliver(BOX, inbox[1])
            await wait_until(lambda: len(w.arrivals) == 2, 5, "the inbox probe")
        junked, delivered = w.arrivals
        assert (junked.junked, delivered.junked) == (True, False)
        assert junked.error is not None
        assert abs(junked.arrived_at - (sent + 0.3)) <= junked.error + 0.01
        await client.select("Junk")
        response = await client.uid("fetch", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        text = b"".join(x for x in response.lines if isinstance(x, bytes | bytearray)).decode()
        await client.logout()
    assert len(re.findall(r"\d+ FETCH \(", text)) == 2  # the spam, the other agent's probe
    assert "Subject: win" in text
    assert "\\Seen" not in text
    assert "\\Deleted" not in text


async def test_without_a_junk_folder_arrivals_say_junk_was_not_watched() -> None:
    """No folder marked \\Junk and none configured: an inbox arrival's junked is None."""
    policy = WatchPolicy(**FAST)  # type: ignore[arg-type]
    async with EmbeddedMailService({BOX: "pw"}) as service, watched(service, policy) as w:
        stamp, raw = probe("r", agent="agent-a", sent_at=time.time(), recipient=BOX)
        w.expect(stamp.sent_at)
        await service.deliver(BOX, raw)
        await wait_until(lambda: bool(w.arrivals), 5, "the probe")
    assert w.arrivals[0].junked is None


async def test_the_agent_keeps_and_exports_each_arrival_bound_and_what_the_watcher_spent(
    mail: EmbeddedMailService,
) -> None:
    """A round trip: its record carries the bound, the histogram counts each, the commands are
    counted per account, and the junk counter exists at 0 for the route."""
    config = config_for(mail)
    agent = Agent(config, serve_http=False)
    task = asyncio.ensure_future(agent.run())
    try:
        assert await agent.watchers.wait_up(["alice"], 10)
        result = await round_trip(agent, config.routes[0], timeout=10)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
    assert result.status is Status.OK
    assert result.arrival_error_seconds is not None
    assert result.arrival_error_seconds < 0.1
    got = agent.registry.get_sample_value
    # One bound a seen arrival (the route's grid may have sent one of its own at start).
    received = got("mailprobe_probes_received_total", {"route": "a2b"})
    assert got("mailprobe_arrival_error_seconds_count", {"route": "a2b"}) == received >= 1
    assert (got("mailprobe_imap_commands_total", {"account": "alice"}) or 0) > 0
    assert got("mailprobe_probes_junked_total", {"route": "a2b"}) == 0
