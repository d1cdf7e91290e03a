"""A discrete-event stand-in for the scheduler, feeding ledger and accounting as the agent does.

Events run in time order on an injected clock: nothing waits. The order of calls per event is the
contract with the scheduler: ledger first (durable), then accounting, then the transitions it
returns go back to the ledger.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from mailprobe.agent.accounting import Accounting, MailboxEvent
from mailprobe.agent.checks import Transition
from mailprobe.agent.inflight import InFlight, Marks
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Sighting, Status
from mailprobe.probes.errors import Phase, Reason

OVERDUE_AFTER = 3600.0
DELAY_MAXIMUM = 3600.0


@dataclass
class Sim:
    """Scheduler double: probes, ticks and agent lifecycle at chosen instants.

    Probes go through an in-flight registry as in the agent, so the marks it sweeps (overdue, lost,
    past the delay maximum) reach the accounting as new records.
    """

    acc: Accounting
    ledger: Ledger | None = None
    lost_after: float = 10.0**9
    inflight: InFlight = field(init=False)
    tick_every: float = 15.0
    now: float = 0.0
    running: bool = False
    transitions: list[Transition] = field(default_factory=list)
    _events: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        marks = Marks(OVERDUE_AFTER, self.lost_after)
        self.inflight = InFlight(dict.fromkeys(("a", "b", "slow"), marks), DELAY_MAXIMUM)

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at instant ``when``."""
        heapq.heappush(self._events, (when, next(self._seq), action))

    def _emit(self, trs: list[Transition]) -> None:
        self.transitions += trs
        if self.ledger is not None:
            for tr in trs:
                self.ledger.record_transition(tr)

    def _result(self, probe: Probe) -> None:
        if self.ledger is None or self.ledger.record(probe):
            self._emit(self.acc.record(probe))

    def _sweep(self, now: float) -> None:
        for _, new in self.inflight.sweep(now):
            self._result(new)

    def start(self, when: float) -> None:
        """The agent starts at ``when``."""

        def go() -> None:
            self.running = True
            if self.ledger is not None:
                self.ledger.started(when)
            self.acc.started(when)

        self.at(when, go)

    def stop(self, when: float, *, kill: bool = False) -> None:
        """The agent stops at ``when``; ``kill`` skips the clean shutdown (SIGKILL)."""

        def go() -> None:
            self.running = False
            if kill:
                return
            self._emit(self.acc.tick(when))
            if self.ledger is not None:
                self.ledger.stopped(when)
            self.acc.stopped(when)

        self.at(when, go)

    def probe(
        self,
        route: str,
        sent: float,
        *,
        delay: float | None = 2.0,
        send_fail: bool = False,
        imap_fail: bool = False,
        probe_id: str | None = None,
    ) -> str:
        """Schedule one probe; ``delay=None`` never arrives (and is lost after ``lost_after``)."""
        pid = probe_id or f"{route}-{next(self._ids):06d}"
        if send_fail:
            failed = Probe(pid, route, Status.FAILED, sent, phase=Phase.SMTP_CONNECT,
                           reason=Reason.CONNECT)  # fmt: skip
            self.at(sent + 1.0, lambda: self._result(failed))
            return pid
        accepted = sent + 0.5
        sent_record = Probe(pid, route, Status.SENT, sent, accepted_at=accepted)

        def submit() -> None:
            self.inflight.add(sent_record)
            self._result(sent_record)

        self.at(accepted, submit)
        if imap_fail:
            # A mailbox that cannot be opened: a failed attempt of its watcher.
            self.at(accepted + 1.0, lambda: self._emit(self.acc.mailbox(
                MailboxEvent(route, False, accepted + 1.0, "connect"))))  # fmt: skip
        elif delay is not None:

            def arrive() -> None:
                arrived = self.inflight.arrive(Sighting(pid, sent + delay))
                if arrived is not None:
                    mark = arrived.over_maximum_at(DELAY_MAXIMUM)
                    if mark is not None and arrived.over_max_at is None:
                        arrived = arrived.past_maximum(mark)
                    self._result(arrived)

            self.at(sent + delay, arrive)
        return pid

    def mailbox(self, route: str, at: float, *, up: bool) -> None:
        """The route's mailbox goes away (``up=False``) or comes back at ``at``."""
        self.at(at, lambda: self._emit(self.acc.mailbox(MailboxEvent(route, up, at))))

    def steady(self, route: str, start: float, end: float, every: float = 60.0) -> None:
        """Healthy probes every ``every`` seconds in ``[start, end)``."""
        t = start
        while t < end:
            self.probe(route, t)
            t += every

    def run(self, until: float) -> None:
        """Process every event and tick up to and including ``until``."""
        next_tick = (self.now // self.tick_every + 1) * self.tick_every
        while True:
            when = self._events[0][0] if self._events else float("inf")
            if next_tick <= min(when, until):
                self.now = next_tick
                if self.running:
                    self._sweep(next_tick)
                    self._emit(self.acc.tick(next_tick))
                    if self.ledger is not None:
                        self.ledger.heartbeat(next_tick)
                next_tick += self.tick_every
                continue
            if when > until:
                break
            _, _, action = heapq.heappop(self._events)
            self.now = when
            if self.running:
                self._sweep(when)
                self._emit(self.acc.tick(when))
            action()
        self.now = until
        if self.running:
            self._sweep(until)
            self._emit(self.acc.tick(until))
            if self.ledger is not None:
                self.ledger.heartbeat(until)
