"""browser mode of the webmail probe: the page in headless Chromium, driven by Playwright.

Each load starts the system's Chromium (Debian's /usr/bin/chromium; Playwright's own browser
downloads are never used) with an empty profile and a scratch HOME, so every load is a first visit:
no cache, no cookies, nothing left behind. The clock starts once the browser is up (starting it is
the agent's cost, not the provider's) and measures what a user waits for:

- without login: `load` (navigation until the load event, so scripts and images count) and
  `ready` (then until the ready selector is visible);
- with login: `login_page` (the login page's load event), `login` (filling and submitting the form)
  and `inbox` (until the ready selector is visible and the inbox's load event has fired).

Certificates: `verify=False` ignores certificate errors; `ca_file` is trusted through a private NSS
database in the scratch HOME (Chromium on Linux trusts $HOME/.pki/nssdb; Debian's certutil, package
libnss3-tools, writes it). A refused login is recognised when the deadline passes with the login
form still on screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

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
from mailprobe.probes.nssdb import trust_ca_file
from mailprobe.probes.webmail import (
    BROWSER_EXTRA_HINT,
    BrowserLogin,
    BrowserTarget,
    BrowserUnavailable,
    Recorder,
    WebmailResult,
)

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Playwright, Response

log = logging.getLogger(__name__)

# Without the background-networking flags Chromium keeps dialling Google's services, which a closed
# network refuses many times a second; QUIC off keeps the load on TCP + TLS like the http mode.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LAUNCH_TIMEOUT = 30.0
SCREENSHOT_TIMEOUT = 2.0  # per attempt
SCREENSHOT_ATTEMPTS = 4
SCREENSHOT_RETRY = 0.3
CLOSE_TIMEOUT = 10.0
CHECK_TIMEOUT = 2.0  # a look at the page after the deadline
_NET_ERROR = re.compile(r"net::(ERR_[A-Z0-9_]+)")
_NET_REASONS = {
    "ERR_NAME_NOT_RESOLVED": ResolveError,
    "ERR_NAME_RESOLUTION_FAILED": ResolveError,
    "ERR_TIMED_OUT": ProbeTimeout,
    "ERR_CONNECTION_TIMED_OUT": ProbeTimeout,
    "ERR_TOO_MANY_REDIRECTS": HttpStatusError,
    "ERR_INVALID_REDIRECT": HttpStatusError,
    "ERR_UNSAFE_REDIRECT": HttpStatusError,
    "ERR_INVALID_RESPONSE": HttpStatusError,
    "ERR_INVALID_HTTP_RESPONSE": HttpStatusError,
}
_NET_PREFIXES = (
    ("ERR_CERT_", TLSError),
    ("ERR_SSL_", TLSError),
    ("ERR_BAD_SSL_", TLSError),
    ("ERR_DNS_", ResolveError),
    ("ERR_CONNECTION_", ConnectError),
    ("ERR_ADDRESS_", ConnectError),
    ("ERR_EMPTY_RESPONSE", ConnectError),
    ("ERR_SOCKET_", ConnectError),
)
_BYTES_JS = """() => performance.getEntriesByType("navigation")
    .concat(performance.getEntriesByType("resource"))
    .reduce((sum, entry) => sum + (entry.encodedBodySize || 0), 0)"""


def playwright_api() -> ModuleType:
    """playwright.async_api, or BrowserUnavailable naming the extra that provides it."""
    try:
        return importlib.import_module("playwright.async_api")
    except ImportError as exc:
        raise BrowserUnavailable(BROWSER_EXTRA_HINT) from exc


class _Documents:
    """The main frame's documents as they arrive: the last one, and the redirects before each."""

    def __init__(self, page: Page) -> None:
        self._page = page
        self.last: Response | None = None
        self.redirects = 0
        page.on("response", self._seen)

    def _seen(self, response: Response) -> None:
        request = response.request
        if 300 <= response.status < 400 or not request.is_navigation_request():
            return
        if request.frame != self._page.main_frame:
            return
        self.last = response
        hop = request.redirected_from
        while hop is not None:
            self.redirects += 1
            hop = hop.redirected_from


@dataclasses.dataclass(slots=True)
class _Run:
    """One load in progress: the page, what it has seen, and the step it is in."""

    page: Page
    target: BrowserTarget
    recorder: Recorder
    documents: _Documents
    step: str = "load"

    def ms(self) -> float:
        """What is left of the target's timeout, in Playwright's milliseconds (at least 1)."""
        return max(1.0, (self.target.timeout - self.recorder.elapsed()) * 1000)

    def timed(self, phase: str, began: float) -> None:
        """Count the time since `began` towards `phase`."""
        self.recorder.add(phase, time.perf_counter() - began)

    async def open(self, phase: str) -> None:
        """Navigate to the target's URL and wait for the load event."""
        self.step = phase
        began = time.perf_counter()
        await self.page.goto(self.target.url, wait_until="load", timeout=self.ms())
        self.timed(phase, began)
        await self.check_status(None)

    async def visible(self, selector: str) -> None:
        await self.page.locator(selector).first.wait_for(state="visible", timeout=self.ms())

    async def check_status(self, expected: int | None) -> None:
        """Note the main document's status, URL and certificate; raise if the status is wrong."""
        last = self.documents.last
        code = last.status if last is not None else None
        self.recorder.status_code = code
        self.recorder.redirects = self.documents.redirects
        self.recorder.final_url = last.url if last is not None else self.page.url
        details = await last.security_details() if last is not None else None
        valid_to = details.get("validTo") if details else None
        self.recorder.cert_not_after = float(valid_to) if valid_to else None
        if code is not None and (code == expected or (expected is None and 200 <= code < 300)):
            return
        wanted = f", expected {expected}" if expected is not None else ""
        raise HttpStatusError(f"{self.recorder.final_url}: status {code}{wanted}", phase=self.step)

    async def log_in(self, login: BrowserLogin, ready: str) -> None:
        await self.open("login_page")
        self.step = "login"
        began = time.perf_counter()
        await self.page.fill(login.username_selector, login.username, timeout=self.ms())
        await self.page.fill(login.password_selector, login.password, timeout=self.ms())
        if login.submit_selector is None:
            await self.page.press(login.password_selector, "Enter", timeout=self.ms())
        else:
            await self.page.click(login.submit_selector, timeout=self.ms())
        self.timed("login", began)
        self.step = "inbox"
        began = time.perf_counter()
        await self.visible(ready)
        await self.page.wait_for_load_state("load", timeout=self.ms())
        self.timed("inbox", began)

    async def load(self) -> None:
        target = self.target
        if target.login is not None and target.ready_selector is not None:
            await self.log_in(target.login, target.ready_selector)
        else:
            await self.open("load")
            if target.ready_selector is not None:
                self.step = "ready"
                began = time.perf_counter()
                await self.visible(target.ready_selector)
                self.timed("ready", began)
        self.step = "content"
        await self.check_status(target.expected_status)
        self.recorder.size = int(await self.page.evaluate(_BYTES_JS))
        if target.expected_text is not None and target.expected_text not in (
            await self.page.content()
        ):
            raise ContentError(
                f"{self.page.url}: expected text {target.expected_text!r} not found",
                phase="content",
            )


def _map_error(api: ModuleType, exc: Exception, step: str, timeout: float) -> ProbeError:
    """A Playwright or asyncio error raised during `step` in the probe's vocabulary."""
    if isinstance(exc, TimeoutError | api.TimeoutError):
        return ProbeTimeout(f"{step}: not done within {timeout:g}s", phase=step)
    text = (str(exc) or type(exc).__name__).splitlines()[0]
    match = _NET_ERROR.search(text)
    if match is not None:
        code = match.group(1)
        kind = _NET_REASONS.get(code) or next(
            (cls for prefix, cls in _NET_PREFIXES if code.startswith(prefix)), ProbeError
        )
        return kind(f"{step}: {code}", phase=step)
    return ProbeError(f"{step}: {type(exc).__name__}: {text}", phase=step)


async def _login_refused(page: Page, login: BrowserLogin) -> bool:
    """After the deadline: is the login form still (or again) on screen?"""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await page.locator(login.password_selector).first.is_visible()
    except Exception:  # noqa: BLE001 - a page too broken to ask is not a refused login
        return False


async def _stop_loading(page: Page) -> None:
    """Stop a navigation still pending (a hung server): until then no screenshot can be taken."""
    with contextlib.suppress(Exception):
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Page.stopLoading")
        await cdp.detach()


async def _capture(page: Page, partial: Path, *, pending: bool) -> None:
    # Chromium paints its error page in a fresh renderer after the navigation failed, and a capture
    # taken meanwhile fails ("Unable to capture screenshot") or hangs: try again, briefly.
    if pending:
        await _stop_loading(page)
    for attempt in range(1, SCREENSHOT_ATTEMPTS + 1):
        try:
            await page.screenshot(path=str(partial), type="png", timeout=SCREENSHOT_TIMEOUT * 1000)
        except Exception as exc:
            if attempt == SCREENSHOT_ATTEMPTS:
                raise
            if "Timeout" in str(exc):
                await _stop_loading(page)
            await asyncio.sleep(SCREENSHOT_RETRY)
        else:
            return


async def _screenshot(page: Page, path: Path, *, pending: bool) -> Path | None:
    """Write the page as it is now to `path` (atomically); None if that failed."""
    partial = path.with_name(path.name + ".partial")
    budget = SCREENSHOT_ATTEMPTS * (SCREENSHOT_TIMEOUT + SCREENSHOT_RETRY) + 1
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        async with asyncio.timeout(budget):
            await _capture(page, partial, pending=pending)
        partial.replace(path)
    except Exception as exc:  # noqa: BLE001 - a missing screenshot must not hide the failure
        log.warning("webmail screenshot %s not written: %s", path, exc)
        partial.unlink(missing_ok=True)
        return None
    return path


async def _measure(
    api: ModuleType, page: Page, target: BrowserTarget, screenshot: Path | None
) -> WebmailResult:
    run = _Run(page, target, Recorder(target.url, "browser", target.limit), _Documents(page))
    try:
        async with asyncio.timeout(target.timeout):
            await run.load()
        return run.recorder.result()
    except ProbeError as exc:
        failure = exc
    except Exception as exc:  # noqa: BLE001 - every failure of the service becomes a reason
        failure = _map_error(api, exc, run.step, target.timeout)
    login = target.login
    timed_out_in_inbox = failure.reason == "timeout" and run.step == "inbox"
    if timed_out_in_inbox and login is not None and await _login_refused(page, login):
        failure = LoginError("inbox: the login form is still shown", phase="login")
    result = run.recorder.failure(failure)
    if screenshot is not None:
        pending = failure.reason in ("timeout", "login")
        shot = await _screenshot(page, screenshot, pending=pending)
        result = dataclasses.replace(result, screenshot=shot)
    return result


async def _launch(
    api: ModuleType, playwright: Playwright, target: BrowserTarget, scratch: Path
) -> BrowserContext:
    home = scratch / "home"
    home.mkdir()
    if target.ca_file is not None:
        await trust_ca_file(home, target.ca_file, timeout=LAUNCH_TIMEOUT)
    try:
        async with asyncio.timeout(LAUNCH_TIMEOUT):
            context: BrowserContext = await playwright.chromium.launch_persistent_context(
                str(scratch / "profile"),
                executable_path=target.chromium,
                headless=True,
                args=list(CHROMIUM_FLAGS),
                ignore_https_errors=not target.verify,
                env={**os.environ, "HOME": str(home)},
                timeout=LAUNCH_TIMEOUT * 1000,
            )
    except (TimeoutError, api.Error) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BrowserUnavailable(f"Chromium ({target.chromium}) did not start: {first}") from exc
    return context


async def _close(context: BrowserContext) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await context.close()
    except Exception as exc:  # noqa: BLE001 - the load is measured; a messy exit must not undo it
        log.warning("Chromium did not close cleanly: %s", exc or type(exc).__name__)


async def probe_browser(target: BrowserTarget, *, screenshot: Path | None = None) -> WebmailResult:
    """Open the page in a fresh headless Chromium; on failure, write `screenshot` when given."""
    api = playwright_api()
    async with contextlib.AsyncExitStack() as stack:
        scratch = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="mailprobe-chromium-", ignore_cleanup_errors=True)
        )
        try:
            async with asyncio.timeout(LAUNCH_TIMEOUT):
                playwright: Playwright = await stack.enter_async_context(api.async_playwright())
        except (TimeoutError, api.Error) as exc:
            raise BrowserUnavailable(f"Playwright did not start: {exc}") from exc
        context = await _launch(api, playwright, target, Path(scratch))
        stack.push_async_callback(_close, context)
        try:
            async with asyncio.timeout(LAUNCH_TIMEOUT):
                page = await context.new_page()
        except (TimeoutError, api.Error) as exc:
            raise BrowserUnavailable(f"Chromium opened no page: {exc}") from exc
        return await _measure(api, page, target, screenshot)
