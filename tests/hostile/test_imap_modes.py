"""The real watcher against IMAP servers that misbehave on purpose.

Each test: the watcher's session fails with a reason from the fixed vocabulary (or copes), nothing
escapes the watcher (it is still running at the end), it reconnects, and a watcher on an honest
server in the same event loop keeps reporting probes.
"""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from mailprobe.probes.errors import ProbeError
from mailprobe.probes.imap_session import ImapSession
from tests.helpers.waits import wait_until

from .harness import honest_mailbox, plain_endpoint, probe, watching
from .imap_modes import (
    ByeAtRandom,
    CapabilityNotUtf8,
    CapabilityNotUtf8AfterLogin,
    EndlessGreeting,
    FFInternaldate,
    FFReceived,
    GarbageGreeting,
    GiantLiteral,
    HugeUidvalidity,
    LiesAboutIdle,
    LoginThenDrop,
    Slowloris,
    TenMegabyteLine,
    UnexpectedTag,
    UntaggedFlood,
)
from .imap_server import ImapServer


async def _fails_with(server: ImapServer, reason: str, *, timeout: float = 1.0) -> None:
    """The watcher's sessions fail with `reason`, it keeps reconnecting, the honest one works."""
    async with (
        honest_mailbox() as honest,
        server,
        watching(plain_endpoint(server.port, timeout=timeout)) as (_, rec, _),
    ):
        await wait_until(lambda: len(rec.reconnects) >= 3, 10, "three reconnects")
        assert set(rec.reasons) == {reason}, [str(e) for e in rec.errors]
        assert set(rec.reconnects) == {reason}
        assert len(server.connections) >= 3
        await honest.still_works()


async def test_garbage_greeting_is_a_protocol_failure() -> None:
    """Binary garbage instead of `* OK`: protocol, and no greeting task error is left behind."""
    await _fails_with(GarbageGreeting(), "protocol")


async def test_greeting_without_line_end_is_cut_at_the_line_limit() -> None:
    """4 MiB with no CRLF is refused at max_literal, not buffered until the timeout."""
    await _fails_with(EndlessGreeting(), "protocol", timeout=5.0)


async def test_slowloris_greeting_times_out() -> None:
    """A greeting dribbled a byte at a time is a timeout after the endpoint's timeout."""
    await _fails_with(Slowloris(), "timeout", timeout=0.5)


async def test_ten_megabyte_line_is_a_protocol_failure() -> None:
    """A 10 MB response line ends the session as protocol at 1 MiB."""
    await _fails_with(TenMegabyteLine(), "protocol", timeout=5.0)


async def test_huge_uidvalidity_is_a_protocol_failure() -> None:
    """`[UIDVALIDITY <5000 digits>]` never reaches int(): protocol."""
    await _fails_with(HugeUidvalidity(), "protocol")


async def test_capability_that_is_not_utf8_is_a_protocol_failure() -> None:
    """A 0xFF byte in the CAPABILITY response (inside aioimaplib's decode) is protocol."""
    await _fails_with(CapabilityNotUtf8(), "protocol")


async def test_capability_not_utf8_after_login_is_a_protocol_failure() -> None:
    """`OK [CAPABILITY ... \\xff]` after LOGIN raises inside aioimaplib; caught as protocol."""
    await _fails_with(CapabilityNotUtf8AfterLogin(), "protocol")


async def test_server_that_lies_about_idle_is_a_protocol_failure() -> None:
    """IDLE advertised but answered NO ends the session at once as protocol (not a timeout)."""
    await _fails_with(LiesAboutIdle(), "protocol", timeout=5.0)


async def test_unexpected_tagged_response_is_a_protocol_failure() -> None:
    """A tagged reply to no command of ours (aioimaplib raises Abort in data_received)."""
    await _fails_with(UnexpectedTag(), "protocol")


async def test_untagged_flood_is_bounded() -> None:
    """100k untagged lines without a tagged reply pass the budget: protocol, then reconnect."""
    await _fails_with(UntaggedFlood(), "protocol", timeout=5.0)


async def test_two_gigabyte_literal_is_refused_without_memory_growth() -> None:
    """A {2000000000} announcement fails the session before any of it is buffered; the
    message is not fetched again after the reconnect, so the watcher is up for good."""
    server = GiantLiteral([probe()[1]])
    tracemalloc.start()
    try:
        async with server, watching(plain_endpoint(server.port, timeout=5.0)) as (w, rec, _):
            await wait_until(lambda: len(rec.states) >= 3 and w.up, 10, "fail, then up again")
            _, peak = tracemalloc.get_traced_memory()
            await asyncio.sleep(0.5)
            assert [up for up, _ in rec.states] == [True, False, True]
            assert len(server.connections) == 2
    finally:
        tracemalloc.stop()
    assert rec.reasons == ["protocol"]
    assert "2000000000-byte literal" in str(rec.errors[0])
    assert peak < 24 << 20, f"peak traced memory {peak / 2**20:.1f} MiB"


async def test_login_then_drop_backs_off_instead_of_retrying_every_reconnect_min() -> None:
    """A session that dies right after LOGIN counts toward backoff: gaps between logins grow."""
    server = LoginThenDrop()
    async with server, watching(plain_endpoint(server.port)) as (watcher, rec, _):
        await wait_until(lambda: len(server.logins) >= 6, 10, "six logins")
    gaps = [b - a for a, b in zip(server.logins, server.logins[1:], strict=False)]
    policy = watcher.policy
    # 0.05, 0.1, 0.2, 0.4 (capped): without the rule every gap would be ~reconnect_min.
    assert gaps[2] > 3 * policy.reconnect_min, gaps
    assert gaps[-1] >= policy.reconnect_max * 0.9, gaps
    assert set(rec.reconnects) == {"connect"}


async def test_bye_at_random_reconnects_and_still_reports_the_probe() -> None:
    """BYE at random moments: reason connect each time, and the probe is reported in the end."""
    stamp, raw = probe()
    server = ByeAtRandom([raw])
    async with (
        honest_mailbox() as honest,
        server,
        watching(plain_endpoint(server.port)) as (_, rec, _),
    ):
        await wait_until(lambda: any(a.stamp == stamp for a in rec.arrivals), 10, "the probe")
        await wait_until(lambda: len(rec.reconnects) >= 2, 10, "reconnects")
        assert set(rec.reasons) <= {"connect"}
        await honest.still_works()


async def test_internaldate_with_byte_ff_still_reports_the_probe() -> None:
    """A garbled INTERNALDATE is no date, not an error: the probe is reported, no reconnect."""
    stamp, raw = probe()
    server = FFInternaldate([raw])
    async with server, watching(plain_endpoint(server.port)) as (_, rec, _):
        await wait_until(lambda: bool(rec.arrivals), 5, "the probe")
        assert rec.arrivals[0].stamp == stamp
        assert rec.arrivals[0].internaldate is None
        assert rec.reasons == []


async def test_received_header_with_bytes_not_utf8_reaches_the_agent_as_clean_text() -> None:
    """A server-written Received header with 0xFF: the probe is reported, its text encodable."""
    stamp, raw = probe()
    server = FFReceived([raw])
    async with server, watching(plain_endpoint(server.port)) as (_, rec, _):
        await wait_until(lambda: bool(rec.arrivals), 5, "the probe")
    assert rec.arrivals[0].stamp == stamp
    [received] = rec.arrivals[0].received
    received.encode("utf-8")  # no lone surrogates: safe for the ledger and the log
    assert "\ufffd" in received
    assert "mx" in received


async def test_failed_sessions_leave_no_tasks_behind() -> None:
    """Dozens of failed sessions later, the number of tasks on the loop has not grown."""
    server = UnexpectedTag()
    async with server, watching(plain_endpoint(server.port)) as (_, rec, _):
        await wait_until(lambda: len(rec.reconnects) >= 3, 10, "first reconnects")
        before = len(asyncio.all_tasks())
        await wait_until(lambda: len(rec.reconnects) >= 12, 15, "more reconnects")
        assert len(asyncio.all_tasks()) <= before + 2


async def test_session_open_raises_only_probe_errors() -> None:
    """open() against each hostile greeting raises ProbeError, never the library's own errors."""
    for server in (GarbageGreeting(), HugeUidvalidity(), CapabilityNotUtf8AfterLogin()):
        async with server:
            session = ImapSession(plain_endpoint(server.port))
            try:
                with pytest.raises(ProbeError) as raised:
                    await session.open()
                assert raised.value.reason == "protocol"
            finally:
                session.close()
