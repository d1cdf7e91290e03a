"""Submission and retrieval through the embedded service with real clients."""

from __future__ import annotations

import asyncio

import aioimaplib
import aiosmtplib
import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers.clients import (
    client_tls,
    header_of,
    imap_connect,
    imap_login,
    message,
    poll_uids,
    smtp_client,
    submit,
    uids,
)

ALICE = "alice@demo.test"
BOB = "bob@demo.test"


async def test_mail_submitted_over_starttls_is_pushed_to_an_idling_recipient(
    mail: EmbeddedMailService,
) -> None:
    """STARTTLS + AUTH submission lands in the recipient's INBOX and IDLE reports EXISTS."""
    imap = await imap_login(mail, BOB)
    try:
        assert await uids(imap) == []
        idle = await imap.idle_start(timeout=5)
        reply = await submit(mail, ALICE, BOB, subject="round trip")
        pushed = await imap.wait_server_push(timeout=5)
        imap.idle_done()
        await asyncio.wait_for(idle, 5)
        assert b"1 EXISTS" in pushed
        assert "queued as" in reply
        [uid] = await uids(imap)
        assert b"Subject: round trip" in await header_of(imap, uid)
    finally:
        await imap.logout()


async def test_mail_over_implicit_tls_ports_is_seen_by_noop_uid_search_polling(
    mail: EmbeddedMailService,
) -> None:
    """SMTPS submission and IMAPS retrieval work; NOOP + UID SEARCH sees the new message."""
    imap = await imap_login(mail, BOB, implicit_tls=True)
    try:
        await submit(mail, ALICE, BOB, implicit_tls=True)
        assert len(await poll_uids(imap)) == 1
    finally:
        await imap.logout()


async def test_delivered_mail_has_delivery_then_submission_received_headers(
    mail: EmbeddedMailService,
) -> None:
    """Like Postfix + Dovecot LMTP: Return-Path, an LMTP Received on top, ESMTPSA below."""
    imap = await imap_login(mail, BOB)
    try:
        await submit(mail, ALICE, BOB)
        [uid] = await poll_uids(imap)
        header = await header_of(imap, uid)
    finally:
        await imap.logout()
    assert header.startswith(b"Return-Path: <alice@demo.test>\r\nReceived: ")
    lmtp = header.index(b"with LMTP")
    esmtpsa = header.index(b"with ESMTPSA")
    assert lmtp < esmtpsa
    assert header.count(b"for <bob@demo.test>;") == 2


async def test_each_user_reads_only_their_own_mail(mail: EmbeddedMailService) -> None:
    """Mail for bob does not show in carol's INBOX."""
    carol = await imap_login(mail, "carol@demo.test")
    bob = await imap_login(mail, BOB)
    try:
        await submit(mail, ALICE, BOB)
        assert len(await poll_uids(bob)) == 1
        assert await uids(carol) == []
    finally:
        await carol.logout()
        await bob.logout()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_smtp_accepts_auth_mechanism(
    mail: EmbeddedMailService, mechanism: str
) -> None:
    """AUTH PLAIN and AUTH LOGIN both log in with the user's password."""
    client = smtp_client(mail)
    async with client:
        await client.ehlo()
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        response = await auth(ALICE, mail.users[ALICE])
    assert response.code == 235


async def test_smtp_wrong_password_is_refused_with_535(
    mail: EmbeddedMailService,
) -> None:
    """A wrong password gets 535 5.7.8."""
    client = smtp_client(mail)
    async with client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.login(ALICE, "not-the-password")
    assert refused.value.code == 535


async def test_smtp_unknown_recipient_is_refused_with_550_at_rcpt(
    mail: EmbeddedMailService,
) -> None:
    """RCPT TO an address that is not a user gets 550 5.1.1."""
    client = smtp_client(mail)
    async with client:
        await client.login(ALICE, mail.users[ALICE])
        await client.mail(ALICE)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt("nobody@demo.test")
    assert refused.value.code == 550


async def test_smtp_auth_before_starttls_is_refused(mail: EmbeddedMailService) -> None:
    """On the submission port nothing but EHLO/NOOP/STARTTLS/QUIT works before STARTTLS."""
    client = aiosmtplib.SMTP(
        hostname=mail.host,
        port=mail.smtp_port,
        start_tls=False,
        local_hostname="client.demo.test",
        timeout=5,
    )
    async with client:
        await client.ehlo()
        assert not client.supports_extension("auth")
        response = await client.execute_command(b"AUTH", b"PLAIN", b"AGFsaWNlAHg=")
    assert response.code == 530


async def test_smtp_mail_without_auth_is_refused_on_implicit_tls(
    mail: EmbeddedMailService,
) -> None:
    """Submission over implicit TLS still requires AUTH before MAIL FROM."""
    client = smtp_client(mail, implicit_tls=True)
    async with client:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.send_message(message(ALICE, BOB))
    assert refused.value.code == 530


async def test_imap_login_before_starttls_is_refused(mail: EmbeddedMailService) -> None:
    """The STARTTLS port advertises LOGINDISABLED and refuses LOGIN on a plain connection."""
    client = aioimaplib.IMAP4(mail.host, mail.imap_port, timeout=5)
    await client.wait_hello_from_server()
    try:
        assert client.has_capability("LOGINDISABLED")
        response = await client.login(BOB, mail.users[BOB])
        assert response.result != "OK"
    finally:
        await client.logout()


async def test_imap_wrong_password_is_refused(mail: EmbeddedMailService) -> None:
    """IMAP LOGIN with a wrong password is answered NO."""
    client = await imap_connect(mail)
    try:
        response = await client.login(BOB, "not-the-password")
        assert response.result == "NO"
    finally:
        await client.logout()


async def test_server_certificate_validates_against_ca_file_for_localhost(
    mail: EmbeddedMailService,
) -> None:
    """The certificate is valid for the name localhost as well as for 127.0.0.1."""
    client = aiosmtplib.SMTP(
        hostname="localhost",
        port=mail.smtps_port,
        use_tls=True,
        tls_context=client_tls(mail),
        local_hostname="client.demo.test",
        timeout=5,
    )
    async with client:
        response = await client.ehlo()
    assert response.code == 250


async def test_imap_commands_are_counted_per_session_and_by_name(
    mail: EmbeddedMailService,
) -> None:
    """imap_stats() counts every command a session sends, by name and per session."""
    imap = await imap_login(mail, BOB)
    try:
        for _ in range(3):
            await imap.noop()
    finally:
        await imap.logout()
    stats = mail.imap_stats()
    assert stats.by_command["NOOP"] == 3
    assert stats.by_command["LOGOUT"] == 1
    assert stats.per_session == (stats.total,)
