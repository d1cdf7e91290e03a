"""Submitting one probe: build the signed message, hand it to the sender's service, make its record.

Concurrency is bounded per SMTP endpoint (``agent.max_concurrency``) and, far higher, overall
(``MAX_OPEN``, for file descriptors): an endpoint that hangs holds only its own slots, so a route on
another endpoint is never queued behind its timeouts. No submission starts once the agent is
stopping; one that started is let finish within the shutdown grace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mailprobe.agent.clock import Clock
from mailprobe.agent.config import Config, Route
from mailprobe.agent.endpoints import smtp_endpoint
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.tokens import Tokens
from mailprobe.probes.errors import Phase, ProbeError, Reason
from mailprobe.probes.message import build_probe
from mailprobe.probes.smtp import SmtpEndpoint, SubmitResult, submit

log = logging.getLogger(__name__)

MAX_OPEN = 512
"""Submissions open at once over all endpoints."""


class Submitter:
    """Submits probes of the configured routes; ``idle`` is set while none is running."""

    def __init__(
        self,
        config: Config,
        secret: bytes,
        clock: Clock,
        stopping: asyncio.Event,
        identity: str | None = None,
        on_start: Callable[[str, str, float], None] = lambda probe_id, route, sent_at: None,
        on_abandon: Callable[[str, str], None] = lambda probe_id, route: None,
        tokens: Tokens | None = None,
        *,
        vantage: str | None = None,
    ) -> None:
        self._config = config
        self._identity = identity
        self._tokens = tokens
        # Signed into each probe when the config names the vantage (v3); else v2 as before.
        self._vantage = vantage if identity is not None else None
        self._on_start = on_start
        self._on_abandon = on_abandon
        self._secret = secret
        self._clock = clock
        self._stopping = stopping
        self.extra_headers: dict[str, str] = dict(config.agent.extra_headers)
        self._smtp: dict[str, SmtpEndpoint] = {
            name: smtp_endpoint(acc.smtp, tokens, acc.address)
            for name, acc in config.accounts.items()
            if acc.smtp
        }
        self._per_endpoint: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._all = asyncio.Semaphore(MAX_OPEN)
        self._active = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def reconfigure(self, config: Config) -> None:
        """A reload: new submissions use these accounts and headers; running ones finish as
        they began."""
        self._config = config
        self.extra_headers = dict(config.agent.extra_headers)
        self._smtp = {
            name: smtp_endpoint(acc.smtp, self._tokens, acc.address)
            for name, acc in config.accounts.items()
            if acc.smtp
        }

    def endpoint(self, account: str) -> SmtpEndpoint | None:
        """The SMTP endpoint submissions from ``account`` use now (None: it has none)."""
        return self._smtp.get(account)

    @property
    def active(self) -> int:
        """Submissions running now."""
        return self._active

    def _slot(self, ep: SmtpEndpoint) -> asyncio.Semaphore:
        key = (ep.host, ep.port)
        if key not in self._per_endpoint:
            self._per_endpoint[key] = asyncio.Semaphore(self._config.agent.max_concurrency)
        return self._per_endpoint[key]

    async def submit(
        self, route: Route, probe_id: str | None = None
    ) -> tuple[Probe, SubmitResult | None] | None:
        """Submit one probe of ``route``: its record (sent or failed) and the server's answer.

        None when the agent began stopping before the submission could start.
        """
        endpoint = self._smtp[route.from_]
        async with self._slot(endpoint), self._all:
            if self._stopping.is_set():
                return None
            self._active += 1
            self.idle.clear()
            try:
                return await self._submit(route, endpoint, probe_id)
            finally:
                self._active -= 1
                if self._active == 0:
                    self.idle.set()

    async def _submit(
        self, route: Route, endpoint: SmtpEndpoint, probe_id: str | None
    ) -> tuple[Probe, SubmitResult | None]:
        sender = self._config.accounts[route.from_]
        receiver = self._config.accounts[route.to]
        sent_at = self._clock.time()
        stamp, data = build_probe(
            secret=self._secret,
            route=route.name,
            sender=sender.address,
            recipient=receiver.address,
            sent_at=sent_at,
            extra_headers=self.extra_headers or None,
            probe_id=probe_id,
            agent=self._identity,
            vantage=self._vantage,
        )
        self._on_start(stamp.probe_id, route.name, sent_at)
        try:
            res = await submit(endpoint, sender.address, receiver.address, data,
                               clock=self._clock.time)  # fmt: skip
        except asyncio.CancelledError:
            self._on_abandon(stamp.probe_id, route.name)
            raise
        except ProbeError as exc:
            log.warning("submit route=%s failed: %s", route.name, exc)
            failed = Probe(stamp.probe_id, route.name, Status.FAILED, sent_at, phase=Phase(exc.phase),
                           reason=Reason(exc.reason), reply_code=exc.reply_code)  # fmt: skip
            return failed, None
        except Exception:
            # One odd server answer must not end the route's loop: a generic reason, logged once.
            log.exception("submit route=%s: unexpected error", route.name)
            failed = Probe(stamp.probe_id, route.name, Status.FAILED, sent_at,
                           phase=Phase.SMTP_SUBMIT, reason=Reason.ERROR)  # fmt: skip
            return failed, None
        log.debug("submitted route=%s id=%s queue_id=%s", route.name, stamp.probe_id, res.queue_id)
        sent = Probe(stamp.probe_id, route.name, Status.SENT, sent_at, accepted_at=res.accepted_at,
                     reply_code=res.reply_code, phases=res.phases)  # fmt: skip
        return sent, res
