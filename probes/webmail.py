"""Webmail probe: how long the provider's webmail takes to open, and why it did not.

Two modes share the targets and the result defined here:

- `http` (probes/webmail_http.py): one timed request chain over httpx, with the phases dns,
  connect, tls, first_byte (request sent until the response headers arrived) and body, summed over
  every request of the chain (redirects, login page, login POST), so they add up to the total.
- `browser` (probes/webmail_browser.py): the page in headless Chromium, timed to the load event
  and to the ready selector being visible, so scripts and assets count as a user sees them.

A probe never raises for a failure of the service: it returns a WebmailResult with `ok=False`, a
reason from WEBMAIL_REASONS and the time spent until then. It raises BrowserUnavailable when the
machine cannot run the browser mode at all (a deployment problem, not a provider outage).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from mailprobe.probes.errors import WEBMAIL_REASONS, ProbeError

Mode = Literal["http", "browser"]
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_CHROMIUM = "/usr/bin/chromium"
BROWSER_EXTRA_HINT = "the browser mode needs the browser extra: pip install 'mailprobe[browser]'"


class BrowserUnavailable(RuntimeError):
    """This machine cannot run the browser mode (Playwright missing, Chromium does not start)."""


@dataclass(frozen=True, slots=True)
class FormLogin:
    """http mode: the login form is found by its password field and posted with these fields."""

    username: str
    password: str
    username_field: str = "username"
    password_field: str = "password"  # noqa: S105 - the field's name, not a password


@dataclass(frozen=True, slots=True)
class BrowserLogin:
    """browser mode: the form is filled by selectors; without submit_selector, Enter submits."""

    username: str
    password: str
    username_selector: str
    password_selector: str
    submit_selector: str | None = None


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """A page fetched over HTTP(S); `url` is the login page when `login` is set."""

    url: str
    timeout: float
    limit: float = 10.0
    expected_status: int | None = None  # None: any 2xx after redirects
    expected_text: str | None = None
    login: FormLogin | None = None
    max_redirects: int = 10
    max_body_bytes: int = DEFAULT_MAX_BODY
    verify: bool = True
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class BrowserTarget:
    """A page opened in headless Chromium; `url` is the login page when `login` is set."""

    url: str
    timeout: float
    limit: float = 10.0
    expected_status: int | None = None  # of the final main document; None: any 2xx
    expected_text: str | None = None  # searched in the page's HTML after scripts ran
    ready_selector: str | None = None
    login: BrowserLogin | None = None
    verify: bool = True
    ca_file: Path | None = None
    chromium: str = DEFAULT_CHROMIUM

    def __post_init__(self) -> None:
        if self.login is not None and self.ready_selector is None:
            # Only the inbox's ready selector tells that the login led somewhere.
            raise ValueError("a browser login needs ready_selector")


@dataclass(frozen=True, slots=True)
class WebmailResult:
    """One webmail load: how long it took, by phase, and whether it worked (and if not, why)."""

    url: str
    mode: Mode
    ok: bool
    total_seconds: float
    phases: Mapping[str, float]
    status_code: int | None
    redirects: int
    reason: str | None  # None when ok, else one of WEBMAIL_REASONS
    phase: str | None  # where it failed
    detail: str  # for the log, never a label
    cert_not_after: float | None  # Unix seconds, final host; None over plain HTTP
    limit: float
    final_url: str | None = None
    screenshot: Path | None = None  # browser mode: written on failure when asked for
    bytes: int = 0  # http: the final page's body; browser: the page and its resources

    @property
    def over_limit(self) -> bool:
        """The load took longer than the limit (a failure that waited past it counts too)."""
        return self.total_seconds > self.limit


@dataclass(slots=True)
class Recorder:
    """What a probe learns as it goes; `result()` freezes it, `failure()` too, with the reason."""

    url: str
    mode: Mode
    limit: float
    started: float = field(default_factory=time.perf_counter)
    phases: dict[str, float] = field(default_factory=dict)
    status_code: int | None = None
    redirects: int = 0
    cert_not_after: float | None = None
    final_url: str | None = None
    size: int = 0
    screenshot: Path | None = None

    def add(self, phase: str, seconds: float) -> None:
        """Count `seconds` towards `phase`."""
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def elapsed(self) -> float:
        """Seconds since the probe started."""
        return time.perf_counter() - self.started

    def result(self, *, ok: bool = True, reason: str | None = None, phase: str | None = None,
               detail: str = "ok") -> WebmailResult:  # fmt: skip
        """The frozen result, total measured now."""
        if reason is not None and reason not in WEBMAIL_REASONS:
            raise ValueError(f"reason {reason!r} is not in WEBMAIL_REASONS")
        return WebmailResult(
            url=self.url,
            mode=self.mode,
            ok=ok,
            total_seconds=self.elapsed(),
            phases=MappingProxyType(dict(self.phases)),
            status_code=self.status_code,
            redirects=self.redirects,
            reason=reason,
            phase=phase,
            detail=detail,
            cert_not_after=self.cert_not_after,
            limit=self.limit,
            final_url=self.final_url,
            screenshot=self.screenshot,
            bytes=self.size,
        )

    def failure(self, error: ProbeError) -> WebmailResult:
        """The result of a load that failed with `error`."""
        return self.result(ok=False, reason=error.reason, phase=error.phase, detail=str(error))


async def check_webmail(
    target: HttpTarget | BrowserTarget, *, screenshot: Path | None = None
) -> WebmailResult:
    """Load the webmail once in the target's mode.

    `screenshot` (browser mode only) is where a failed load's screenshot is written; it is left
    alone when the load works. Raises BrowserUnavailable when the browser mode cannot run here.
    """
    # The mode modules import this one's types, so they are imported here, not at the top; the
    # browser module also needs the optional browser extra.
    if isinstance(target, HttpTarget):
        from mailprobe.probes.webmail_http import probe_http

        return await probe_http(target)
    from mailprobe.probes.webmail_browser import probe_browser

    return await probe_browser(target, screenshot=screenshot)
