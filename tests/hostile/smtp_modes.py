"""SMTP servers that misbehave on purpose, one way each (the base is tests/hostile/smtp_server.py).

Used by the hostile tests and by bench/soak.py.
"""

from __future__ import annotations

import asyncio

from .smtp_server import SmtpServer


class GreetThenSilent(SmtpServer):
    async def on_ehlo(self, writer: asyncio.StreamWriter, tls: bool) -> None:
        await self.closing.wait()


class NeverGreets(SmtpServer):
    async def greet(self, writer: asyncio.StreamWriter) -> None:
        await self.closing.wait()


class DribbledGreeting(SmtpServer):
    async def greet(self, writer: asyncio.StreamWriter) -> None:
        for byte in b"220 slow.test ESMTP\r\n":
            await self.send(writer, bytes([byte]))
            await asyncio.sleep(0.2)


class GarbageGreeting(SmtpServer):
    async def greet(self, writer: asyncio.StreamWriter) -> None:
        await self.send(writer, b"\xff\xfe\x00 not smtp at all\r\n")


class GarbageEhloReply(SmtpServer):
    async def on_ehlo(self, writer: asyncio.StreamWriter, tls: bool) -> None:
        await self.send(writer, b"250-hostile.test\r\nPIPELINING but no code\r\n")


class TenMegabyteReply(SmtpServer):
    async def on_ehlo(self, writer: asyncio.StreamWriter, tls: bool) -> None:
        await self.send(writer, b"250 " + b"x" * (10 << 20) + b"\r\n")


class DropsAfterGreeting(SmtpServer):
    async def on_ehlo(self, writer: asyncio.StreamWriter, tls: bool) -> None:
        writer.transport.abort()


class GarbageAfterData(SmtpServer):
    def data_reply(self) -> bytes:
        return b"2x0 \xff\xff\r\n"


#: Every mode that fails a submission (the soak mixes these in).
FAILING = (GreetThenSilent, NeverGreets, DribbledGreeting, GarbageGreeting, GarbageEhloReply,
           TenMegabyteReply, DropsAfterGreeting, GarbageAfterData)  # fmt: skip
