"""A small asyncio HTTP endpoint: GET /metrics (Prometheus text format), GET /healthz (JSON) and
GET /-/healthy (200 while the process serves; for liveness checks, which must not fail while the
provider is down); POST /-/reload re-reads the config, as Prometheus' own does, but only from
the machine itself (a loopback peer; 403 for anyone else): 200 once applied, 500 with every
problem when the running config stays.

With a web config it serves over TLS and asks every request for basic auth, as Prometheus
exporters do: a request without the right credentials gets 401 and a WWW-Authenticate challenge.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mailprobe.agent.basicauth import CHALLENGE, Authenticator
from mailprobe.agent.webconfig import WebConfig

log = logging.getLogger(__name__)
_READ_TIMEOUT = 5.0
_RELOAD_TIMEOUT = 60.0  # a reload reads the config and starts or stops watchers
_MAX_HEADER = 16384

Reload = Callable[[], Awaitable[tuple[bool, str]]]
"""Re-read the config: (applied, what happened in words)."""


class MetricsServer:
    """Serves the agent's registry; one request per connection, GET and HEAD only."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        health: Callable[[], dict[str, object]],
        web: WebConfig | None = None,
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._health = health
        self._web = web
        self._auth = Authenticator(web.users) if web is not None and web.users else None
        self._extra_headers = "".join(f"{k}: {v}\r\n" for k, v in web.headers) if web else ""
        self._server: asyncio.Server | None = None
        self.reload: Reload | None = None  # set by `mailprobe run`: POST /-/reload

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

    @property
    def url(self) -> str:
        """scheme://host:port actually bound."""
        return f"{self._web.scheme if self._web else 'http'}://{self.address}"

    async def start(self) -> None:
        """Bind and start serving."""
        # The stream limit bounds what one request may make us buffer.
        tls = self._web.server_context() if self._web is not None else None
        self._server = await asyncio.start_server(
            self._handle, self._host, self._port, limit=_MAX_HEADER, ssl=tls,
            ssl_handshake_timeout=_READ_TIMEOUT if tls else None,
        )  # fmt: skip

    async def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self._auth is not None:
            self._auth.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            request, *lines = head.decode("latin-1").split("\r\n")
            method, path, *_ = request.split(" ")
            extra = self._extra_headers
            if self._auth is not None and not await asyncio.wait_for(
                self._auth.check(_header(lines, "authorization")), _READ_TIMEOUT
            ):
                status, ctype, body = "401 Unauthorized", "text/plain", b"unauthorized\n"
                extra += f"WWW-Authenticate: {CHALLENGE}\r\n"
            elif method == "POST" and path.split("?", 1)[0] == "/-/reload":
                status, ctype, body = await self._reload(writer)
            else:
                status, ctype, body = self._route(method, path.split("?", 1)[0])
            body_out = b"" if method == "HEAD" else body
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body_out
            )
            await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a slow or malformed client gets nothing
        except OSError:
            pass  # reset, or a TLS error after the handshake
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _reload(self, writer: asyncio.StreamWriter) -> tuple[str, str, bytes]:
        if self.reload is None:
            return "404 Not Found", "text/plain", b"not found\n"
        if not _loopback(writer.get_extra_info("peername")):
            return "403 Forbidden", "text/plain", b"reload only from the machine itself\n"
        ok, text = await asyncio.wait_for(self.reload(), _RELOAD_TIMEOUT)
        status = "200 OK" if ok else "500 Internal Server Error"
        return status, "text/plain", text.encode() + b"\n"

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            health = self._health()
            status = "200 OK" if health.get("status") == "ok" else "503 Service Unavailable"
            return status, "application/json", json.dumps(health).encode() + b"\n"
        if path == "/-/healthy":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/":
            return "200 OK", "text/plain", b"mailprobe: see /metrics and /healthz\n"
        return "404 Not Found", "text/plain", b"not found\n"


def _loopback(peer: object) -> bool:
    """The peer address (host, port, ...) is on the loopback network."""
    try:
        address = ipaddress.ip_address(str(peer[0]))  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return False  # a Unix socket, or no address at all
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _header(lines: list[str], name: str) -> str | None:
    """The value of the first header called `name` (case-insensitive)."""
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None
