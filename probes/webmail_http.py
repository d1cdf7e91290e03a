"""http mode of the webmail probe: one timed request chain over httpx on httpcore.

The phases come from httpcore's `trace` extension (connect_tcp, start_tls, send_request_*,
receive_response_*). httpcore resolves the host name inside connect_tcp, so the pool gets a network
backend that resolves first, under its own timeout, and connects to the addresses: DNS becomes a
phase of its own and is taken out of connect. Every request of the chain (redirects, the login page,
the login POST) adds to the same phases, so together they account for the total. The whole chain runs under the
target's timeout, and so does every single step (httpx's connect, read, write and pool timeouts),
which catches a server that trickles bytes just fast enough to dodge a read timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urljoin

import httpcore
import httpx

from mailprobe.probes.errors import (
    ConnectError,
    ContentError,
    HttpStatusError,
    LoginError,
    ProbeError,
    ProbeTimeout,
    ResolveError,
    TLSError,
)
from mailprobe.probes.htmlform import find_form
from mailprobe.probes.tls import client_context, not_after
from mailprobe.probes.webmail import FormLogin, HttpTarget, Recorder, WebmailResult

USER_AGENT = "mailprobe-webmail/1"
# httpcore trace step -> the phase its time counts towards.
_PHASE_OF = {
    "connect_tcp": "connect",
    "start_tls": "tls",
    "send_request_headers": "first_byte",
    "send_request_body": "first_byte",
    "receive_response_headers": "first_byte",
    "receive_response_body": "body",
}


class _Timeline:
    """Turns trace events into phase time and remembers the step in progress (for the reason)."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._began: dict[str, float] = {}
        self._dns_in_connect = 0.0
        self.step = "dns"

    def dns(self, seconds: float) -> None:
        """The backend resolved a name inside connect_tcp: DNS time, not connect time."""
        self._recorder.add("dns", seconds)
        self._dns_in_connect += seconds

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        scope, _, event = name.rpartition(".")  # "connection.connect_tcp", "started"
        step = scope.rpartition(".")[2]
        phase = _PHASE_OF.get(step)
        if phase is None:
            return
        now = time.perf_counter()
        if event == "started":
            self._began[step] = now
            self.step = phase
            if step == "connect_tcp":
                self._dns_in_connect = 0.0
        elif event in ("complete", "failed") and step in self._began:
            spent = now - self._began.pop(step)
            if step == "connect_tcp":
                spent -= self._dns_in_connect
            self._recorder.add(phase, spent)


async def _resolve(host: str, port: int, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise ProbeTimeout(f"resolving {host} took over {timeout:g}s", phase="dns") from exc
    except socket.gaierror as exc:
        raise ResolveError(f"cannot resolve {host}: {exc.strerror}", phase="dns") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _ResolvingBackend(httpcore.AsyncNetworkBackend):
    """Resolve under the probe's timeout and time it, then connect to each address in turn."""

    def __init__(self, timeline: _Timeline, timeout: float) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._timeline = timeline
        self._timeout = timeout
        self._opened: list[httpcore.AsyncNetworkStream] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._timeline.step = "dns"
        began = time.perf_counter()
        try:
            addresses = await _resolve(host, port, self._timeout)
        finally:
            self._timeline.dns(time.perf_counter() - began)
        self._timeline.step = "connect"
        last: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
                continue
            self._opened.append(stream)
            return stream
        raise ConnectError(f"cannot connect to {host}:{port}: {last}", phase="connect") from last

    async def close_all(self) -> None:
        """Close every connection made, also one whose TLS handshake was cancelled by the deadline.

        httpcore closes a stream whose handshake fails, but not one whose handshake is cancelled.
        """
        for stream in self._opened:
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class _Transport(httpx.AsyncBaseTransport):
    """httpx on an httpcore pool of our making (httpx's own transport takes no network backend)."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("the async client sends async request bodies only")
        url = request.url
        response = await self._pool.handle_async_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        if not isinstance(response.stream, AsyncIterable):
            raise TypeError("the async pool returns async response bodies only")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


@contextlib.asynccontextmanager
async def _client(target: HttpTarget, timeline: _Timeline) -> AsyncIterator[httpx.AsyncClient]:
    backend = _ResolvingBackend(timeline, target.timeout)
    pool = httpcore.AsyncConnectionPool(
        ssl_context=client_context(target.ca_file, verify=target.verify),
        network_backend=backend,
        retries=0,
    )
    try:
        async with httpx.AsyncClient(
            transport=_Transport(pool),
            timeout=httpx.Timeout(target.timeout),
            max_redirects=target.max_redirects,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,  # no proxies or .netrc from the environment: measure the service
        ) as client:
            yield client
    finally:
        await backend.close_all()


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise ContentError(f"{response.url}: body larger than {cap} bytes", phase="body")
        chunks.append(chunk)
    return b"".join(chunks)


def _peer_not_after(response: httpx.Response) -> float | None:
    stream = response.extensions.get("network_stream")
    return not_after(stream.get_extra_info("ssl_object")) if stream is not None else None


async def _fetch(
    client: httpx.AsyncClient,
    target: HttpTarget,
    recorder: Recorder,
    timeline: _Timeline,
    url: str,
    form: list[tuple[str, str]] | None = None,
) -> tuple[httpx.Response, str]:
    """One request with its redirects; the body read under the cap and decoded."""
    if form is None:
        request = client.build_request("GET", url, extensions={"trace": timeline})
    else:
        # Encoded here, in the form's own field order, as a browser sends it.
        request = client.build_request(
            "POST",
            url,
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            extensions={"trace": timeline},
        )
    response = await client.send(request, stream=True, follow_redirects=True)
    try:
        recorder.redirects += len(response.history)
        recorder.status_code = response.status_code
        recorder.final_url = str(response.url)
        recorder.cert_not_after = _peer_not_after(response)
        timeline.step = "body"
        body = await _read_capped(response, target.max_body_bytes)
    finally:
        await response.aclose()
    recorder.size = len(body)
    return response, body.decode(response.encoding or "utf-8", errors="replace")


def _check_status(response: httpx.Response, expected: int | None) -> None:
    code = response.status_code
    if code == expected or (expected is None and 200 <= code < 300):
        return
    wanted = f", expected {expected}" if expected is not None else ""
    raise HttpStatusError(f"{response.url}: status {code}{wanted}", phase="first_byte")


async def _log_in(
    client: httpx.AsyncClient,
    target: HttpTarget,
    login: FormLogin,
    recorder: Recorder,
    timeline: _Timeline,
) -> tuple[httpx.Response, str]:
    """GET the login page, POST the form with the credentials, return the page it leads to."""
    page, html = await _fetch(client, target, recorder, timeline, target.url)
    _check_status(page, None)
    form = find_form(html, login.password_field)
    if form is None or not form.has_field(login.username_field):
        raise LoginError(
            f"{page.url}: no form with the fields {login.username_field!r} and "
            f"{login.password_field!r}",
            phase="login",
        )
    fields = form.submission(
        {login.username_field: login.username, login.password_field: login.password}
    )
    action = urljoin(str(page.url), form.action)
    response, body = await _fetch(client, target, recorder, timeline, action, fields)
    if find_form(body, login.password_field) is not None:
        raise LoginError(f"{response.url}: the login form came back", phase="login")
    return response, body


def _ssl_cause(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _map_error(exc: Exception, step: str, timeout: float) -> ProbeError:
    """A library error raised during `step` in the probe's vocabulary."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError | httpcore.TimeoutException):
        return ProbeTimeout(f"{step}: no progress within {timeout:g}s", phase=step)
    if isinstance(exc, httpx.TooManyRedirects | httpx.UnsupportedProtocol | httpx.InvalidURL):
        return HttpStatusError(f"redirects: {text}", phase="first_byte")
    if isinstance(exc, httpx.DecodingError):
        return ContentError(f"body: {text}", phase="body")
    if step == "tls" or _ssl_cause(exc):
        return TLSError(f"tls: {text}", phase="tls")
    if isinstance(exc, httpcore.NetworkError | httpcore.RemoteProtocolError | OSError):
        return ConnectError(f"{step}: connection lost: {text}", phase=step)
    return ProbeError(f"{step}: {type(exc).__name__}: {text}", phase=step)


async def _load(
    client: httpx.AsyncClient, target: HttpTarget, recorder: Recorder, timeline: _Timeline
) -> None:
    if target.login is None:
        response, body = await _fetch(client, target, recorder, timeline, target.url)
    else:
        response, body = await _log_in(client, target, target.login, recorder, timeline)
    _check_status(response, target.expected_status)
    if target.expected_text is not None and target.expected_text not in body:
        raise ContentError(
            f"{response.url}: expected text {target.expected_text!r} not found", phase="body"
        )


async def probe_http(target: HttpTarget) -> WebmailResult:
    """Load the page (logging in first when the target says so) and time every phase."""
    recorder = Recorder(target.url, "http", target.limit)
    timeline = _Timeline(recorder)
    try:
        async with asyncio.timeout(target.timeout), _client(target, timeline) as client:
            await _load(client, target, recorder, timeline)
    except ProbeError as exc:
        return recorder.failure(exc)
    except Exception as exc:  # noqa: BLE001 - every failure of the service becomes a reason
        return recorder.failure(_map_error(exc, timeline.step, target.timeout))
    return recorder.result()
