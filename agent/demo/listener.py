"""A listening socket that can be closed and bound again on the same port."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["Listener", "ServerFactory"]

#: Starts an asyncio server on (host, port); port 0 asks the kernel for a free port.
ServerFactory = Callable[[str, int], Awaitable[asyncio.Server]]


class Listener:
    """One listening socket: bound on port 0 the first time, on that same port afterwards."""

    def __init__(self, host: str, start_server: ServerFactory) -> None:
        self.host = host
        self._start_server = start_server
        self._server: asyncio.Server | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound port; 0 before the first `open()`."""
        return self._port

    @property
    def is_open(self) -> bool:
        """True while the socket accepts connections."""
        return self._server is not None

    async def open(self) -> None:
        """Bind and listen; a no-op when already open."""
        if self._server is not None:
            return
        server = await self._start_server(self.host, self._port)
        if self._port == 0:
            self._port = int(server.sockets[0].getsockname()[1])
        self._server = server

    async def close(self) -> None:
        """Stop listening so that new connections are refused; open sessions are left alone."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
