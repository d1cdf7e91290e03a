"""TLS failures are reason `tls`, on SMTP and on IMAP, with the verification error in the message.

Certificates: expired, issued for another host, issued by a CA the client does not trust; and
STARTTLS not offered, refused, or answered and then not spoken (stripped by something between).
A good certificate from the same CA works, so the matrix is not failing for another reason.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from mailprobe.probes.errors import ProbeError, TLSError
from mailprobe.probes.imap_session import ImapEndpoint, ImapSession
from mailprobe.probes.smtp import SmtpEndpoint, submit
from mailprobe.probes.tls import client_context
from tests.helpers.waits import wait_until

from .certs import CASES, HOST, VERIFY_TEXT, Certs, make_certs
from .harness import USER, probe, watching
from .imap_server import Conn, ImapServer
from .smtp_server import SmtpServer


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


def smtp_endpoint(port: int, security: str, ca_file: Path) -> SmtpEndpoint:
    return SmtpEndpoint(host=HOST, port=port, security=security, username="u",  # type: ignore[arg-type]
                        password="p", tls_context=client_context(ca_file), timeout=2.0,
                        helo_name="client.test")  # fmt: skip


def imap_endpoint(port: int, security: str, ca_file: Path) -> ImapEndpoint:
    return ImapEndpoint(host=HOST, port=port, security=security, username=USER,  # type: ignore[arg-type]
                        password="pw", tls_context=client_context(ca_file), timeout=2.0)  # fmt: skip


def _server_args(security: str, context: ssl.SSLContext) -> dict[str, ssl.SSLContext]:
    return {"implicit" if security == "tls" else "starttls": context}


class SmtpRefusesStarttls(SmtpServer):
    async def on_starttls(self, writer: asyncio.StreamWriter) -> bool:
        await self.send(writer, b"454 4.7.0 TLS not available due to local problem\r\n")
        return False


class SmtpStripsStarttls(SmtpServer):
    """Says 220 to STARTTLS, then answers the TLS hello in plain text (TLS stripped between)."""

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        await super().session(reader, writer)

    async def on_starttls(self, writer: asyncio.StreamWriter) -> bool:
        await self.send(writer, b"220 2.0.0 go ahead\r\n")
        await self._reader.read(4096)  # the client's TLS hello
        await self.send(writer, b"500 5.5.2 unrecognised command\r\n")
        return False


class SmtpNoStarttls(SmtpServer):
    def extensions(self, tls: bool) -> list[bytes]:
        return [b"AUTH PLAIN"]


class ImapRefusesStarttls(ImapServer):
    async def on_starttls(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(tag + b" NO STARTTLS is out of order\r\n")


class ImapStripsStarttls(ImapServer):
    async def on_starttls(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(tag + b" OK begin TLS\r\n")
        await conn.reader.read(4096)  # the client's TLS hello
        await conn.send(b"* BAD that was not a command\r\n")


class ImapNoStarttls(ImapServer):
    def capabilities(self, conn: Conn) -> bytes:
        return b"IMAP4rev1 IDLE UIDPLUS"


# -- SMTP -------------------------------------------------------------------------------------
@pytest.mark.parametrize("security", ["tls", "starttls"])
@pytest.mark.parametrize("case", CASES)
async def test_smtp_certificate_failures_are_tls(certs: Certs, security: str, case: str) -> None:
    """Expired, wrong host, unknown CA: reason tls in smtp_tls, the OpenSSL reason in the text."""
    async with SmtpServer(**_server_args(security, certs.bad[case])) as server:
        with pytest.raises(ProbeError) as failed:
            await submit(smtp_endpoint(server.port, security, certs.ca_file), "a@x", "b@y", b"x")
    assert isinstance(failed.value, TLSError)
    assert (failed.value.reason, failed.value.phase) == ("tls", "smtp_tls")
    assert VERIFY_TEXT[case] in str(failed.value)


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_smtp_good_certificate_submits(certs: Certs, security: str) -> None:
    """The same CA's good certificate is accepted: the failures above are the certificates'."""
    async with SmtpServer(**_server_args(security, certs.good)) as server:
        ep = smtp_endpoint(server.port, security, certs.ca_file)
        result = await submit(ep, "a@x", "b@y", probe()[1])
    assert result.queue_id == "HOSTILE1"
    assert result.cert_not_after is not None


@pytest.mark.parametrize(
    ("server_class", "text"),
    [
        (SmtpNoStarttls, "does not offer STARTTLS"),
        (SmtpRefusesStarttls, "454"),
        (SmtpStripsStarttls, "wrong version number"),
    ],
)
async def test_smtp_starttls_missing_refused_or_stripped_is_tls(
    certs: Certs, server_class: type[SmtpServer], text: str
) -> None:
    """No STARTTLS offered, 454 to it, or plain text after its 220: reason tls, never sent."""
    async with server_class(starttls=certs.good) as server:
        ep = smtp_endpoint(server.port, "starttls", certs.ca_file)
        with pytest.raises(ProbeError) as failed:
            await submit(ep, "a@x", "b@y", probe()[1])
        assert server.accepted == []
    assert (failed.value.reason, failed.value.phase) == ("tls", "smtp_tls"), failed.value
    assert text in str(failed.value)


# -- IMAP -------------------------------------------------------------------------------------
@pytest.mark.parametrize("security", ["tls", "starttls"])
@pytest.mark.parametrize("case", CASES)
async def test_imap_certificate_failures_are_tls(certs: Certs, security: str, case: str) -> None:
    """The watcher's sessions fail with tls and the verification error; no LOGIN is sent."""
    kwargs = {"tls" if security == "tls" else "starttls": certs.bad[case]}
    server = ImapServer(**kwargs)
    async with server, watching(imap_endpoint(server.port, security, certs.ca_file)) as (_, rec, _):
        await wait_until(lambda: len(rec.reconnects) >= 2, 10, "two reconnects")
    assert set(rec.reasons) == {"tls"}
    assert VERIFY_TEXT[case] in str(rec.errors[0])
    assert server.logins == []


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_imap_good_certificate_logs_in(certs: Certs, security: str) -> None:
    """The good certificate from the same CA gives a working session."""
    server = ImapServer(**{"tls" if security == "tls" else "starttls": certs.good})
    async with server, watching(imap_endpoint(server.port, security, certs.ca_file)) as (w, _, _):
        await wait_until(lambda: w.up, 5, "the session")
        assert w.cert_not_after is not None


@pytest.mark.parametrize(
    ("server_class", "text"),
    [
        (ImapNoStarttls, "does not offer STARTTLS"),
        (ImapRefusesStarttls, "STARTTLS refused"),
        (ImapStripsStarttls, "STARTTLS handshake"),
    ],
)
async def test_imap_starttls_missing_refused_or_stripped_is_tls(
    certs: Certs, server_class: type[ImapServer], text: str
) -> None:
    """No STARTTLS, NO to it, or plain text after its OK: tls, and the password is never sent."""
    server = server_class(starttls=certs.good)
    async with server:
        session = ImapSession(imap_endpoint(server.port, "starttls", certs.ca_file))
        try:
            with pytest.raises(ProbeError) as failed:
                await session.open()
        finally:
            session.close()
    assert failed.value.reason == "tls", failed.value
    assert text in str(failed.value)
    assert server.logins == []
    assert not any(b"LOGIN" in c for c in server.commands)
