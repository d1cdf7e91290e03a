"""A small IMAP server on port 0 that misbehaves on purpose, one override at a time.

The base class answers the commands the watcher sends (CAPABILITY, LOGIN, SELECT, NOOP, UID
SEARCH/FETCH/STORE/EXPUNGE/MOVE, IDLE, LOGOUT) well enough for a session to work; each hostile
mode is a subclass that overrides one step. It counts connections and logins and the moments they
happened, so tests can check the watcher's backoff from the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

CAPS = b"IMAP4rev1 IDLE UIDPLUS MOVE"


@dataclass
class Stored:
    """One message in the server's only mailbox."""

    uid: int
    raw: bytes
    internaldate: bytes = b"01-Dec-2026 10:00:00 +0000"
    deleted: bool = False


@dataclass(eq=False)
class Conn:
    """One client connection, as the script sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    number: int
    idle_tag: bytes | None = None
    extra: dict[str, object] = field(default_factory=dict)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class ImapServer:
    """An IMAP server for one user and one mailbox; subclasses override single steps."""

    uidvalidity = 7

    def __init__(
        self,
        messages: list[bytes] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
    ) -> None:
        self.messages = [Stored(i + 1, raw) for i, raw in enumerate(messages or [])]
        self._tls = tls
        self.starttls_context = starttls
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections: list[float] = []  # monotonic time of each accepted connection
        self.logins: list[float] = []
        self.commands: list[bytes] = []
        self._idlers: set[Conn] = set()
        self.closing = asyncio.Event()  # set when the server stops: handlers waiting on it end

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._tls)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.closing.set()
        for writer in list(self._writers):
            writer.transport.abort()
        # Aborted connections end their handlers (reads and drains fail); nothing is cancelled.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections.append(time.monotonic())
        conn = Conn(reader, writer, len(self.connections))
        try:
            await self.session(conn)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self._idlers.discard(conn)
            self._writers.discard(writer)
            writer.transport.abort()
            self._tasks.discard(task)

    # -- delivery -----------------------------------------------------------------------------
    async def deliver(self, raw: bytes) -> int:
        """Add a message; idling clients hear EXISTS."""
        uid = (self.messages[-1].uid if self.messages else 0) + 1
        self.messages.append(Stored(uid, raw))
        for conn in list(self._idlers):
            with contextlib.suppress(ConnectionError):
                await conn.send(b"* %d EXISTS\r\n" % len(self.live()))
        return uid

    def live(self) -> list[Stored]:
        return [m for m in self.messages if not m.deleted]

    # -- the script ---------------------------------------------------------------------------
    async def session(self, conn: Conn) -> None:
        await self.greet(conn)
        while True:
            line = await conn.reader.readuntil(b"\r\n")
            self.commands.append(line)
            if conn.idle_tag is not None:
                if line.strip().upper() == b"DONE":
                    tag, conn.idle_tag = conn.idle_tag, None
                    self._idlers.discard(conn)
                    await conn.send(tag + b" OK IDLE done\r\n")
                continue
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            name, _, args = rest.partition(b" ")
            name = name.upper()
            if name == b"UID":
                sub, _, args = args.partition(b" ")
                name = b"UID " + sub.upper()
            handler = self.handlers().get(name)
            if handler is None:
                await conn.send(tag + b" BAD unknown command\r\n")
                continue
            if await handler(conn, tag, args) is False:
                return

    def handlers(self) -> dict[bytes, object]:
        return {
            b"CAPABILITY": self.on_capability,
            b"STARTTLS": self.on_starttls,
            b"LOGIN": self.on_login,
            b"SELECT": self.on_select,
            b"NOOP": self.on_noop,
            b"UID SEARCH": self.on_search,
            b"UID FETCH": self.on_fetch,
            b"UID STORE": self.on_store,
            b"UID EXPUNGE": self.on_expunge,
            b"UID MOVE": self.on_move,
            b"IDLE": self.on_idle,
            b"LOGOUT": self.on_logout,
        }

    async def greet(self, conn: Conn) -> None:
        await conn.send(b"* OK hostile test server ready\r\n")

    async def on_capability(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(
            b"* CAPABILITY " + self.capabilities(conn) + b"\r\n" + tag + b" OK done\r\n"
        )

    def capabilities(self, conn: Conn) -> bytes:
        if self.starttls_context is not None and not conn.extra.get("tls"):
            return CAPS + b" STARTTLS"
        return CAPS

    async def on_starttls(self, conn: Conn, tag: bytes, args: bytes) -> None:
        assert self.starttls_context is not None
        await conn.send(tag + b" OK begin TLS\r\n")
        await conn.writer.start_tls(self.starttls_context)
        conn.extra["tls"] = True

    async def on_login(self, conn: Conn, tag: bytes, args: bytes) -> bool | None:
        self.logins.append(time.monotonic())
        await conn.send(tag + b" OK [CAPABILITY " + self.capabilities(conn) + b"] logged in\r\n")
        return None

    def uidvalidity_for(self, conn: Conn) -> bytes:
        return str(self.uidvalidity).encode()

    async def on_select(self, conn: Conn, tag: bytes, args: bytes) -> None:
        live = self.live()
        nxt = (self.messages[-1].uid if self.messages else 0) + 1
        await conn.send(
            b"* %d EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY " % len(live)
            + self.uidvalidity_for(conn)
            + b"] ok\r\n* OK [UIDNEXT %d] ok\r\n" % nxt
            + tag
            + b" OK [READ-WRITE] selected\r\n"
        )

    async def on_noop(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(b"* %d EXISTS\r\n" % len(self.live()) + tag + b" OK noop\r\n")

    async def on_search(self, conn: Conn, tag: bytes, args: bytes) -> None:
        first = int(args.split()[1].split(b":")[0])
        found = [m.uid for m in self.live() if m.uid >= first and b"X-Mailprobe-Signature" in m.raw]
        if not found and self.live():
            found = [self.live()[-1].uid]  # `n:*` always matches the highest UID
        await conn.send(
            b"* SEARCH " + b" ".join(b"%d" % u for u in found) + b"\r\n" + tag + b" OK search\r\n"
        )

    def find(self, uid: int) -> tuple[int, Stored] | None:
        for seq, msg in enumerate(self.live(), start=1):
            if msg.uid == uid:
                return seq, msg
        return None

    async def on_fetch(self, conn: Conn, tag: bytes, args: bytes) -> None:
        found = self.find(int(args.split()[0]))
        if found is not None:
            seq, msg = found
            header = msg.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            await conn.send(
                b'* %d FETCH (UID %d INTERNALDATE "' % (seq, msg.uid)
                + msg.internaldate
                + b'" BODY[HEADER] {%d}\r\n' % len(header)
                + header
                + b")\r\n"
            )
        await conn.send(tag + b" OK fetch\r\n")

    async def on_store(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await conn.send(tag + b" OK store\r\n")

    async def on_expunge(self, conn: Conn, tag: bytes, args: bytes) -> None:
        found = self.find(int(args.split()[0]))
        out = b""
        if found is not None:
            found[1].deleted = True
            out = b"* %d EXPUNGE\r\n" % found[0]
        await conn.send(out + tag + b" OK expunge\r\n")

    async def on_move(self, conn: Conn, tag: bytes, args: bytes) -> None:
        await self.on_expunge(conn, tag, args)

    async def on_idle(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.idle_tag = tag
        self._idlers.add(conn)
        await conn.send(b"+ idling\r\n")

    async def on_logout(self, conn: Conn, tag: bytes, args: bytes) -> bool:
        await conn.send(b"* BYE bye\r\n" + tag + b" OK logout\r\n")
        return False
