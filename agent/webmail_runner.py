"""Loading each configured webmail page on its interval, and sooner while it is failing.

One loop per check, under the agent's supervisor. Checks are spread over their interval like
routes (check ``i`` of ``n`` starts ``i/n`` of an interval after the agent). While a check is
suspect or down the next load follows after ``sla.confirm_retry``, so one slow or failed load is
confirmed or cleared as for mail, and the end of a webmail outage is known that closely.

At most one browser-mode load runs at a time (a semaphore): a headless Chromium is the heaviest
thing the agent starts, and two at once on a small machine would slow each other down and
measure the machine, not the provider. The time spent waiting for the browser is not counted.
A load never runs longer than its check's ``timeout`` (plus a little for the browser to close);
a machine that cannot run the browser mode records nothing and says so in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailprobe.agent.clock import Clock
from mailprobe.agent.webmail_config import WebmailCheck
from mailprobe.agent.webmail_sample import WebmailSample
from mailprobe.probes.webmail import BrowserTarget, BrowserUnavailable, HttpTarget, WebmailResult
from mailprobe.probes.webmail import check_webmail as _check_webmail

log = logging.getLogger(__name__)

CLOSE_GRACE = 5.0
"""Seconds past a check's timeout a load may take to clean up (close the browser) before it is cut."""

Prober = Callable[..., Awaitable[WebmailResult]]


class WebmailRunner:
    """The webmail checks' loops; each load goes to ``record``."""

    def __init__(
        self,
        checks: tuple[WebmailCheck, ...],
        state_dir: Path,
        clock: Clock,
        record: Callable[[WebmailSample], None],
        unsettled: Callable[[str], bool],
        retry: float,
        stopping: asyncio.Event,
        prober: Prober = _check_webmail,
    ) -> None:
        self._checks = checks
        self._state_dir = state_dir
        self._clock = clock
        self._record = record
        self._unsettled = unsettled
        self._retry = retry
        self._stopping = stopping
        self._prober = prober
        self._browser = asyncio.Semaphore(1)
        self._phase = {c.name: i / len(checks) for i, c in enumerate(checks)} if checks else {}
        self._warned: set[str] = set()

    async def run(self, check: WebmailCheck) -> None:
        """Load ``check`` until the agent stops."""
        due = self._clock.time() + self._phase[check.name] * check.interval
        while not self._stopping.is_set():
            wait = due - self._clock.time()
            if wait > 0:
                await self._clock.sleep(wait)
                continue
            started = self._clock.time()
            sample = await self.load(check)
            if sample is not None:
                self._record(sample)
            quick = sample is not None and self._unsettled(check.name)
            due = started + (min(check.interval, self._retry) if quick else check.interval)

    async def load(self, check: WebmailCheck) -> WebmailSample | None:
        """One load of ``check``: its sample, or None when this machine could not run it."""
        try:
            target = check.target()
        except LookupError as exc:  # the password went away since the config was checked
            self._warn(check, f"cannot read the login password: {exc}")
            return None
        slot = self._browser if check.mode == "browser" else contextlib.nullcontext()
        async with slot:
            at = self._clock.time()
            try:
                result = await asyncio.wait_for(self._probe(check, target),
                                                check.timeout + CLOSE_GRACE)  # fmt: skip
            except BrowserUnavailable as exc:
                self._warn(check, f"the browser mode cannot run here: {exc}")
                return None
            except TimeoutError:
                sample = WebmailSample(check.name, at, check.mode, False,
                                       self._clock.time() - at, "timeout", "load")  # fmt: skip
                detail = "the load did not end within its timeout"
            except Exception:
                # One odd page must not end the loop: a generic reason, logged once per load.
                log.exception("webmail check=%s: unexpected error", check.name)
                sample = WebmailSample(check.name, at, check.mode, False,
                                       self._clock.time() - at, "error", "load")  # fmt: skip
                detail = "unexpected error"
            else:
                sample = WebmailSample.of(check.name, at, result)
                detail = result.detail
        self._warned.discard(check.name)
        if sample.ok:
            log.info(sample.describe())
        else:
            log.warning("%s: %s", sample.describe(), detail)
        return sample

    async def _probe(
        self, check: WebmailCheck, target: HttpTarget | BrowserTarget
    ) -> WebmailResult:
        screenshot = check.failure_screenshot(self._state_dir)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
        return await self._prober(target, screenshot=screenshot)

    def _warn(self, check: WebmailCheck, text: str) -> None:
        # Once until a load works again: a deployment problem, not a provider outage.
        if check.name not in self._warned:
            self._warned.add(check.name)
            log.error("webmail check=%s records nothing: %s", check.name, text)
