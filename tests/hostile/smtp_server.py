"""A small SMTP submission server on port 0 that misbehaves on purpose, one override at a time.

The base class takes a submission the way the agent makes one (EHLO, STARTTLS, AUTH PLAIN, MAIL,
RCPT, DATA, QUIT), with a server context for STARTTLS or implicit TLS; each hostile mode is a
subclass that overrides one step.
"""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType
from typing import Self


class SmtpServer:
    """Accepts every submission; subclasses misbehave."""

    def __init__(
        self,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit: ssl.SSLContext | None = None,
    ) -> None:
        self.starttls_context = starttls
        self._implicit = implicit
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.closing = asyncio.Event()
        self.connections = 0
        self.accepted: list[bytes] = []

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._implicit)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.closing.set()
        for writer in list(self._writers):
            writer.transport.abort()
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
        self.connections += 1
        try:
            await self.session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._tasks.discard(task)

    @staticmethod
    async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.greet(writer)
        tls = self._implicit is not None
        while True:
            line = await reader.readuntil(b"\r\n")
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                await self.on_ehlo(writer, tls)
            elif verb == b"STARTTLS":
                if await self.on_starttls(writer):
                    tls = True
            elif verb == b"AUTH":
                await self.send(writer, b"235 2.7.0 ok\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
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

    async def greet(self, writer: asyncio.StreamWriter) -> None:
        await self.send(writer, b"220 hostile.test ESMTP\r\n")

    def data_reply(self) -> bytes:
        return b"250 2.0.0 ok: queued as HOSTILE1\r\n"

    def extensions(self, tls: bool) -> list[bytes]:
        offer = [b"AUTH PLAIN LOGIN"]
        if not tls and self.starttls_context is not None:
            offer.insert(0, b"STARTTLS")
        return offer

    async def on_ehlo(self, writer: asyncio.StreamWriter, tls: bool) -> None:
        lines = [b"hostile.test", *self.extensions(tls)]
        out = b"".join(b"250-" + x + b"\r\n" for x in lines[:-1]) + b"250 " + lines[-1] + b"\r\n"
        await self.send(writer, out)

    async def on_starttls(self, writer: asyncio.StreamWriter) -> bool:
        assert self.starttls_context is not None
        await self.send(writer, b"220 2.0.0 ready to start TLS\r\n")
        await writer.start_tls(self.starttls_context)
        return True
