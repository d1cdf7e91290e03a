"""Anti-virus tests: now and then a probe with the EICAR test file, and what the provider did.

Only routes with ``antivirus:`` in the config send one; nothing else in the agent ever builds the
test file into a message. Each such route has a loop: the first test one ``every`` after the last
recorded one (or a minute after start, when the ledger has none), then one ``every``. A test is
submitted like a probe but is not a sample of the mail checks (a provider that refuses it is doing
its job, not failing to accept mail): its record goes to the ledger's anti-virus table alone.

- Refused at SMTP (the message, not the recipient): ``refused``, with the reply code.
- Seen in the mailbox: the watcher fetches the whole message before removing it, and the
  attachment decides: ``intact`` (the test virus got through: a breach), ``stripped`` or
  ``replaced``.
- Found in the account's junk folder (the watcher checks it while a test is pending, as for any
  awaited probe): ``quarantined``.
- Not seen within ``deadline``: ``not_seen``.
- Any other failure to submit (connect, TLS, login, the recipient refused): ``failed``, which says
  nothing of the scanning.

Right after each test a clean probe of the route is sent (the ordinary probe, counted as every
probe is); its delay against the route's median tells whether scanning delays mail (the report
computes it from the ledger).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from mailprobe.agent.antivirus_test import AntivirusTest, Outcome
from mailprobe.agent.clock import Clock
from mailprobe.agent.config import Config, Route
from mailprobe.agent.endpoints import smtp_endpoint
from mailprobe.agent.probe import Probe
from mailprobe.agent.tokens import Tokens
from mailprobe.probes.antivirus import Delivery, build_eicar_probe, inspect_delivery
from mailprobe.probes.errors import ProbeError, Reason
from mailprobe.probes.imap import Arrival
from mailprobe.probes.message import ProbeStamp
from mailprobe.probes.smtp import submit

log = logging.getLogger(__name__)

FIRST_AFTER = 60.0
"""Seconds after start before a route's first test, when the ledger has none."""
STEP = 1.0
"""Seconds between looks at the pending tests' deadlines."""
_DELIVERIES = {Delivery.INTACT: Outcome.INTACT, Delivery.STRIPPED: Outcome.STRIPPED,
               Delivery.REPLACED: Outcome.REPLACED}  # fmt: skip


class AntivirusRunner:
    """The routes' anti-virus tests: sending, claiming their arrivals, deadlines."""

    def __init__(
        self,
        config: Config,
        secret: bytes,
        identity: str | None,
        clock: Clock,
        record: Callable[[AntivirusTest], None],
        send_clean: Callable[[Route], Awaitable[Probe | None]],
        tokens: Tokens | None = None,
    ) -> None:
        self._config = config
        self._tokens = tokens
        self._secret = secret
        self._identity = identity
        self._clock = clock
        self._record = record
        self._send_clean = send_clean
        self.routes = tuple(r for r in config.routes if r.antivirus is not None)
        self.pending: dict[str, AntivirusTest] = {}
        self._decided: dict[str, AntivirusTest] = {}  # decided while its follow-up is on its way
        self._last: dict[str, float] = {}

    def restore(self, tests: Iterable[AntivirusTest]) -> None:
        """Continue from the ledger: tests still pending, and when each route last sent one."""
        mine = {r.name for r in self.routes}
        for test in tests:
            if test.route not in mine:
                continue
            self._last[test.route] = max(self._last.get(test.route, 0.0), test.sent_at)
            if not test.decided:
                self.pending[test.probe_id] = test

    # -- the watchers' side

    def wants_message(self, stamp: ProbeStamp) -> bool:
        """A pending test: the watcher fetches its whole message."""
        return stamp.probe_id in self.pending

    def arrived(self, arrival: Arrival) -> bool:
        """A verified probe was seen: True when it is a test (decided here, never mail's)."""
        test = self.pending.pop(arrival.stamp.probe_id, None)
        if test is None:
            return False
        if arrival.message is None:
            self._decide(test, Outcome.REPLACED, arrival.arrived_at,
                         detail="delivered, but its message could not be read")  # fmt: skip
        else:
            delivery = inspect_delivery(arrival.message)
            self._decide(test, _DELIVERIES[delivery], arrival.arrived_at,
                         detail=f"delivered, attachment {delivery}")  # fmt: skip
        return True

    def junked(self, probe_id: str, at: float) -> bool:
        """A pending test was found in a watched junk or quarantine folder."""
        test = self.pending.pop(probe_id, None)
        if test is not None:
            self._decide(test, Outcome.QUARANTINED, at, detail="delivered to junk or quarantine")
        return test is not None

    def sweep(self, now: float) -> None:
        """Tests not seen within their route's deadline are ``not_seen``."""
        self._decided = {k: t for k, t in self._decided.items() if t.sent_at > now - 3600.0}
        deadlines = {r.name: r.antivirus.deadline for r in self.routes if r.antivirus}
        for test in list(self.pending.values()):
            if test.sent_at + deadlines.get(test.route, 0.0) <= now:
                del self.pending[test.probe_id]
                self._decide(test, Outcome.NOT_SEEN, now, detail="not delivered by the deadline")

    def _decide(self, test: AntivirusTest, outcome: Outcome, at: float, *,
                reply_code: int | None = None, detail: str = "") -> AntivirusTest:  # fmt: skip
        decided = test.decide(outcome, at, reply_code=reply_code, detail=detail)
        self._decided[test.probe_id] = decided
        self._record(decided)
        level = logging.WARNING if outcome is Outcome.INTACT else logging.INFO
        log.log(level, decided.describe())
        return decided

    # -- sending

    async def run(self, route: Route) -> None:
        """Test ``route`` on its schedule until cancelled; deadlines are watched meanwhile."""
        assert route.antivirus is not None  # noqa: S101 - only configured routes run
        every = route.antivirus.every
        last = self._last.get(route.name)
        due = last + every if last is not None else self._clock.time() + FIRST_AFTER
        while True:
            now = self._clock.time()
            self.sweep(now)
            if now >= due:
                await self.test(route)
                due = max(due + every, self._clock.time())
                continue
            await self._clock.sleep(min(STEP, due - now))

    async def test(self, route: Route) -> AntivirusTest:
        """Send one test virus on ``route`` and its clean follow-up; the test's record."""
        sender = self._config.accounts[route.from_]
        receiver = self._config.accounts[route.to]
        assert sender.smtp is not None  # noqa: S101 - routes are checked at the config boundary
        sent_at = self._clock.time()
        stamp, data = build_eicar_probe(
            secret=self._secret, route=route.name, sender=sender.address,
            recipient=receiver.address, sent_at=sent_at, agent=self._identity,
            extra_headers=self._config.agent.extra_headers or None,
        )  # fmt: skip
        test = AntivirusTest(stamp.probe_id, route.name, sent_at)
        self._last[route.name] = sent_at
        # Pending before the submission ends: a fast delivery may be seen before submit returns.
        self.pending[test.probe_id] = test
        self._record(test)
        try:
            endpoint = smtp_endpoint(sender.smtp, self._tokens, sender.address)
            await submit(endpoint, sender.address, receiver.address, data, clock=self._clock.time)
        except ProbeError as exc:
            self.pending.pop(test.probe_id, None)
            content = exc.reason == Reason.REJECTED and "recipient refused" not in str(exc)
            outcome = Outcome.REFUSED if content else Outcome.FAILED
            test = self._decide(test, outcome, self._clock.time(), reply_code=exc.reply_code,
                                detail=str(exc)[:300])  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("antivirus route=%s: unexpected error", route.name)
            self.pending.pop(test.probe_id, None)
            test = self._decide(test, Outcome.FAILED, self._clock.time(), detail="unexpected error")
        follow = await self._send_clean(route)
        pid = test.probe_id
        # The newest record of the test: it may have been decided while the follow-up went out.
        latest = self.pending.get(pid) or self._decided.pop(pid, None) or test
        if follow is not None:
            latest = replace(latest, follow_up=follow.probe_id)
            if pid in self.pending:
                self.pending[pid] = latest
            self._record(latest)
        return latest
