"""Real SMTP and IMAP clients (aiosmtplib, aioimaplib) set up against the embedded service."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from email.message import EmailMessage

import aioimaplib
import aiosmtplib

from mailprobe.agent.demo.service import EmbeddedMailService

TIMEOUT = 5.0


def client_tls(service: EmbeddedMailService) -> ssl.SSLContext:
    """A client context that trusts only the service's throwaway CA and checks host names."""
    return ssl.create_default_context(cafile=str(service.ca_file))


def message(sender: str, recipient: str, subject: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg.set_content("probe body\n")
    return msg


def smtp_client(service: EmbeddedMailService, *, implicit_tls: bool = False) -> aiosmtplib.SMTP:
    """An unconnected aiosmtplib client for submission (STARTTLS) or implicit TLS.

    local_hostname and tls_context are given so aiosmtplib starts no helper thread.
    """
    return aiosmtplib.SMTP(
        hostname=service.host,
        port=service.smtps_port if implicit_tls else service.smtp_port,
        use_tls=implicit_tls,
        start_tls=not implicit_tls,
        tls_context=client_tls(service),
        local_hostname="client.demo.test",
        timeout=TIMEOUT,
    )


async def submit(
    service: EmbeddedMailService,
    user: str,
    recipient: str,
    *,
    subject: str = "hello",
    implicit_tls: bool = False,
) -> str:
    """Log in as `user` and submit one message to `recipient`; returns the end-of-DATA reply."""
    client = smtp_client(service, implicit_tls=implicit_tls)
    async with client:
        await client.login(user, service.users[user])
        _, reply = await client.send_message(message(user, recipient, subject))
    return reply


async def imap_connect(
    service: EmbeddedMailService,
    *,
    implicit_tls: bool = False,
    on_lost: Callable[[Exception | None], None] | None = None,
) -> aioimaplib.IMAP4:
    """An IMAP client past the greeting and, on the plain port, past STARTTLS.

    aioimaplib 2.0.3 has no STARTTLS method: send the command, upgrade the transport with
    loop.start_tls, then read the capabilities again.
    """
    tls = client_tls(service)
    if implicit_tls:
        ssl_client = aioimaplib.IMAP4_SSL(
            service.host, service.imaps_port, timeout=TIMEOUT, ssl_context=tls
        )
        await ssl_client.wait_hello_from_server()
        return ssl_client
    client = aioimaplib.IMAP4(
        service.host, service.imap_port, timeout=TIMEOUT, conn_lost_cb=on_lost
    )
    await client.wait_hello_from_server()
    protocol = client.protocol
    response = await asyncio.wait_for(
        protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)),
        TIMEOUT,
    )
    assert response.result == "OK", response
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport, protocol, tls, server_hostname=service.host
    )
    await asyncio.wait_for(protocol.capability(), TIMEOUT)
    return client


async def imap_login(
    service: EmbeddedMailService,
    user: str,
    *,
    implicit_tls: bool = False,
    on_lost: Callable[[Exception | None], None] | None = None,
) -> aioimaplib.IMAP4:
    """An IMAP client logged in as `user` with INBOX selected."""
    client = await imap_connect(service, implicit_tls=implicit_tls, on_lost=on_lost)
    response = await client.login(user, service.users[user])
    assert response.result == "OK", response
    response = await client.select("INBOX")
    assert response.result == "OK", response
    return client


async def uids(client: aioimaplib.IMAP4) -> list[int]:
    """UIDs in the selected mailbox, after a NOOP so the session has seen new mail."""
    await client.noop()
    response = await client.uid_search("ALL")
    assert response.result == "OK", response
    return [int(uid) for uid in response.lines[0].split()]


async def wait_exists(client: aioimaplib.IMAP4, timeout: float = TIMEOUT) -> list[bytes]:
    """IDLE until the server pushes EXISTS; returns the pushed lines."""
    idle = await client.idle_start(timeout=timeout)
    try:
        while True:
            pushed = await client.wait_server_push(timeout=timeout)
            if isinstance(pushed, list) and any(line.endswith(b"EXISTS") for line in pushed):
                return pushed
    finally:
        client.idle_done()
        await asyncio.wait_for(idle, timeout)


async def header_of(client: aioimaplib.IMAP4, uid: int) -> bytes:
    """The header block of one message, fetched without setting \\Seen."""
    response = await client.uid("fetch", str(uid), "(BODY.PEEK[HEADER])")
    assert response.result == "OK", response
    return bytes(next(line for line in response.lines if isinstance(line, bytearray)))


async def poll_uids(client: aioimaplib.IMAP4, want: int = 1, attempts: int = 100) -> list[int]:
    """NOOP + UID SEARCH every 10 ms, as the agent's watcher does, until `want` UIDs show."""
    found: list[int] = []
    for _ in range(attempts):
        found = await uids(client)
        if len(found) >= want:
            break
        await asyncio.sleep(0.01)
    return found


async def refuses_connection(host: str, port: int) -> bool:
    """True when a TCP connect to host:port is refused."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False
