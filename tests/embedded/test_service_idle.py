"""IDLE reports every delivery, however deliveries and pushes interleave."""

from __future__ import annotations

import asyncio

import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers.clients import imap_login, uids, wait_exists

BOB = "bob@demo.test"


def _raw(subject: str) -> bytes:
    return f"From: alice@demo.test\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


async def test_idle_reports_mail_that_arrived_between_select_and_idle(
    mail: EmbeddedMailService,
) -> None:
    """A message delivered after SELECT but before IDLE is pushed as soon as IDLE starts."""
    imap = await imap_login(mail, BOB)
    try:
        await mail.deliver(BOB, _raw("early"))
        pushed = await wait_exists(imap)
        assert b"1 EXISTS" in pushed
    finally:
        await imap.logout()


@pytest.mark.parametrize("loop_turns", range(6))
async def test_idle_reports_a_delivery_made_while_the_previous_push_is_written(
    mail: EmbeddedMailService, loop_turns: int
) -> None:
    """Two deliveries a few loop turns apart both reach an idling client."""
    imap = await imap_login(mail, BOB)
    try:
        idle = await imap.idle_start(timeout=5)
        await mail.deliver(BOB, _raw("first"))
        for _ in range(loop_turns):
            await asyncio.sleep(0)
        await mail.deliver(BOB, _raw("second"))
        seen: list[bytes] = []
        while b"2 EXISTS" not in seen:
            seen += await imap.wait_server_push(timeout=2)
        imap.idle_done()
        await asyncio.wait_for(idle, 5)
        assert len(await uids(imap)) == 2
    finally:
        await imap.logout()


async def test_deliver_refuses_unknown_users(mail: EmbeddedMailService) -> None:
    """deliver() only knows the service's users."""
    with pytest.raises(KeyError):
        await mail.deliver("nobody@demo.test", _raw("lost"))
