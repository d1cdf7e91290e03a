"""Trouble on demand: refusals, held deliveries and outages."""

from __future__ import annotations

import asyncio
import random
import time

import aiosmtplib
import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers.clients import (
    imap_login,
    message,
    poll_uids,
    refuses_connection,
    smtp_client,
    submit,
    uids,
    wait_exists,
)
from tests.helpers.configs import USERS

ALICE = "alice@demo.test"
BOB = "bob@demo.test"


async def test_fail_rate_one_refuses_every_submission_with_451_and_delivers_nothing() -> None:
    """fail_rate=1: end of DATA is answered 451 4.3.0 and no mailbox changes."""
    async with EmbeddedMailService(USERS, fail_rate=1.0) as service:
        client = smtp_client(service)
        async with client:
            await client.login(ALICE, service.users[ALICE])
            for _ in range(3):
                with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                    await client.send_message(message(ALICE, BOB))
                assert refused.value.code == 451
        assert service.pending_deliveries == 0
        imap = await imap_login(service, BOB)
        try:
            assert await uids(imap) == []
        finally:
            await imap.logout()


async def test_fail_rate_refuses_each_submission_independently() -> None:
    """fail_rate=0.5 with a seeded rng refuses some submissions and accepts the others."""
    async with EmbeddedMailService(USERS, fail_rate=0.5, rng=random.Random(3)) as service:
        client = smtp_client(service)
        codes = []
        async with client:
            await client.login(ALICE, service.users[ALICE])
            for _ in range(12):
                try:
                    await client.send_message(message(ALICE, BOB))
                except aiosmtplib.SMTPDataError as refused:
                    codes.append(refused.code)
                else:
                    codes.append(250)
    assert set(codes) == {250, 451}


async def test_delay_holds_delivery_for_at_least_delay_seconds() -> None:
    """delay=D, delay_fraction=1: the message appears in the mailbox no sooner than D."""
    delay = 0.4
    async with EmbeddedMailService(USERS, delay=delay) as service:
        imap = await imap_login(service, BOB)
        try:
            started = time.monotonic()
            await submit(service, ALICE, BOB)
            assert await uids(imap) == []
            assert service.pending_deliveries == 1
            await wait_exists(imap)
            assert time.monotonic() - started >= delay
            assert len(await uids(imap)) == 1
        finally:
            await imap.logout()


async def test_delay_fraction_zero_delivers_without_holding() -> None:
    """delay_fraction=0: no delivery is held, whatever the delay."""
    async with EmbeddedMailService(USERS, delay=30.0, delay_fraction=0.0) as service:
        imap = await imap_login(service, BOB)
        try:
            await submit(service, ALICE, BOB)
            assert len(await poll_uids(imap)) == 1
        finally:
            await imap.logout()


async def test_stop_cancels_held_deliveries() -> None:
    """A delivery still held when the service stops is dropped, not left running."""
    service = EmbeddedMailService(USERS, delay=30.0)
    async with service:
        await submit(service, ALICE, BOB)
        assert service.pending_deliveries == 1
    assert service.pending_deliveries == 0


async def test_smtp_outage_refuses_connections_drops_sessions_and_recovers_on_same_port(
    mail: EmbeddedMailService,
) -> None:
    """While SMTP is down both submission ports refuse; an open session is closed; up again
    on the same ports, submission works."""
    ports = (mail.smtp_port, mail.smtps_port)
    client = smtp_client(mail)
    await client.connect()
    await client.login(ALICE, mail.users[ALICE])

    await mail.set_outage("smtp", True)
    assert mail.is_down("smtp")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.noop()
    for port in ports:
        assert await refuses_connection(mail.host, port)
    assert not await refuses_connection(mail.host, mail.imap_port)

    await mail.set_outage("smtp", False)
    assert (mail.smtp_port, mail.smtps_port) == ports
    assert "queued as" in await submit(mail, ALICE, BOB)
    assert "queued as" in await submit(mail, ALICE, BOB, implicit_tls=True)


async def test_imap_outage_drops_sessions_refuses_connections_and_recovers_on_same_port(
    mail: EmbeddedMailService,
) -> None:
    """While IMAP is down its sessions end and its ports refuse, yet mail is still accepted;
    up again on the same ports, that mail is in the INBOX."""
    ports = (mail.imap_port, mail.imaps_port)
    lost = asyncio.Event()
    imap = await imap_login(mail, BOB, on_lost=lambda _exc: lost.set())

    await mail.set_outage("imap", True)
    await asyncio.wait_for(lost.wait(), 5)
    for port in ports:
        assert await refuses_connection(mail.host, port)
    await submit(mail, ALICE, BOB)

    await mail.set_outage("imap", False)
    assert not mail.is_down("imap")
    assert (mail.imap_port, mail.imaps_port) == ports
    imap = await imap_login(mail, BOB)
    try:
        assert len(await poll_uids(imap)) == 1
    finally:
        await imap.logout()
