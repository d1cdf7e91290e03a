"""The IMAP side of the embedded service: pymap's in-memory backend, served on the running loop.

pymap's own `IMAPService` binds from command-line arguments and starts untracked tasks, so the
service runs pymap's `IMAPConnection` itself, one tracked task per connection, on its own
listeners.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from argparse import Namespace
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack, closing
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from proxyprotocol.sock import SocketInfo, SocketInfoLocal
from pymap.backend.dict import Config as DictConfig
from pymap.backend.dict import Identity, Login
from pymap.concurrent import Event, Subsystem
from pymap.context import connection_exit
from pymap.imap import IMAPConnection
from pymap.imap.state import ConnectionState
from pymap.parsing.command.select import IdleCommand
from pymap.parsing.commands import Commands
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import UntaggedResponse
from pymap.user import Passwords, UserMetadata
from pysasl.hashing import Cleartext

__all__ = ["ImapCommandStats", "ImapFront", "MailStore", "build_imap"]

_logger = logging.getLogger(__name__)

#: How long a dropped session may take to say BYE and close before its socket is aborted.
_CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class ImapCommandStats:
    """IMAP commands received since start: in total, by command name and per session."""

    total: int
    by_command: Mapping[str, int]
    per_session: tuple[int, ...]  # one count per session, in the order they connected


class _SessionTally:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class _CommandCounter:
    def __init__(self) -> None:
        self.by_command: Counter[str] = Counter()
        self.sessions: list[_SessionTally] = []

    def new_session(self) -> _SessionTally:
        tally = _SessionTally()
        self.sessions.append(tally)
        return tally

    def snapshot(self) -> ImapCommandStats:
        return ImapCommandStats(
            total=sum(self.by_command.values()),
            by_command=dict(self.by_command),
            per_session=tuple(tally.count for tally in self.sessions),
        )


# The session a command belongs to: pymap parses commands in the session's own task.
_current_tally: ContextVar[_SessionTally | None] = ContextVar("_current_tally", default=None)


class _CountingCommands(Commands):
    """pymap's command parser, counting each command it hands to the connection."""

    def __init__(self, counter: _CommandCounter) -> None:
        super().__init__()
        self._counter = counter

    def parse(self, buf: memoryview, params: Any) -> tuple[Any, memoryview]:
        cmd, rest = super().parse(buf, params)
        self._counter.by_command[bytes(cmd.command).decode("ascii", "replace")] += 1
        tally = _current_tally.get()
        if tally is not None:
            tally.count += 1
        return cmd, rest


class _Config(DictConfig):
    """The dict backend's config, built from arguments instead of a command line."""

    def __init__(
        self,
        *,
        hostname: str,
        ssl_context: ssl.SSLContext,
        tls_enabled: bool,
        counter: _CommandCounter,
    ) -> None:
        super().__init__(
            Namespace(passlib_cfg=None, proxy_protocol=None),
            host=None,
            port=0,
            demo_data=False,
            demo_user="",
            demo_password="",
            ssl_context=ssl_context,
            # False on the implicit-TLS port: the session is encrypted from the first byte,
            # so LOGIN is offered at once and STARTTLS is not.
            tls_enabled=tls_enabled,
            # The default PBKDF2 (500k rounds) costs ~0.3 s a login; these passwords live in
            # memory for a throwaway service anyway.
            hash_context=Cleartext(),
            # The default runs hashing in a thread pool; everything here stays on the loop.
            subsystem=Subsystem.for_asyncio(),
            cpu_subsystem=Subsystem.for_asyncio(),
            invalid_user_sleep=0.0,
            reject_dnsbl=False,
        )
        self._hostname = hostname
        self._counter = counter

    @property
    def greeting(self) -> bytes:
        # pymap's default looks up the FQDN, which can stall on a machine without DNS.
        return b"Server ready " + self._hostname.encode("ascii")

    @property
    def commands(self) -> Commands:
        return _CountingCommands(self._counter)


class _NoLoopbackTrust(SocketInfoLocal):
    """Connection info that never claims loopback.

    pymap lets loopback clients LOGIN before STARTTLS; the embedded server should refuse
    that as a remote one would, so a client that skips STARTTLS fails here too.
    """

    __slots__ = ()

    @property
    def from_localhost(self) -> bool:
        return False


class _IdleCatchUp(ConnectionState):
    """pymap's per-connection state, made not to lose IDLE wake-ups.

    pymap's IDLE waits for the mailbox's next change, so a change made while the previous
    push was still being written is only reported along with some later change. Looking
    for pending changes first, with no yield to the loop before the wait begins, closes the gap.
    """

    async def receive_updates(self, cmd: IdleCommand, done: Event) -> Iterable[UntaggedResponse]:
        selected = await self.session.check_mailbox(self.selected)
        self._selected, untagged = selected.fork(cmd)
        pending = list(untagged)
        if pending:
            return pending
        return await super().receive_updates(cmd, done)


class _Server:
    """Runs one IMAP connection, start to finish, as pymap's `IMAPServer` does."""

    def __init__(self, login: Login, config: _Config) -> None:
        self._login = login
        self._config = config
        self._commands = config.commands

    async def __call__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: SocketInfo
    ) -> None:
        conn = IMAPConnection(self._commands, self._config, reader, writer, sock_info)
        state = _IdleCatchUp(self._login, self._config)
        async with AsyncExitStack() as stack:
            connection_exit.set(stack)
            stack.enter_context(closing(conn))
            await conn.run(state)


class MailStore:
    """Every user's mailboxes, held by pymap's in-memory backend."""

    def __init__(self, login: Login) -> None:
        self._login = login

    async def deliver(self, user: str, message: bytes, *, when: datetime) -> int:
        """Append a message to `user`'s INBOX as pymap's admin append does; return its UID."""
        identity = Identity(user, self._login, None, frozenset())
        async with identity.new_session() as session:
            append_uid, _ = await session.append_messages("INBOX", [AppendMessage(message, when)])
        return int(next(iter(append_uid.uids)))


class ImapFront:
    """Serves IMAP connections with pymap and keeps every session's task in hand."""

    def __init__(
        self,
        starttls: _Server,
        implicit: _Server,
        ssl_context: ssl.SSLContext,
        counter: _CommandCounter,
    ) -> None:
        self._starttls = starttls
        self._implicit = implicit
        self._ssl_context = ssl_context
        self._counter = counter
        self._sessions: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def session_count(self) -> int:
        """Open IMAP sessions."""
        return len(self._sessions)

    async def start_starttls(self, host: str, port: int) -> asyncio.Server:
        """Listen for plain connections that must STARTTLS before logging in."""
        return await asyncio.start_server(partial(self._on_connect, self._starttls), host, port)

    async def start_implicit_tls(self, host: str, port: int) -> asyncio.Server:
        """Listen for connections that are TLS from the first byte."""
        return await asyncio.start_server(
            partial(self._on_connect, self._implicit), host, port, ssl=self._ssl_context
        )

    def stats(self) -> ImapCommandStats:
        """IMAP commands received so far."""
        return self._counter.snapshot()

    async def drop_sessions(self) -> None:
        """End every open session: pymap says BYE [UNAVAILABLE] and closes the connection."""
        sessions = dict(self._sessions)
        if not sessions:
            return
        # pymap answers cancellation of a session with BYE and a clean close.
        for task in sessions:
            task.cancel()
        _, pending = await asyncio.wait(sessions, timeout=2 * _CLOSE_TIMEOUT)
        for task in pending:
            sessions[task].transport.abort()
        if pending:
            await asyncio.wait(pending)

    def _on_connect(
        self, server: _Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.create_task(self._serve(server, reader, writer))
        self._sessions[task] = writer
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._sessions.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _logger.warning("IMAP session ended with an error: %r", exc)

    async def _serve(
        self, server: _Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        _current_tally.set(self._counter.new_session())
        try:
            await server(reader, writer, _NoLoopbackTrust(writer, unique_id=uuid.uuid4().bytes))
        finally:
            # pymap closes the writer without waiting; wait so no socket outlives the session.
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)
            except (TimeoutError, OSError):
                writer.transport.abort()


async def build_imap(
    users: Mapping[str, str], *, hostname: str, ssl_context: ssl.SSLContext
) -> tuple[MailStore, ImapFront]:
    """Create the users in pymap's in-memory backend and the servers that serve them."""
    counter = _CommandCounter()
    starttls_config = _Config(
        hostname=hostname, ssl_context=ssl_context, tls_enabled=True, counter=counter
    )
    implicit_config = _Config(
        hostname=hostname, ssl_context=ssl_context, tls_enabled=False, counter=counter
    )
    # One Login, so both ports see the same users and mailboxes (pymap keeps them per login).
    login = Login(starttls_config)
    passwords = Passwords(starttls_config)
    for name, password in users.items():
        hashed = await passwords.hash_password(password)
        identity = Identity(name, login, None, frozenset())
        await identity.set(UserMetadata(starttls_config, name, password=hashed))
    front = ImapFront(
        _Server(login, starttls_config),
        _Server(login, implicit_config),
        ssl_context,
        counter,
    )
    return MailStore(login), front
