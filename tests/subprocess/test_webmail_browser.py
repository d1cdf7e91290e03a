"""The webmail probe's browser mode: headless Chromium against the real test webmail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mailprobe.probes.errors import WEBMAIL_REASONS
from mailprobe.probes.webmail import (
    BrowserLogin,
    BrowserTarget,
    BrowserUnavailable,
    WebmailResult,
    check_webmail,
)
from mailprobe.probes.webmail_browser import probe_browser
from tests.helpers.webserver import PASSWORD, USERNAME, WebServer, closed_port

# Allowed measurement error on top of the injected delay and the base load time (the issue's
# precision target for browser mode).
TOLERANCE = 0.3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
READY = "#messages.loaded"  # set by the page's script: visible only once the script has run


@pytest.fixture(autouse=True)
def _needs_chromium(chromium: str) -> None:
    """Every test here drives the system Chromium."""


def target(server: WebServer, path: str = "/page", **overrides: Any) -> BrowserTarget:
    settings: dict[str, Any] = {"timeout": 10.0, "ca_file": server.ca_file}
    url = overrides.pop("url", None) or server.url(path)
    return BrowserTarget(url=url, **{**settings, **overrides})


def login(password: str = PASSWORD) -> BrowserLogin:
    return BrowserLogin(
        username=USERNAME,
        password=password,
        username_selector="#username",
        password_selector="#password",
        submit_selector="#submit",
    )


async def delayed_load(
    server: WebServer, delay: float, **overrides: Any
) -> tuple[float, WebmailResult]:
    """(base seconds, delayed result): a load without delay, then one with `delay` in the page."""
    server.delay = 0.0
    base = await probe_browser(target(server, **overrides))
    server.delay = delay
    delayed = await probe_browser(target(server, **overrides))
    assert base.ok, base.detail
    assert delayed.ok, delayed.detail
    return base.total_seconds, delayed


async def test_a_load_is_timed_to_the_load_event_and_the_ready_selector(
    webserver: WebServer, tmp_path: Path
) -> None:
    """Phases load and ready make up the total; status, certificate, bytes; no screenshot."""
    shot = tmp_path / "ok.png"
    result = await check_webmail(target(webserver, ready_selector=READY), screenshot=shot)
    assert result.ok, result.detail
    assert set(result.phases) == {"load", "ready"}
    assert sum(result.phases.values()) <= result.total_seconds
    assert (result.status_code, result.redirects, result.mode) == (200, 0, "browser")
    assert result.final_url == webserver.url("/page")
    assert result.cert_not_after == pytest.approx(webserver.cert_not_after, abs=1)
    assert result.bytes > 0
    assert (result.screenshot, shot.exists()) == (None, False)


@pytest.mark.parametrize("delay", [0.5, 3.0])
async def test_an_injected_page_delay_is_measured_within_300_ms(
    webserver: WebServer, delay: float
) -> None:
    """delay <= measured <= delay + base load + 300 ms, and not over the 10 s limit."""
    base, result = await delayed_load(webserver, delay, ready_selector=READY)
    assert delay <= result.total_seconds <= delay + base + TOLERANCE, (base, result.total_seconds)
    assert not result.over_limit


async def test_a_12_s_page_is_measured_within_300_ms_and_counts_over_the_10_s_limit(
    webserver: WebServer,
) -> None:
    """A slow page is a measured success, not a timeout, and over_limit says it broke 10 s."""
    base, result = await delayed_load(webserver, 12.0, ready_selector=READY, timeout=20.0)
    assert 12.0 <= result.total_seconds <= 12.0 + base + TOLERANCE, (base, result.total_seconds)
    assert result.limit == 10.0
    assert result.over_limit


async def test_a_slow_script_delays_the_load_event_and_counts(webserver: WebServer) -> None:
    """The page's script answers after 2 s: the load event, and so the load, waits for it."""
    webserver.asset_delay = 2.0
    result = await probe_browser(target(webserver))
    assert result.ok, result.detail
    assert result.phases["load"] >= 2.0


async def test_redirects_are_followed_and_counted(webserver: WebServer) -> None:
    """/redirect/3 takes three redirects to /page."""
    result = await probe_browser(target(webserver, "/redirect/3", ready_selector=READY))
    assert result.ok, result.detail
    assert (result.redirects, result.status_code) == (3, 200)
    assert result.final_url == webserver.url("/page")


FAILURE_KINDS = [
    "dns", "connect", "tls-wrong-host", "tls-unknown-ca", "http_status", "content", "timeout",
]  # fmt: skip


def _failure(server: WebServer, kind: str) -> BrowserTarget:
    return {
        "dns": lambda: target(server, url="https://webmail.invalid/"),
        "connect": lambda: target(server, url=f"https://127.0.0.1:{closed_port()}/"),
        "tls-wrong-host": lambda: target(
            server, url=f"https://127.0.0.1:{server.wrong_host_port}/page"
        ),
        "tls-unknown-ca": lambda: target(server, ca_file=server.other_ca_file),
        "http_status": lambda: target(server, "/error"),
        "content": lambda: target(server, expected_text="not on this page"),
        # The hang listener accepts TCP and never answers, not even the TLS handshake.
        "timeout": lambda: target(
            server, url=f"https://127.0.0.1:{server.hang_port}/page", timeout=2.0
        ),
    }[kind]()


@pytest.mark.parametrize("kind", FAILURE_KINDS)
async def test_each_failure_kind_gets_its_reason_and_a_screenshot(
    webserver: WebServer, tmp_path: Path, kind: str
) -> None:
    """The reason is the failure's kind; the screenshot of the failure is written as a PNG."""
    shot = tmp_path / "webmail" / "main-last-failure.png"
    failing = _failure(webserver, kind)
    result = await check_webmail(failing, screenshot=shot)
    assert not result.ok
    assert result.reason == kind.partition("-")[0]
    assert result.reason in WEBMAIL_REASONS
    assert result.screenshot == shot
    assert shot.read_bytes().startswith(PNG_MAGIC)
    assert not list(shot.parent.glob("*.partial"))
    if result.reason == "timeout":  # given up at the deadline, not later
        assert failing.timeout <= result.total_seconds < failing.timeout + 1.5
    else:  # failed at once, not after waiting for the deadline
        assert result.total_seconds < failing.timeout


async def test_verify_off_accepts_a_certificate_for_another_host(webserver: WebServer) -> None:
    """verify=False loads the page behind the wrong-host certificate."""
    url = f"https://127.0.0.1:{webserver.wrong_host_port}/page"
    result = await probe_browser(target(webserver, url=url, verify=False, ca_file=None))
    assert result.ok, result.detail


async def test_login_by_selectors_reaches_the_inbox(webserver: WebServer) -> None:
    """The form is filled and submitted; the inbox's ready selector ends the clock."""
    result = await probe_browser(
        target(webserver, "/login", login=login(), ready_selector=READY, expected_text="Inbox")
    )
    assert result.ok, result.detail
    assert webserver.logins == 1
    assert set(result.phases) == {"login_page", "login", "inbox"}
    assert result.final_url == webserver.url("/inbox")
    assert result.status_code == 200


async def test_login_by_enter_without_a_submit_selector(webserver: WebServer) -> None:
    """Without submit_selector the form is submitted with Enter in the password field."""
    enter = BrowserLogin(USERNAME, PASSWORD, "#username", "#password")
    result = await probe_browser(target(webserver, "/login", login=enter, ready_selector=READY))
    assert result.ok, result.detail
    assert webserver.logins == 1


async def test_the_inbox_delay_after_login_is_measured(webserver: WebServer) -> None:
    """A 0.5 s inbox after login: delay <= measured <= delay + base + 300 ms."""
    base, result = await delayed_load(
        webserver, 0.5, url=webserver.url("/login"), login=login(), ready_selector=READY
    )
    assert 0.5 <= result.total_seconds <= 0.5 + base + TOLERANCE, (base, result.total_seconds)


async def test_a_refused_login_is_a_login_failure(webserver: WebServer, tmp_path: Path) -> None:
    """A wrong password leaves the login form on screen: reason login at the deadline."""
    shot = tmp_path / "login.png"
    result = await probe_browser(
        target(webserver, "/login", login=login("wrong"), ready_selector=READY, timeout=3.0),
        screenshot=shot,
    )
    assert (result.ok, result.reason, result.phase) == (False, "login", "login")
    assert webserver.logins == 0
    assert shot.read_bytes().startswith(PNG_MAGIC)


async def test_a_missing_chromium_is_unavailable_not_a_failure(webserver: WebServer) -> None:
    """No browser at the configured path raises BrowserUnavailable: no result, no reason."""
    with pytest.raises(BrowserUnavailable, match="did not start"):
        await probe_browser(target(webserver, chromium="/nonexistent/chromium"))


def test_a_browser_login_needs_a_ready_selector() -> None:
    """Only the inbox's ready selector can tell that the login led somewhere."""
    with pytest.raises(ValueError, match="ready_selector"):
        BrowserTarget(url="https://webmail.test/", timeout=5.0, login=login())


async def test_without_the_browser_extra_the_error_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Playwright missing: BrowserUnavailable tells to install mailprobe[browser]."""
    monkeypatch.setitem(sys.modules, "playwright", None)
    monkeypatch.setitem(sys.modules, "playwright.async_api", None)
    with pytest.raises(BrowserUnavailable, match=r"pip install 'mailprobe\[browser\]'"):
        await probe_browser(BrowserTarget(url="https://webmail.test/", timeout=5.0))
