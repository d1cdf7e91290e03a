"""Contract accounting: probe records and mailbox states -> up/down per route and check, and seconds.

Pure state machine: no I/O, no clock reads except the injected ``clock`` for default ``now``.
What the checks mean is in ``mailprobe.agent.checks``; how one check is confirmed, in
``mailprobe.agent.confirm``.

Samples. Each probe is a sample taken at its ``sent_at``:

- send: up when the server accepted the probe, down when submission failed.
- receive: what ``Probe.receive_sample`` says (up when it arrived within ``receive_deadline``;
  down when it came later, was lost or its mailbox could not be watched), and down when
  ``receive_deadline`` passes without it. A probe only found late says nothing.
- the mailbox: every failed attempt to open a receiving mailbox (connect, TLS, login, a dropped
  session that does not come back) is a receive down-sample of each route into it, at the moment
  the mailbox was lost. Once the watcher is back, only a probe sent after that may end the period:
  one sent while the mailbox could not be opened proves nothing about it.

Seconds, per route and check: ``observed`` (the agent was running), ``down`` (down and observed,
outside maintenance windows), ``maintenance`` (down and observed, inside a window). Time the agent
was not running is neither up nor down. For ``any``, a second is down when some route is down
outside that route's windows; else maintenance when some route is down inside its windows. The
snapshot gives them since the ledger began and for the contract month to date (``sla.timezone``).

Totals here are raw: a down period closed by a sample sent before the previous snapshot shrinks
them. ``mailprobe.agent.floors`` makes what is exported monotonic, once, for every series.
Transitions of ``connectivity`` and ``any`` are derived from the base checks and informational;
the base-check transitions are the record the report and a restart rebuild from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mailprobe.agent.checks import (
    ALL_ROUTES,
    BASE_CHECKS,
    Check,
    CheckTotals,
    Transition,
    breakdown,
)
from mailprobe.agent.confirm import Confirmation
from mailprobe.agent.probe import Probe, past_deadline
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import (
    OneOffWindow,
    RecurringWindow,
    Span,
    active_windows,
    clip,
    month_bounds,
    month_of,
    total,
    union,
    window_spans,
)


@dataclass(frozen=True, slots=True)
class MailboxEvent:
    """A receiving mailbox could (``up``) or could not be opened, for one route, at ``at``."""

    route: str
    up: bool
    at: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class History:
    """What a restart needs from the ledger (see ``Ledger.history``)."""

    runs: tuple[Span, ...] = ()
    transitions: tuple[Transition, ...] = ()
    probes: tuple[Probe, ...] = ()
    mailbox: tuple[MailboxEvent, ...] = ()
    over_max: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    baseline: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    replay_from: float = -math.inf


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the accounting exports, at instant ``at`` (raw totals: see module doc)."""

    at: float
    totals: Mapping[tuple[str, Check], CheckTotals]
    up: Mapping[tuple[str, Check], bool]
    over_max: Mapping[str, int]
    glitches: Mapping[tuple[str, Check], int]
    maintenance_active: Mapping[str, bool]
    month: str = ""
    month_start: float = 0.0
    month_totals: Mapping[tuple[str, Check], CheckTotals] = field(default_factory=dict)
    month_over_max: Mapping[str, int] = field(default_factory=dict)


class Accounting:
    """Turns probe records, mailbox states and agent lifecycle into transitions and totals."""

    def __init__(
        self,
        routes: Sequence[str],
        sla: SlaConfig,
        windows: Sequence[OneOffWindow | RecurringWindow] = (),
        clock: Callable[[], float] = time.time,
        on_failure: Callable[[str], None] = lambda route: None,
    ) -> None:
        if ALL_ROUTES in routes:
            raise ValueError(f"{ALL_ROUTES!r} is reserved for the account-wide check")
        self._sla, self._windows, self._clock = sla, tuple(windows), clock
        self._on_failure = on_failure
        self._routes: list[str] = []
        self._machines: dict[tuple[str, Check], Confirmation] = {}
        for route in routes:
            self._add_route(route)
        self._runs: list[Span] = []
        self._run: list[float] | None = None
        self._grace_until = -math.inf
        self._over_max: dict[str, tuple[str, float]] = {}  # probe id -> (route, when it passed)
        self._mailbox_down: dict[str, float] = {}  # route -> since, while its mailbox is away
        self._mailbox_back: dict[str, float] = {}  # route -> when its mailbox came back
        self._baseline: dict[tuple[str, str, str], float] = {}
        self._derived: dict[tuple[str, Check], bool] = {}
        self._window_cache: tuple[float, float, dict[str, list[Span]]] | None = None

    @property
    def replay_seconds(self) -> float:
        """How far before the last heartbeat a restart must replay probes."""
        return self._sla.confirm_within + self._sla.receive_deadline + 60.0

    def _add_route(self, route: str) -> None:
        if route in self._routes:
            return
        self._routes.append(route)
        for check in BASE_CHECKS:
            self._machines[(route, check)] = Confirmation(route, check, self._sla.confirm_within)

    def _machine(self, route: str, check: Check) -> Confirmation:
        self._add_route(route)
        return self._machines[(route, check)]

    # -- lifecycle

    def started(self, at: float) -> None:
        """The agent starts observing at ``at``."""
        if self._run is not None:
            self.stopped(self._run[1])
        self._run = [at, at]
        # Probes whose deadline passed while nobody watched get one deadline to be found.
        self._grace_until = at + self._sla.receive_deadline

    def stopped(self, at: float) -> None:
        """The agent stops observing at ``at``."""
        if self._run is not None:
            self._runs.append((self._run[0], max(self._run[0], at)))
            self._run = None

    def tick(self, now: float | None = None) -> list[Transition]:
        """Advance time: extend the observed span, expire receive deadlines, confirm suspicions."""
        now = self._clock() if now is None else now
        if self._run is not None:
            self._run[1] = max(self._run[1], now)
        out: list[Transition] = []
        if now >= self._grace_until:
            deadline = self._sla.receive_deadline
            for route in self._routes:
                receive = self._machines[(route, Check.RECEIVE)]
                expired = [i for i, t in receive.waiting.items() if past_deadline(t, now, deadline)]
                for sample_id in sorted(expired, key=receive.waiting.__getitem__):
                    out += self._sample(route, Check.RECEIVE, sample_id, receive.waiting[sample_id],
                                        ok=False)  # fmt: skip
        for machine in self._machines.values():
            out += machine.tick(now)
        return self._with_derived(out)

    # -- samples

    def attempt(self, probe_id: str, route: str, sent_at: float) -> None:
        """A submission starts: its send sample, at ``sent_at``, is on its way.

        Until it is known, an open send outage is counted only up to ``sent_at`` (the sample may
        end it there), so totals never run past a moment a sample is about to settle.
        """
        self._machine(route, Check.SEND).expect(probe_id, sent_at)

    def abandon(self, probe_id: str, route: str) -> list[Transition]:
        """A submission was given up before it ended (the agent stopped): it says nothing."""
        return self._with_derived(self._machine(route, Check.SEND).settle(probe_id))

    def record(self, probe: Probe) -> list[Transition]:
        """Apply a probe's new record (feed each new record once; a repeat changes nothing)."""
        route, pid = probe.route, probe.probe_id
        out: list[Transition] = []
        if probe.over_max_at is not None:
            self._over_max.setdefault(pid, (route, probe.over_max_at))
        if probe.send_failed:
            return self._with_derived(self._sample(route, Check.SEND, pid, probe.sent_at, ok=False))
        receive = self._machine(route, Check.RECEIVE)
        if probe.accepted:
            receive.expect(pid, probe.sent_at)
            out += self._sample(route, Check.SEND, pid, probe.sent_at, ok=True)
        verdict = probe.receive_sample(self._sla.receive_deadline)
        back = self._mailbox_back.get(route)
        if verdict is True and back is not None and probe.sent_at < back:
            verdict = None  # sent while its mailbox could not be opened: proves nothing of it
        if verdict is not None:
            out += self._sample(route, Check.RECEIVE, pid, probe.sent_at, ok=verdict)
        elif probe.arrived:
            out += receive.settle(pid)
        return self._with_derived(out)

    def mailbox(self, event: MailboxEvent) -> list[Transition]:
        """A receiving mailbox of ``event.route`` was lost (a down-sample) or came back."""
        route = event.route
        if event.up:
            if route in self._mailbox_down:
                del self._mailbox_down[route]
                self._mailbox_back[route] = event.at
            return []
        self._mailbox_down.setdefault(route, event.at)
        sample_id = f"mailbox@{event.at!r}"
        return self._with_derived(self._sample(route, Check.RECEIVE, sample_id, event.at, ok=False))

    def _sample(
        self, route: str, check: Check, sample_id: str, at: float, *, ok: bool
    ) -> list[Transition]:
        if not ok:
            self._on_failure(route)
        return self._machine(route, check).sample(sample_id, at, ok)

    def _with_derived(self, base: list[Transition]) -> list[Transition]:
        if not base:
            return base
        out = list(base)
        at = base[-1].at
        any_down = False
        for route in self._routes:
            down = any(self._machines[(route, c)].down_since is not None for c in BASE_CHECKS)
            any_down = any_down or down
            out += self._derive(route, Check.CONNECTIVITY, down, at)
        out += self._derive(ALL_ROUTES, Check.ANY, any_down, at)
        return out

    def _derive(self, route: str, check: Check, down: bool, at: float) -> list[Transition]:
        if self._derived.get((route, check), False) == down:
            return []
        self._derived[(route, check)] = down
        return [Transition(route, check, not down, at)]

    # -- restart

    def restore(self, history: History) -> list[Transition]:
        """Continue from a ledger's history; returns transitions the replay newly produced."""
        self._runs = list(history.runs)
        self._baseline = dict(history.baseline)
        self._over_max.update(history.over_max)
        for tr in sorted(history.transitions, key=lambda t: t.at):
            if tr.check in BASE_CHECKS:
                self._machine(tr.route, tr.check).restore(tr)
        for machine in self._machines.values():
            machine.cursor = max(machine.cursor, history.replay_from)
        for route in self._routes:
            self._derived[(route, Check.CONNECTIVITY)] = any(
                self._machines[(route, c)].down_since is not None for c in BASE_CHECKS
            )
        self._derived[(ALL_ROUTES, Check.ANY)] = any(self._derived.values())
        probes = sorted(history.probes, key=lambda p: p.sent_at)
        for probe in probes:  # register every awaited arrival before replaying any sample
            if probe.in_flight:
                self._machine(probe.route, Check.RECEIVE).expect(probe.probe_id, probe.sent_at)
        replay: list[tuple[float, int, Probe | MailboxEvent]] = [
            *((p.sent_at, 1, p) for p in probes),
            *((e.at, 0, e) for e in history.mailbox if e.at >= history.replay_from),
        ]
        out: list[Transition] = []
        for _, _, item in sorted(replay, key=lambda r: r[:2]):
            out += self.mailbox(item) if isinstance(item, MailboxEvent) else self.record(item)
        return out

    # -- reading

    def is_up(self, route: str, check: Check) -> bool:
        """Current confirmed state (a check never seen is up)."""
        if check in BASE_CHECKS:
            machine = self._machines.get((route, check))
            return machine is None or machine.down_since is None
        return not self._derived.get((route, check), False)

    def unsettled(self, route: str) -> bool:
        """Some base check of ``route`` is suspect or down: probe it again after confirm_retry."""
        return route in self._mailbox_down or any(
            self._machines[(route, c)].unsettled
            for c in BASE_CHECKS
            if (route, c) in self._machines
        )

    def observed_spans(self) -> list[Span]:
        """Spans the agent was running, the current one up to its last tick."""
        current = [(self._run[0], self._run[1])] if self._run is not None else []
        return union(self._runs, current)

    def _window_spans(self, start: float, now: float) -> Callable[[str], list[Span]]:
        cache = self._window_cache
        if cache is None or cache[0] > start or cache[1] < now:
            cache = (start, now + 86400.0, {})
            self._window_cache = cache
        lo, hi, spans = cache

        def for_route(route: str) -> list[Span]:
            if route not in spans:
                spans[route] = window_spans(self._windows, lo, hi, route)
            return spans[route]

        return for_route

    def snapshot(self, now: float | None = None) -> Snapshot:
        """Raw totals (all time and month to date), states and gauges."""
        now = self._clock() if now is None else now
        observed = self.observed_spans()
        origin = observed[0][0] if observed else now
        base = {key: union(m.spans(now)) for key, m in self._machines.items()}
        windows = self._window_spans(origin, now)
        parts = breakdown(observed, base, self._routes, windows)
        month = month_of(now, self._sla.timezone)
        m_start = month_bounds(month, self._sla.timezone)[0]
        seen, m_seen = total(observed), total(clip(observed, m_start, now))
        totals: dict[tuple[str, Check], CheckTotals] = {}
        month_totals: dict[tuple[str, Check], CheckTotals] = {}
        for (route, check), (down, maint) in parts.items():
            key = (route, str(check))
            totals[(route, check)] = CheckTotals(
                seen + self._baseline.get((*key, "observed"), 0.0),
                total(down) + self._baseline.get((*key, "down"), 0.0),
                total(maint) + self._baseline.get((*key, "maintenance"), 0.0),
            )
            month_totals[(route, check)] = CheckTotals(
                m_seen, total(clip(down, m_start, now)), total(clip(maint, m_start, now))
            )
        over: dict[str, int] = dict.fromkeys(self._routes, 0)
        month_over: dict[str, int] = dict.fromkeys(self._routes, 0)
        for route, at in self._over_max.values():
            over[route] = over.get(route, 0) + 1
            if m_start <= at <= now:
                month_over[route] = month_over.get(route, 0) + 1
        for route in over:
            over[route] += int(self._baseline.get((route, "", "over_max"), 0))
        return Snapshot(
            at=now,
            totals=totals,
            up={key: self.is_up(*key) for key in totals},
            over_max=over,
            glitches={key: m.glitches for key, m in self._machines.items()},
            maintenance_active=active_windows(self._windows, now),
            month=month,
            month_start=m_start,
            month_totals=month_totals,
            month_over_max=month_over,
        )
