"""IMAP servers that misbehave on purpose, one way each (the base is tests/hostile/imap_server.py).

Used by the hostile tests and by bench/soak.py.
"""

from __future__ import annotations

import asyncio
import random

from .imap_server import CAPS, Conn, ImapServer


class GarbageGreeting(ImapServer):
    async def greet(self, conn: Conn) -> None:
        await conn.send(b"\x00\xff\xfe SMTP? \x1b[31m\r\n")


class EndlessGreeting(ImapServer):
    async def greet(self, conn: Conn) -> None:
        chunk = b"\xff" * 65536
        for _ in range(64):  # 4 MiB with no line end
            await conn.send(chunk)
        await self.closing.wait()


class Slowloris(ImapServer):
    async def greet(self, conn: Conn) -> None:
        for byte in b"* OK slow...\r\n":
            await conn.send(bytes([byte]))
            await asyncio.sleep(0.3)


class TenMegabyteLine(ImapServer):
    async def on_select(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(b"* OK " + b"x" * (10 << 20) + b"\r\n" + tag + b" OK selected\r\n")


class HugeUidvalidity(ImapServer):
    def uidvalidity_for(self, conn: Conn) -> bytes:
        return b"9" * 5000


class CapabilityNotUtf8(ImapServer):
    def capabilities(self, conn: Conn) -> bytes:
        return CAPS + b" X-\xff\xfe"


class CapabilityNotUtf8AfterLogin(ImapServer):
    async def on_login(self, conn: Conn, tag: bytes, args: bytes) -> None:
        self.logins.append(asyncio.get_running_loop().time())
        await conn.send(tag + b" OK [CAPABILITY IMAP4rev1 IDLE \xff\xfe] logged in\r\n")


class LiesAboutIdle(ImapServer):
    async def on_idle(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(tag + b" NO IDLE is not really supported\r\n")


class UnexpectedTag(ImapServer):
    async def on_noop(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(b"ZZZ999 OK nobody asked\r\n" + tag + b" OK noop\r\n")

    async def on_idle(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(b"+ idling\r\nZZZ999 OK nobody asked\r\n")


class GiantLiteral(ImapServer):
    sent = 0

    async def on_fetch(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(b"* 1 FETCH (UID 1 BODY[HEADER] {2000000000}\r\n")
        chunk = b"\0" * 65536
        while True:  # as fast as the client reads
            await conn.send(chunk)
            self.sent += len(chunk)


class UntaggedFlood(ImapServer):
    async def on_idle(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(b"+ idling\r\n")
        await conn.send(b"* 1 RECENT\r\n" * 100_000)


class LoginThenDrop(ImapServer):
    async def on_login(self, conn: Conn, tag: bytes, args: bytes) -> bool:
        self.logins.append(asyncio.get_running_loop().time())
        await conn.send(tag + b" OK logged in\r\n")
        return False


class ByeAtRandom(ImapServer):
    def __init__(self, messages: list[bytes]) -> None:
        super().__init__(messages)
        self.rng = random.Random(11)

    def handlers(self) -> dict[bytes, object]:
        def maybe_bye(handler):  # type: ignore[no-untyped-def]
            async def wrapped(conn: Conn, tag: bytes, args: bytes) -> bool | None:
                if self.rng.random() < 0.25:
                    await conn.send(b"* BYE going away at random\r\n")
                    return False
                return await handler(conn, tag, args)  # type: ignore[no-any-return]

            return wrapped

        return {name: maybe_bye(h) for name, h in super().handlers().items()}


class FFInternaldate(ImapServer):
    def __init__(self, messages: list[bytes]) -> None:
        super().__init__(messages)
        for msg in self.messages:
            msg.internaldate = b"\xff\xfe-Dec-2026 10:00:00 +0000"


class FFReceived(ImapServer):
    """Adds a Received header with bytes that are not UTF-8 on top of each message's header."""

    def __init__(self, messages: list[bytes]) -> None:
        super().__init__([b"Received: from \xff\xfe.example by mx\x00 with \xc3(; x\r\n" + m
                          for m in messages])  # fmt: skip


class RefusesStore(ImapServer):
    async def on_store(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(tag + b" NO [CANNOT] flags are read-only here\r\n")


class RefusesExpunge(ImapServer):
    async def on_expunge(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(tag + b" BAD UID EXPUNGE? never heard of it\r\n")


class RefusesMove(ImapServer):
    async def on_move(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(tag + b" NO [TRYCREATE] no such mailbox\r\n")


class NoUidplus(ImapServer):
    def capabilities(self, conn: Conn) -> bytes:
        return b"IMAP4rev1 IDLE"


class ByeAfterSelect(ImapServer):
    """Drops every session a moment after SELECT, with a new UIDVALIDITY every other time."""

    calm = False  # set to stop dropping sessions

    def uidvalidity_for(self, conn: Conn) -> bytes:
        return b"%d" % (100 + conn.number // 2)

    async def on_idle(self, conn: Conn, tag: bytes, args: bytes) -> bool | None:
        if self.calm:
            return await super().on_idle(conn, tag, args)
        await conn.send(b"* BYE enough\r\n")
        return False

    async def on_noop(self, conn: Conn, tag: bytes, args: bytes) -> bool | None:
        if self.calm:
            return await super().on_noop(conn, tag, args)
        return await self.on_idle(conn, tag, args)


#: Every mode that ends a session (the soak mixes these in).
FAILING = (GarbageGreeting, EndlessGreeting, Slowloris, TenMegabyteLine, HugeUidvalidity,
           CapabilityNotUtf8, CapabilityNotUtf8AfterLogin, LiesAboutIdle, UnexpectedTag,
           GiantLiteral, UntaggedFlood, LoginThenDrop, ByeAtRandom, ByeAfterSelect)  # fmt: skip
