"""A small asyncio HTTP endpoint: GET /metrics (Prometheus text format) and GET /healthz (JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)
_READ_TIMEOUT = 5.0
_MAX_HEADER = 16384


class MetricsServer:
    """Serves the agent's registry; one request per connection, GET and HEAD only."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        health: Callable[[], dict[str, object]],
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._health = health
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None  # noqa: S101 - only after start()
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        """host:port actually bound."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving."""
        # The stream limit bounds what one request may make us buffer.
        self._server = await asyncio.start_server(
            self._handle, self._host, self._port, limit=_MAX_HEADER
        )

    async def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            status, ctype, body = self._route(method, path.split("?", 1)[0])
            body_out = b"" if method == "HEAD" else body
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body_out
            )
            await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a slow or malformed client gets nothing
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            health = self._health()
            status = "200 OK" if health.get("status") == "ok" else "503 Service Unavailable"
            return status, "application/json", json.dumps(health).encode() + b"\n"
        if path == "/":
            return "200 OK", "text/plain", b"mailprobe: see /metrics and /healthz\n"
        return "404 Not Found", "text/plain", b"not found\n"
