"""OAuth2 sign-in against servers that refuse tokens, challenge oddly or never stop challenging.

The real ImapSession and submit() talk to the hostile test servers with XOAUTH2 and OAUTHBEARER:
a refusal is reason auth with the server's status, what the client answers to the error
challenge is what RFC 7628 asks, a server that keeps challenging ends the session as protocol,
and a token the server refused is handed back to the token source.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import ssl

import pytest

from mailprobe.probes.errors import AuthError, ProtocolError
from mailprobe.probes.imap_session import ImapSession
from mailprobe.probes.sasl import OAuth2Login
from mailprobe.probes.smtp import SmtpEndpoint, submit

from .harness import USER, plain_endpoint, probe
from .imap_server import CAPS, Conn, ImapServer
from .smtp_server import SmtpServer

GOOD = "good-token"
STATUS = base64.b64encode(json.dumps({"status": "invalid_token", "scope": "mail"}).encode())


def _login(token: str, mechanism: str = "auto") -> tuple[OAuth2Login, list[str]]:
    refused: list[str] = []

    async def get() -> str:
        return token

    return OAuth2Login(get, mechanism, refused.append), refused  # type: ignore[arg-type]


def _token_of(initial: bytes) -> str:
    raw = base64.b64decode(initial)
    return raw.split(b"auth=Bearer ")[1].split(b"\x01")[0].decode()


class OAuthImap(ImapServer):
    """Takes GOOD; anything else gets the error challenge, then NO."""

    sasl_ir = True
    challenge = STATUS

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[bytes] = []  # what the client sent after the error challenge
        self.initial: list[bytes] = []

    def capabilities(self, conn: Conn) -> bytes:
        extra = b" SASL-IR" if self.sasl_ir else b""
        return CAPS + b" AUTH=XOAUTH2 AUTH=OAUTHBEARER" + extra

    def handlers(self) -> dict[bytes, object]:
        return {**super().handlers(), b"AUTHENTICATE": self.on_authenticate}

    async def on_authenticate(self, conn: Conn, tag: bytes, args: bytes) -> None:
        words = args.split()
        if len(words) > 1:
            initial = words[1]
        else:
            await conn.send(b"+ \r\n")
            initial = (await conn.reader.readuntil(b"\r\n")).strip()
        self.initial.append(base64.b64decode(initial))
        if _token_of(initial) == GOOD:
            await conn.send(tag + b" OK [CAPABILITY " + CAPS + b"] logged in\r\n")
            return
        await self.refuse(conn, tag)

    async def refuse(self, conn: Conn, tag: bytes) -> None:
        await conn.send(b"+ " + self.challenge + b"\r\n")
        self.answers.append((await conn.reader.readuntil(b"\r\n")).rstrip(b"\r\n"))
        await conn.send(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")


class NoSaslIr(OAuthImap):
    """Makes the client wait for `+` before its initial response."""

    sasl_ir = False


class GarbageChallenge(OAuthImap):
    """An error challenge that is not base64 at all."""

    challenge = b"!!\x1b[31m not base64"


class EndlessChallenges(OAuthImap):
    """Answers every client response with another challenge, for ever."""

    async def refuse(self, conn: Conn, tag: bytes) -> None:
        for _ in range(1000):
            await conn.send(b"+ " + STATUS + b"\r\n")
            self.answers.append(await conn.reader.readuntil(b"\r\n"))


def _imap(server: ImapServer, login: OAuth2Login) -> ImapSession:
    return ImapSession(dataclasses.replace(plain_endpoint(server.port), oauth2=login))


@pytest.mark.parametrize("server_type", [OAuthImap, NoSaslIr])
@pytest.mark.parametrize(("mechanism", "prefix"), [("auto", b"n,a="), ("xoauth2", b"user=")])
async def test_imap_signs_in_with_the_token(
    server_type: type[OAuthImap], mechanism: str, prefix: bytes
) -> None:
    """With SASL-IR on the command line, without it after the server's `+`; auto: OAUTHBEARER."""
    async with server_type() as server:
        login, refused = _login(GOOD, mechanism)
        session = _imap(server, login)
        await session.open()
        await session.logout()
    assert server.initial[0].startswith(prefix + USER.encode())
    assert refused == []
    assert "UIDPLUS" in session.capabilities  # from the OK's CAPABILITY code


@pytest.mark.parametrize(("mechanism", "answer"), [("oauthbearer", b"AQ=="), ("xoauth2", b"")])
async def test_imap_refusal_is_auth_with_the_status(mechanism: str, answer: bytes) -> None:
    """The error challenge is answered (^A for OAUTHBEARER, empty for XOAUTH2); the failure is
    auth with the decoded status; the refused token goes back to its source."""
    async with OAuthImap() as server:
        login, refused = _login("revoked-token", mechanism)
        with pytest.raises(AuthError) as caught:
            await _imap(server, login).open()
    assert server.answers == [answer]
    message = str(caught.value)
    assert f"AUTHENTICATE {mechanism.upper()} refused for {USER}" in message
    assert "status=invalid_token, scope=mail" in message
    assert "AUTHENTICATIONFAILED" in message
    assert "revoked-token" not in message
    assert refused == ["revoked-token"]


async def test_imap_garbage_challenge_is_still_auth() -> None:
    """A challenge that is not base64 is shown escaped; the refusal stays auth."""
    async with GarbageChallenge() as server:
        login, _ = _login("bad")
        with pytest.raises(AuthError, match="undecodable status"):
            await _imap(server, login).open()


async def test_imap_endless_challenges_end_the_session_as_protocol() -> None:
    """A server that challenges again after the answer: one answer, then the session ends."""
    async with EndlessChallenges() as server:
        login, _ = _login("bad")
        with pytest.raises(ProtocolError, match="more SASL challenges"):
            await asyncio.wait_for(_imap(server, login).open(), 5)
    assert len(server.answers) <= 2


async def test_imap_without_oauth_mechanisms_sends_no_token() -> None:
    """A server that offers neither mechanism: auth, and the token is never asked for."""
    asked: list[int] = []

    async def token() -> str:
        asked.append(1)
        return GOOD

    async with ImapServer() as server:
        with pytest.raises(
            AuthError, match=r"offers no XOAUTH2 or OAUTHBEARER sign-in \(offers: none\)"
        ):
            await _imap(server, OAuth2Login(token)).open()
    assert asked == []


LONG = "L" * 10_000  # base64 of its initial response is past 12288 octets


class OAuthSmtp(SmtpServer):
    """Offers XOAUTH2 and OAUTHBEARER; takes GOOD and LONG, challenges and refuses the rest.

    `auth_lines` are the client's lines of the AUTH exchanges, as sent."""

    def __init__(self, offer: bytes = b"AUTH PLAIN XOAUTH2 OAUTHBEARER") -> None:
        super().__init__()
        self.offer = offer
        self.auth_lines: list[bytes] = []

    def extensions(self, tls: bool) -> list[bytes]:
        return [self.offer]

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.greet(writer)
        while True:
            line = await reader.readuntil(b"\r\n")
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                await self.on_ehlo(writer, False)
            elif verb == b"AUTH":
                await self.on_auth(reader, writer, line)
            elif verb in (b"MAIL", b"RCPT"):
                await self.send(writer, b"250 2.0.0 ok\r\n")
            elif verb == b"DATA":
                await self.send(writer, b"354 go ahead\r\n")
                self.accepted.append(await reader.readuntil(b"\r\n.\r\n"))
                await self.send(writer, self.data_reply())
            elif verb == b"QUIT":
                await self.send(writer, b"221 2.0.0 bye\r\n")
                return
            else:
                await self.send(writer, b"502 5.5.2 what?\r\n")

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        line = (await reader.readuntil(b"\r\n")).rstrip(b"\r\n")
        self.auth_lines.append(line)
        return line

    async def on_auth(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
    ) -> None:
        self.auth_lines.append(line.rstrip(b"\r\n"))
        words = line.split()
        if len(words) == 2:  # no initial response: ask for it
            await self.send(writer, b"334 \r\n")
            words.append(await self._read(reader))
        if _token_of(words[2]) in (GOOD, LONG):
            await self.send(writer, b"235 2.7.0 Authentication successful\r\n")
            return
        await self.send(writer, b"334 " + STATUS + b"\r\n")
        await self._read(reader)
        await self.send(writer, b"535 5.7.8 Error: authentication failed\r\n")


def _smtp(server: SmtpServer, login: OAuth2Login) -> SmtpEndpoint:
    return SmtpEndpoint(host="127.0.0.1", port=server.port, security="plain", username=USER,
                        password=None, tls_context=ssl.create_default_context(), timeout=2.0,
                        helo_name="client.test", oauth2=login)  # fmt: skip


async def _submit(server: OAuthSmtp, login: OAuth2Login) -> None:
    _, raw = probe()
    await submit(_smtp(server, login), "a@hostile.test", USER, raw)


@pytest.mark.parametrize(("mechanism", "name"), [("auto", b"OAUTHBEARER"), ("xoauth2", b"XOAUTH2")])
async def test_smtp_signs_in_with_the_token(mechanism: str, name: bytes) -> None:
    """AUTH with the mechanism's initial response; the submission goes through."""
    async with OAuthSmtp() as server:
        login, refused = _login(GOOD, mechanism)
        await _submit(server, login)
    assert server.auth_lines[0].split()[:2] == [b"AUTH", name]
    assert len(server.accepted) == 1
    assert refused == []


@pytest.mark.parametrize(("mechanism", "answer"), [("oauthbearer", b"AQ=="), ("xoauth2", b"")])
async def test_smtp_refusal_is_auth_with_the_code_and_status(mechanism: str, answer: bytes) -> None:
    """334 error challenge answered per RFC 7628, then 535: auth in smtp_auth, code and status."""
    async with OAuthSmtp() as server:
        login, refused = _login("revoked-token", mechanism)
        with pytest.raises(AuthError) as caught:
            await _submit(server, login)
    assert server.auth_lines[-1] == answer
    assert (caught.value.phase, caught.value.reply_code) == ("smtp_auth", 535)
    assert "status=invalid_token, scope=mail" in str(caught.value)
    assert "revoked-token" not in str(caught.value)
    assert refused == ["revoked-token"]
    assert server.accepted == []


async def test_smtp_long_token_goes_after_an_empty_334() -> None:
    """An initial response past RFC 4954's 12288-octet line is sent after the server's 334."""
    async with OAuthSmtp() as server:
        login, _ = _login(LONG)
        await _submit(server, login)
    assert server.auth_lines[0] == b"AUTH OAUTHBEARER"
    assert len(server.auth_lines[1]) > 12288
    assert len(server.accepted) == 1


async def test_smtp_without_oauth_mechanisms_is_auth_before_any_token() -> None:
    """AUTH PLAIN LOGIN only: auth, no AUTH command sent, no token asked for."""
    asked: list[int] = []

    async def token() -> str:
        asked.append(1)
        return GOOD

    async with OAuthSmtp(b"AUTH PLAIN LOGIN") as server:
        with pytest.raises(
            AuthError, match=r"offers no XOAUTH2 or OAUTHBEARER AUTH \(offers: PLAIN LOGIN\)"
        ):
            await _submit(server, OAuth2Login(token))
    assert server.auth_lines == []
    assert asked == []
