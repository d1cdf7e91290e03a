"""The webmail probe's http mode against the real test webmail (aiohttp over TLS on loopback)."""

from __future__ import annotations

from typing import Any

import pytest

from mailprobe.probes.errors import WEBMAIL_REASONS
from mailprobe.probes.webmail import FormLogin, HttpTarget, WebmailResult, check_webmail
from mailprobe.probes.webmail_http import probe_http
from tests.helpers.webserver import PASSWORD, USERNAME, WebServer, closed_port

# Allowed measurement error on top of the injected delay and the base load time (the issue's
# precision target for http mode).
TOLERANCE = 0.1
PHASES = {"dns", "connect", "tls", "first_byte", "body"}


def target(server: WebServer, path: str = "/page", **overrides: Any) -> HttpTarget:
    settings: dict[str, Any] = {"timeout": 5.0, "ca_file": server.ca_file}
    url = overrides.pop("url", None) or server.url(path)
    return HttpTarget(url=url, **{**settings, **overrides})


async def delayed_load(
    server: WebServer, delay: float, **overrides: Any
) -> tuple[float, WebmailResult]:
    """(base seconds, delayed result): a load without delay, then one with `delay` in the page."""
    server.delay = 0.0
    base = await probe_http(target(server, **overrides))
    server.delay = delay
    delayed = await probe_http(target(server, **overrides))
    assert base.ok, base.detail
    assert delayed.ok, delayed.detail
    assert delayed.phases["first_byte"] >= delay  # the server's wait is time to first byte
    return base.total_seconds, delayed


async def test_a_load_reports_each_phase_and_they_add_up_to_no_more_than_the_total(
    webserver: WebServer,
) -> None:
    """Every phase is measured, none is negative, and together they stay within the total."""
    result = await probe_http(target(webserver))
    assert result.ok, result.detail
    assert set(result.phases) == PHASES
    assert all(seconds > 0 for seconds in result.phases.values()), result.phases
    assert sum(result.phases.values()) <= result.total_seconds
    assert (result.status_code, result.redirects, result.reason) == (200, 0, None)
    assert result.final_url == webserver.url("/page")
    assert result.bytes > 0
    assert result.mode == "http"


async def test_the_final_hosts_certificate_expiry_is_reported(webserver: WebServer) -> None:
    """cert_not_after is the service certificate's notAfter, to the second."""
    result = await probe_http(target(webserver))
    assert result.cert_not_after == pytest.approx(webserver.cert_not_after, abs=1)


async def test_a_host_name_is_resolved_in_the_dns_phase(webserver: WebServer) -> None:
    """Loading https://localhost:PORT resolves the name before connecting, counted as dns."""
    result = await probe_http(target(webserver, url=webserver.url(host="localhost")))
    assert result.ok, result.detail
    assert result.phases["dns"] > 0
    assert result.final_url == webserver.url(host="localhost")


@pytest.mark.parametrize("delay", [0.5, 3.0])
async def test_an_injected_page_delay_is_measured_within_100_ms(
    webserver: WebServer, delay: float
) -> None:
    """delay <= measured <= delay + base load + 100 ms; a load under the limit is not over it."""
    base, result = await delayed_load(webserver, delay)
    assert delay <= result.total_seconds <= delay + base + TOLERANCE, (base, result.total_seconds)
    assert not result.over_limit


async def test_a_12_s_page_is_measured_within_100_ms_and_counts_over_the_10_s_limit(
    webserver: WebServer,
) -> None:
    """A slow page is a measured success, not a timeout, and over_limit says it broke 10 s."""
    base, result = await delayed_load(webserver, 12.0, timeout=20.0)
    assert 12.0 <= result.total_seconds <= 12.0 + base + TOLERANCE, (base, result.total_seconds)
    assert result.limit == 10.0
    assert result.over_limit


async def test_a_slow_asset_does_not_count_in_http_mode(webserver: WebServer) -> None:
    """http mode fetches the page alone: a 5 s script it references is not waited for."""
    webserver.asset_delay = 5.0
    result = await probe_http(target(webserver))
    assert result.ok, result.detail
    assert result.total_seconds < 5.0


async def test_redirects_are_followed_and_counted(webserver: WebServer) -> None:
    """/redirect/3 takes three redirects to /page; the final status is the page's."""
    result = await probe_http(target(webserver, "/redirect/3", expected_text="Welcome"))
    assert result.ok, result.detail
    assert (result.redirects, result.status_code) == (3, 200)
    assert result.final_url == webserver.url("/page")


@pytest.mark.parametrize(
    ("path", "limit"), [("/loop", 10), ("/redirect/3", 2)], ids=["loop", "over-max"]
)
async def test_redirects_are_bounded(webserver: WebServer, path: str, limit: int) -> None:
    """A redirect loop, or more redirects than max_redirects, is an http_status failure."""
    result = await probe_http(target(webserver, path, max_redirects=limit))
    assert (result.ok, result.reason) == (False, "http_status")


def _failures(server: WebServer) -> dict[str, HttpTarget]:
    hang_url = f"https://127.0.0.1:{server.hang_port}/page"
    return {
        "dns": target(server, url="https://webmail.invalid/"),
        "connect": target(server, url=f"https://127.0.0.1:{closed_port()}/"),
        "tls-wrong-host": target(server, url=f"https://127.0.0.1:{server.wrong_host_port}/page"),
        "tls-unknown-ca": target(server, ca_file=server.other_ca_file),
        "http_status": target(server, "/error"),
        "content": target(server, expected_text="not on this page"),
        "timeout-no-answer": target(server, "/hang", timeout=1.0),
        "timeout-no-handshake": target(server, url=hang_url, timeout=1.0),
    }


FAILURE_KINDS = [
    "dns", "connect", "tls-wrong-host", "tls-unknown-ca", "http_status", "content",
    "timeout-no-answer", "timeout-no-handshake",
]  # fmt: skip


@pytest.mark.parametrize("kind", FAILURE_KINDS)
async def test_each_failure_kind_gets_its_reason(webserver: WebServer, kind: str) -> None:
    """The reason is the failure's kind, from the fixed vocabulary, and the load is not ok."""
    failing = _failures(webserver)[kind]
    result: WebmailResult = await check_webmail(failing)
    assert not result.ok
    assert result.reason == kind.partition("-")[0]
    assert result.reason in WEBMAIL_REASONS
    assert result.phase is not None
    if result.reason == "timeout":  # given up at the deadline, not later
        assert failing.timeout <= result.total_seconds < failing.timeout + 1.5
    else:  # failed at once, not after waiting for the deadline
        assert result.total_seconds < failing.timeout


async def test_the_tls_failure_is_reported_in_the_tls_phase(webserver: WebServer) -> None:
    """A certificate for another host fails the handshake: phase tls, after connect succeeded."""
    url = f"https://127.0.0.1:{webserver.wrong_host_port}/page"
    result = await probe_http(target(webserver, url=url))
    assert (result.reason, result.phase) == ("tls", "tls")
    assert result.phases["connect"] > 0


async def test_verify_off_accepts_a_certificate_for_another_host(webserver: WebServer) -> None:
    """verify=False loads the page behind the wrong-host certificate."""
    url = f"https://127.0.0.1:{webserver.wrong_host_port}/page"
    result = await probe_http(target(webserver, url=url, verify=False))
    assert result.ok, result.detail


async def test_an_expected_status_other_than_2xx_can_be_required(webserver: WebServer) -> None:
    """expected_status=500 makes the 500 page a success and a 200 page a failure."""
    assert (await probe_http(target(webserver, "/error", expected_status=500))).ok
    result = await probe_http(target(webserver, expected_status=500))
    assert (result.reason, result.status_code) == ("http_status", 200)


async def test_a_body_over_the_cap_is_a_content_failure(webserver: WebServer) -> None:
    """The 2 MiB page with a 1 MiB cap: reading stops at the cap, reason content."""
    result = await probe_http(target(webserver, "/big", max_body_bytes=1024 * 1024))
    assert (result.ok, result.reason, result.phase) == (False, "content", "body")
    assert (await probe_http(target(webserver, "/big"))).ok


def _login(password: str = PASSWORD) -> FormLogin:
    return FormLogin(username=USERNAME, password=password)


async def test_form_login_reaches_the_inbox(webserver: WebServer) -> None:
    """The login form is posted with its CSRF token; the session cookie opens the inbox."""
    result = await probe_http(target(webserver, "/login", login=_login(), expected_text="Inbox"))
    assert result.ok, result.detail
    assert webserver.logins == 1
    assert result.final_url == webserver.url("/inbox")
    assert result.redirects == 1  # the 303 after the POST
    assert result.status_code == 200


async def test_the_inbox_delay_after_login_is_measured(webserver: WebServer) -> None:
    """A 0.5 s inbox after login: delay <= measured <= delay + base + 100 ms."""
    base, result = await delayed_load(webserver, 0.5, url=webserver.url("/login"), login=_login())
    assert 0.5 <= result.total_seconds <= 0.5 + base + TOLERANCE, (base, result.total_seconds)


async def test_a_refused_login_is_a_login_failure(webserver: WebServer) -> None:
    """A wrong password brings the login form back: reason login, nobody logged in."""
    result = await probe_http(target(webserver, "/login", login=_login("wrong")))
    assert (result.ok, result.reason, result.phase) == (False, "login", "login")
    assert webserver.logins == 0


async def test_a_page_without_the_login_form_is_a_login_failure(webserver: WebServer) -> None:
    """A login configured on a page with no password field fails as login, not as content."""
    result = await probe_http(target(webserver, "/page", login=_login()))
    assert (result.ok, result.reason) == (False, "login")
    assert "no form" in result.detail
