"""Servers that will not let probes be removed, or keep changing the mailbox's identity."""

from __future__ import annotations

import logging

import pytest

from mailprobe.probes.imap import WatchPolicy
from mailprobe.probes.poll import Schedule
from tests.helpers.waits import wait_until

from .harness import FAST, plain_endpoint, probe, watching
from .imap_modes import ByeAfterSelect, NoUidplus, RefusesExpunge, RefusesMove, RefusesStore
from .imap_server import ImapServer


def _unremoved_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "probes are left in" in r.getMessage()]


@pytest.mark.parametrize(
    ("server_class", "move_to", "why"),
    [
        (RefusesStore, None, "refused"),
        (RefusesExpunge, None, "refused"),
        (RefusesMove, "Measured", "refused"),
        (NoUidplus, None, "unsupported"),
    ],
)
async def test_probes_the_server_will_not_remove_are_counted_and_warned_once_per_session(
    server_class: type[ImapServer],
    move_to: str | None,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each probe left behind is counted; one warning per session says how many so far."""
    stamps = [probe(f"r{i}") for i in range(3)]
    server = server_class([raw for _, raw in stamps])
    policy = WatchPolicy(reconnect_min=0.05, reconnect_max=0.4, move_to=move_to)
    async with server, watching(plain_endpoint(server.port), policy=policy) as (w, rec, _):
        await wait_until(lambda: len(rec.arrivals) == 3, 5, "three arrivals")
        await server.deliver(probe("late")[1])
        await wait_until(lambda: len(rec.arrivals) == 4, 5, "the fourth arrival")
    assert w.unremoved == 4
    assert [reason for _, reason in rec.unremoved] == [why] * 4
    assert len(server.live()) == 4
    [warning] = _unremoved_warnings(caplog)
    assert "(1 so far)" in warning.getMessage()
    assert rec.reasons == []


async def test_reconnects_warn_again_once_each_session(caplog: pytest.LogCaptureFixture) -> None:
    """A new session that again cannot remove probes warns again, with the running count."""
    server = RefusesStore([probe("r0")[1]])
    async with server, watching(plain_endpoint(server.port)) as (w, rec, _):
        await wait_until(lambda: w.unremoved == 1, 5, "first probe left")
        w.session.close()  # type: ignore[union-attr]
        await wait_until(lambda: w.up and len(rec.reconnects) == 1, 5, "reconnected")
        await server.deliver(probe("r1")[1])
        await wait_until(lambda: w.unremoved == 2, 5, "second probe left")
    messages = [r.getMessage() for r in _unremoved_warnings(caplog)]
    assert len(messages) == 2
    assert "(2 so far)" in messages[1]


async def test_foreign_probes_are_fetched_once_across_reconnects() -> None:
    """Another agent's probe is fetched once per UIDVALIDITY, not at every reconnect."""
    server = ByeAfterSelect([probe(agent="agent-b")[1]])
    policy = WatchPolicy(reconnect_min=0.02, reconnect_max=0.05, schedule=Schedule(window=0.0))
    async with (
        server,
        watching(plain_endpoint(server.port), policy=policy, agent_id="agent-a") as (
            w,
            rec,
            _,
        ),
    ):
        await wait_until(lambda: len(server.connections) >= 8, 10, "eight sessions")
        server.calm = True
        await wait_until(lambda: w.up and server._idlers, 5, "a session that stays")
    fetches = [c for c in server.commands if b"UID FETCH" in c]
    uidvalidities = {100 + n // 2 for n in range(1, len(server.connections) + 1)}
    # One fetch per mailbox identity seen; sessions within one UIDVALIDITY do not refetch.
    assert len(fetches) <= len(uidvalidities)
    assert len(fetches) < len(server.connections)
    assert w.foreign_seen == len(fetches)
    assert rec.arrivals == []
    assert set(rec.reconnects) == {"connect"}


async def test_changing_uidvalidity_reports_own_probe_again_without_crashing() -> None:
    """A new UIDVALIDITY means new UIDs: a probe the server kept is seen again, nothing breaks."""
    stamp, raw = probe()
    server = type("KeepsAndForgets", (NoUidplus, ByeAfterSelect), {})([raw])
    async with server, watching(plain_endpoint(server.port), policy=FAST) as (w, rec, _):
        await wait_until(lambda: len(rec.arrivals) >= 2, 10, "the probe twice")
    assert {a.stamp for a in rec.arrivals} == {stamp}
    assert w.unremoved == len(rec.arrivals)
