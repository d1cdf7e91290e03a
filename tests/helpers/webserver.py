"""A real webmail stand-in for the webmail probe's tests: aiohttp over TLS on 127.0.0.1.

Listeners (all on 127.0.0.1, port 0):
- `port`: the service, with a certificate for localhost and 127.0.0.1 from a trustme CA;
- `wrong_host_port`: the same app behind a certificate for another host name (a TLS error);
- `hang_port`: accepts TCP connections and never sends a byte, not even a TLS handshake.

Paths on the service:
- `/login` (GET: the form with a hidden CSRF token), `/session` (POST: sets the session cookie
  and redirects to /inbox; bad credentials or token: the login form again, status 200);
- `/inbox` (needs the session cookie, else a redirect to /login) and `/page` (open): after
  `delay` seconds, a page with the list `#messages` and a script `/asset/app.js` that answers
  after `asset_delay` seconds and then marks the list `.loaded`, so the browser's load event and
  the selector `#messages.loaded` wait for it;
- `/error` (500), `/hang` (TLS and headers fine, then never answers), `/redirect/N` (N redirects,
  then /page), `/loop` (redirects to itself), `/big` (a 2 MiB page).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
from pathlib import Path
from types import TracebackType

import trustme
from aiohttp import web

USERNAME = "alice@webmail.test"
PASSWORD = "alice-webmail-secret"
SESSION_COOKIE = "wm_session"
BIG_BYTES = 2 * 1024 * 1024

_LOGIN = """<!doctype html>
<html><head><meta charset="utf-8"><title>Webmail login</title></head><body>
{error}
<form method="post" action="/session">
  <input type="hidden" name="_token" value="{token}">
  <input type="text" id="username" name="username">
  <input type="password" id="password" name="password">
  <button type="submit" id="submit">Log in</button>
</form>
</body></html>
"""
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head><body>
<h1>{title}</h1>
<ul id="messages"><li>Welcome to your mailbox</li><li>Second message</li></ul>
<script src="/asset/app.js"></script>
</body></html>
"""
_APP_JS = 'document.getElementById("messages").classList.add("loaded");\n'


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebServer:
    """The started test webmail; set `delay` and `asset_delay` (seconds) before a load."""

    def __init__(self, directory: Path) -> None:
        self.delay = 0.0
        self.asset_delay = 0.0
        self.ca = trustme.CA()
        self.ca_file = directory / "webmail-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        # A CA the client does not trust: the service's certificate is unknown to it.
        self.other_ca_file = directory / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(self.other_ca_file))
        self._cert = self.ca.issue_cert("localhost", "127.0.0.1")
        self._wrong_cert = self.ca.issue_cert("wrong-host.webmail.test")
        self._tokens: set[str] = set()
        self._sessions: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._hang: asyncio.Server | None = None
        self._hung: set[asyncio.StreamWriter] = set()
        self.port = self.wrong_host_port = self.hang_port = 0
        self.logins = 0  # successful logins, so a test can tell the form was really posted

    def url(self, path: str = "/page", *, host: str = "127.0.0.1") -> str:
        """The service's URL for `path`."""
        return f"https://{host}:{self.port}{path}"

    @property
    def cert_not_after(self) -> float:
        """The service certificate's notAfter (Unix seconds)."""
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(self._cert.cert_chain_pems[0].bytes())
        return cert.not_valid_after_utc.timestamp()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/session", self._session)
        app.router.add_get("/inbox", self._inbox)
        app.router.add_get("/page", self._page)
        app.router.add_get("/asset/app.js", self._asset)
        app.router.add_get("/error", self._error)
        app.router.add_get("/hang", self._hang_forever)
        app.router.add_get("/redirect/{n:\\d+}", self._redirect)
        app.router.add_get("/loop", self._loop)
        app.router.add_get("/big", self._big)
        return app

    def _login_form(self, error: str = "") -> web.Response:
        token = secrets.token_urlsafe(16)
        self._tokens.add(token)
        return web.Response(text=_LOGIN.format(token=token, error=error), content_type="text/html")

    async def _login_page(self, request: web.Request) -> web.Response:
        return self._login_form()

    async def _session(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = form.get("_token")
        if (
            not isinstance(token, str)
            or token not in self._tokens
            or form.get("username") != USERNAME
            or form.get("password") != PASSWORD
        ):
            return self._login_form('<p class="error">Login failed</p>')
        self._tokens.discard(token)
        session = secrets.token_urlsafe(16)
        self._sessions.add(session)
        self.logins += 1
        response = web.HTTPSeeOther("/inbox")
        response.set_cookie(SESSION_COOKIE, session, httponly=True, secure=True)
        raise response

    async def _page(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        return web.Response(text=_PAGE.format(title="Welcome"), content_type="text/html")

    async def _inbox(self, request: web.Request) -> web.Response:
        if request.cookies.get(SESSION_COOKIE) not in self._sessions:
            raise web.HTTPFound("/login")
        await asyncio.sleep(self.delay)
        return web.Response(text=_PAGE.format(title="Inbox"), content_type="text/html")

    async def _asset(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.asset_delay)
        return web.Response(
            text=_APP_JS, content_type="text/javascript", headers={"Cache-Control": "no-store"}
        )

    async def _error(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")

    async def _hang_forever(self, request: web.Request) -> web.Response:
        await asyncio.Event().wait()  # never set: the handler waits until the server stops
        return web.Response(status=503)

    async def _redirect(self, request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPFound(f"/redirect/{left - 1}" if left > 1 else "/page")

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * BIG_BYTES, content_type="text/html")

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._hung.add(writer)
        try:
            while await reader.read(4096):
                pass
        finally:
            self._hung.discard(writer)
            writer.close()

    def _tls(self, cert: trustme.LeafCert) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return ctx

    async def __aenter__(self) -> WebServer:
        self._runner = web.AppRunner(self._app(), handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        for attr, cert in (("port", self._cert), ("wrong_host_port", self._wrong_cert)):
            sock = _bound_socket()
            setattr(self, attr, sock.getsockname()[1])
            await web.SockSite(self._runner, sock, ssl_context=self._tls(cert)).start()
        self._hang = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        self.hang_port = self._hang.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._hang is not None:
            self._hang.close()
            for writer in list(self._hung):
                writer.close()
            await self._hang.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()
