"""Run the real MailboxWatcher against a server and record what it reports."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.probes.errors import REASONS, ProbeError
from mailprobe.probes.imap import Arrival, MailboxWatcher, WatchHooks, WatchPolicy
from mailprobe.probes.imap_session import ImapEndpoint
from mailprobe.probes.message import ProbeStamp, build_probe, new_probe_id
from mailprobe.probes.poll import Schedule
from mailprobe.probes.tls import client_context
from tests.helpers.configs import SECRET
from tests.helpers.waits import wait_until

#: Short bounds so the whole hostile suite runs in seconds.
FAST = WatchPolicy(
    reconnect_min=0.05, reconnect_max=0.4, idle_refresh=5.0, schedule=Schedule(window=5.0)
)
USER = "probe@hostile.test"


def plain_endpoint(port: int, *, timeout: float = 1.0, max_literal: int = 1 << 20) -> ImapEndpoint:
    return ImapEndpoint(
        host="127.0.0.1",
        port=port,
        security="plain",
        username=USER,
        password="pw",
        tls_context=ssl.create_default_context(),
        timeout=timeout,
        max_literal=max_literal,
    )


def probe(route: str = "r1", *, agent: str | None = None, sent_at: float = 1_800_000_000.0,
          secret: bytes = SECRET.encode(), recipient: str = USER) -> tuple[ProbeStamp, bytes]:  # fmt: skip
    return build_probe(secret=secret, route=route, sender="a@hostile.test", recipient=recipient,
                       sent_at=sent_at, probe_id=new_probe_id(), agent=agent)  # fmt: skip


@dataclass
class Record:
    """What one watcher reported, in order."""

    arrivals: list[Arrival] = field(default_factory=list)
    states: list[tuple[bool, ProbeError | None]] = field(default_factory=list)
    reconnects: list[str] = field(default_factory=list)
    unremoved: list[tuple[ProbeStamp, str]] = field(default_factory=list)
    foreign: list[tuple[ProbeStamp, bool]] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [e.reason for up, e in self.states if not up and e is not None]

    @property
    def errors(self) -> list[ProbeError]:
        return [e for up, e in self.states if e is not None]


@asynccontextmanager
async def watching(
    endpoint: ImapEndpoint,
    *,
    policy: WatchPolicy = FAST,
    agent_id: str | None = None,
    secret: bytes = SECRET.encode(),
) -> AsyncIterator[tuple[MailboxWatcher, Record, asyncio.Task[None]]]:
    """A running watcher; on exit it must still be running (nothing escaped), then it is stopped."""
    rec = Record()
    hooks = WatchHooks(
        on_reconnect=rec.reconnects.append,
        on_unremoved=lambda stamp, why: rec.unremoved.append((stamp, why)),
        on_foreign=lambda stamp, removed: rec.foreign.append((stamp, removed)),
    )
    watcher = MailboxWatcher(
        endpoint,
        secret,
        rec.arrivals.append,
        lambda state: rec.states.append((state.up, state.error)),
        policy=policy,
        agent_id=agent_id,
        hooks=hooks,
    )
    task = asyncio.ensure_future(watcher.run())
    try:
        yield watcher, rec, task
        assert not task.done(), f"the watcher ended: {task.exception() if task.done() else ''}"
        assert all(r in REASONS for r in rec.reasons + rec.reconnects), rec.reasons
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.close()


@asynccontextmanager
async def honest_mailbox() -> AsyncIterator[HonestCheck]:
    """A watcher on the embedded (pymap) service, to show a good mailbox keeps working beside."""
    async with EmbeddedMailService({HONEST: "honest-pw"}) as service:
        endpoint = ImapEndpoint(
            host=service.host,
            port=service.imap_port,
            security="starttls",
            username=HONEST,
            password="honest-pw",
            tls_context=client_context(service.ca_file),
            timeout=2.0,
        )
        async with watching(endpoint) as (watcher, rec, _):
            await wait_until(lambda: watcher.up, 5, "the honest watcher to log in")
            yield HonestCheck(service, rec)


HONEST = "honest@demo.test"


@dataclass
class HonestCheck:
    """Deliver a probe to the honest mailbox and see it reported."""

    service: EmbeddedMailService
    record: Record

    async def still_works(self) -> None:
        stamp, raw = probe("honest", recipient=HONEST)
        await self.service.deliver(HONEST, raw)
        await wait_until(
            lambda: any(a.stamp == stamp for a in self.record.arrivals), 5, "the honest probe"
        )
        assert self.record.reasons == [], self.record.reasons
