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

from mailprobe.agent.accounting import Accounting, Transition
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.results import ProbeResult, Status

OVERDUE_AFTER = 3600.0


@dataclass
class Sim:
    """Scheduler double: probes, ticks and agent lifecycle at chosen instants."""

    acc: Accounting
    ledger: Ledger | None = None
    tick_every: float = 15.0
    now: float = 0.0
    running: bool = False
    transitions: list[Transition] = field(default_factory=list)
    _events: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at instant ``when``."""
        heapq.heappush(self._events, (when, next(self._seq), action))

    def _emit(self, trs: list[Transition]) -> None:
        self.transitions += trs
        if self.ledger is not None:
            for tr in trs:
                self.ledger.record_transition(tr)

    def _result(self, result: ProbeResult) -> None:
        if self.ledger is None or self.ledger.record_result(result):
            self._emit(self.acc.record(result))

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
        lost_after: float | None = None,
        probe_id: str | None = None,
    ) -> str:
        """Schedule one probe; ``delay=None`` never arrives."""
        pid = probe_id or f"{route}-{next(self._ids):06d}"
        if send_fail:
            failed = ProbeResult(
                pid, route, Status.FAILED, sent, phase="smtp_connect", reason="connect"
            )
            self.at(sent + 1.0, lambda: self._result(failed))
            return pid
        accepted = sent + 0.5

        def submit() -> None:
            if self.ledger is not None:
                self.ledger.record_sent(pid, route, sent, accepted)
            self._emit(self.acc.submitted(pid, route, sent, accepted))

        self.at(accepted, submit)
        if imap_fail:
            failed = ProbeResult(
                pid, route, Status.FAILED, sent, accepted, phase="imap", reason="connect"
            )
            self.at(accepted + 1.0, lambda: self._result(failed))
        elif delay is not None:
            status = Status.LATE if delay > OVERDUE_AFTER else Status.OK
            arrived = ProbeResult(
                pid, route, status, sent, accepted, sent + delay, delay,
                send_delay_seconds=delay / 4, receive_delay_seconds=delay / 4,
            )  # fmt: skip
            self.at(sent + delay, lambda: self._result(arrived))
        if delay is None and lost_after is not None:
            lost = ProbeResult(pid, route, Status.LOST, sent, accepted, reason="lost")
            self.at(sent + lost_after, lambda: self._result(lost))
        return pid

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
                self._emit(self.acc.tick(when))
            action()
        self.now = until
        if self.running:
            self._emit(self.acc.tick(until))
            if self.ledger is not None:
                self.ledger.heartbeat(until)
