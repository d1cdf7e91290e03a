"""Contract accounting: probe outcomes -> up/down per route and check, and seconds per check.

Pure state machine: no I/O, no clock reads except the injected ``clock`` for default ``now``.

Checks. Per route: ``send`` (submission works), ``receive`` (mailbox access works and probes
arrive in time), ``connectivity`` (both work: down while either is down). For the account,
route ``all``: ``any`` (some check of some route is down; overlaps are counted once).

Observations. Each probe is a sample taken at its ``sent_at``:

- send: down-sample when submission failed (FAILED in an ``smtp_*`` phase), up-sample when the
  server accepted the message (``submitted()`` or any result with ``accepted_at``).
- receive: up-sample when an accepted probe arrived within ``receive_deadline`` of its send time;
  down-sample when it arrived later, was LOST, could not be watched (FAILED in phase ``imap`` or
  ``delivery``), or ``receive_deadline`` passed without arrival. Samples of a check are applied in
  ``sent_at`` order: a sample waits for every earlier probe of the route still awaiting arrival,
  so a late verdict can never reorder history.

Confirmation. One down-sample is only a suspicion. A second consecutive down-sample confirms the
failure, and the check is down from the FIRST down-sample's send time. An up-sample sent within
``confirm_within`` of a lone down-sample clears it as a glitch (no downtime). When no sample comes
within ``confirm_within`` the failure is confirmed anyway (a scheduler that did not retry must not
hide an outage); a later up-sample then ends it. A down period ends at the send time of the first
up-sample. Times are the probes' own timestamps, never rounded to the probe interval.

Seconds, per route and check: ``observed`` (the agent was running), ``down`` (down and observed,
outside maintenance windows), ``maintenance`` (down and observed, inside a window). Time the agent
was not running is neither up nor down. For ``any``, a second is down when some route is down
outside that route's windows; else maintenance when some route is down inside its windows.

Over maximum: an accepted probe still undelivered ``delay_maximum`` after sending, or delivered
with a larger delay, is counted once per probe.

Exported totals are monotonic: each total is the largest value reported so far (a down period
closed by a sample sent before the previous snapshot would otherwise shrink the running total).
Transitions of ``connectivity`` and ``any`` are derived from the base checks and informational;
the base-check transitions are the record the report and a restart rebuild from.
"""

from __future__ import annotations

import enum
import heapq
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.windows import (
    OneOffWindow,
    RecurringWindow,
    Span,
    active_windows,
    intersect,
    subtract,
    total,
    union,
    window_spans,
)

ALL_ROUTES = "all"
"""Route label of the account-wide ``any`` check."""

SUBMIT_PHASES = frozenset({"smtp_connect", "smtp_tls", "smtp_auth", "smtp_submit"})
RECEIVE_PHASES = frozenset({"imap", "delivery"})


class Check(enum.StrEnum):
    """What a down period is about."""

    SEND = "send"
    RECEIVE = "receive"
    CONNECTIVITY = "connectivity"
    ANY = "any"


BASE_CHECKS = (Check.SEND, Check.RECEIVE)


class ProbeLike(Protocol):
    """The fields of ``mailprobe.agent.results.ProbeResult`` that accounting and the ledger read."""

    @property
    def probe_id(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def sent_at(self) -> float: ...
    @property
    def accepted_at(self) -> float | None: ...
    @property
    def arrived_at(self) -> float | None: ...
    @property
    def delay_seconds(self) -> float | None: ...
    @property
    def phase(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def reply_code(self) -> int | None: ...
    @property
    def phases(self) -> Mapping[str, float]: ...
    @property
    def internaldate(self) -> float | None: ...
    @property
    def received(self) -> tuple[str, ...]: ...
    @property
    def send_delay_seconds(self) -> float | None: ...
    @property
    def receive_delay_seconds(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Transition:
    """A check of a route went up or down at instant ``at`` (unix seconds)."""

    route: str
    check: Check
    up: bool
    at: float

    @property
    def state(self) -> str:
        """``up`` or ``down``."""
        return "up" if self.up else "down"


@dataclass(frozen=True, slots=True)
class History:
    """What a restart needs from the ledger (see ``Ledger.history``)."""

    runs: tuple[Span, ...] = ()
    transitions: tuple[Transition, ...] = ()
    probes: tuple[ProbeLike, ...] = ()
    over_max_ids: Mapping[str, str] = field(default_factory=dict)
    baseline: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    replay_from: float = -math.inf


class HistorySource(Protocol):
    """Anything that can hand out a History (the ledger)."""

    def history(self, *, replay_seconds: float, delay_maximum: float) -> History: ...


@dataclass(frozen=True, slots=True)
class CheckTotals:
    """Monotonic seconds for one (route, check)."""

    observed: float
    down: float
    maintenance: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything metrics export, at instant ``at``."""

    at: float
    totals: Mapping[tuple[str, Check], CheckTotals]
    up: Mapping[tuple[str, Check], bool]
    over_max: Mapping[str, int]
    in_flight: Mapping[str, int]
    glitches: Mapping[tuple[str, Check], int]
    maintenance_active: Mapping[str, bool]


# ---------------------------------------------------------------- pure span helpers


def spans_from_transitions(
    transitions: Iterable[Transition], until: float
) -> dict[tuple[str, Check], list[Span]]:
    """Down spans per (route, base check); a period still open at the end runs to ``until``."""
    since: dict[tuple[str, Check], float] = {}
    out: dict[tuple[str, Check], list[Span]] = {}
    for tr in sorted(transitions, key=lambda t: t.at):
        if tr.check not in BASE_CHECKS:
            continue
        key = (tr.route, tr.check)
        out.setdefault(key, [])
        if not tr.up:
            since.setdefault(key, tr.at)
        elif key in since:
            out[key].append((since.pop(key), tr.at))
    for key, start in since.items():
        out[key].append((start, max(start, until)))
    return {key: union(spans) for key, spans in out.items()}


def breakdown(
    observed: Sequence[Span],
    base: Mapping[tuple[str, Check], Sequence[Span]],
    routes: Iterable[str],
    windows: Callable[[str], Sequence[Span]],
) -> dict[tuple[str, Check], tuple[list[Span], list[Span]]]:
    """(down outside maintenance, down inside maintenance) spans per (route, check), all observed.

    ``observed`` and every span list must be normalized; ``windows(route)`` gives the normalized
    maintenance spans of a route.
    """
    out: dict[tuple[str, Check], tuple[list[Span], list[Span]]] = {}
    conn_down: list[list[Span]] = []
    conn_maint: list[list[Span]] = []
    for route in routes:
        send = intersect(base.get((route, Check.SEND), []), observed)
        receive = intersect(base.get((route, Check.RECEIVE), []), observed)
        maint = list(windows(route))
        for check, down in (
            (Check.SEND, send),
            (Check.RECEIVE, receive),
            (Check.CONNECTIVITY, union(send, receive)),
        ):
            out[(route, check)] = (subtract(down, maint), intersect(down, maint))
        conn_down.append(out[(route, Check.CONNECTIVITY)][0])
        conn_maint.append(out[(route, Check.CONNECTIVITY)][1])
    any_down = union(*conn_down)
    out[(ALL_ROUTES, Check.ANY)] = (any_down, subtract(union(*conn_maint), any_down))
    return out


# ---------------------------------------------------------------- one base check


class _Machine:
    """Confirmation state machine of one (route, base check)."""

    def __init__(self, route: str, check: Check, confirm_within: float) -> None:
        self.route, self.check, self.confirm_within = route, check, confirm_within
        self.down_since: float | None = None
        self.suspect: float | None = None
        self.closed: list[Span] = []
        self.cursor = -math.inf
        self.glitches = 0
        self.waiting: dict[str, float] = {}
        self._ready: list[tuple[float, str, bool]] = []

    def _tr(self, up: bool, at: float) -> Transition:
        return Transition(self.route, self.check, up, at)

    def expect(self, probe_id: str, sent_at: float) -> None:
        """Hold later samples until this probe's sample is known."""
        if sent_at > self.cursor:
            self.waiting.setdefault(probe_id, sent_at)

    def sample(self, probe_id: str, sent_at: float, ok: bool) -> list[Transition]:
        """A sample is known; apply every sample no waiting probe precedes."""
        self.waiting.pop(probe_id, None)
        if sent_at <= self.cursor:
            return []  # already applied, or too late to place in history
        heapq.heappush(self._ready, (sent_at, probe_id, ok))
        horizon = min(self.waiting.values(), default=math.inf)
        out: list[Transition] = []
        while self._ready and self._ready[0][0] < horizon:
            at, _, good = heapq.heappop(self._ready)
            out += self._apply(at, good)
        return out

    def _apply(self, at: float, ok: bool) -> list[Transition]:
        self.cursor = at
        if self.down_since is not None:
            if not ok:
                return []
            self.closed.append((self.down_since, at))
            self.down_since = None
            return [self._tr(True, at)]
        if ok:
            suspect, self.suspect = self.suspect, None
            if suspect is None:
                return []
            if at - suspect <= self.confirm_within:
                self.glitches += 1
                return []
            self.closed.append((suspect, at))
            return [self._tr(False, suspect), self._tr(True, at)]
        if self.suspect is None:
            self.suspect = at
            return []
        self.down_since, self.suspect = self.suspect, None
        return [self._tr(False, self.down_since)]

    def tick(self, now: float) -> list[Transition]:
        """Confirm a suspicion nothing could clear in time."""
        if self.suspect is None or now - self.suspect <= self.confirm_within:
            return []
        deadline = self.suspect + self.confirm_within
        if min(self.waiting.values(), default=math.inf) <= deadline:
            return []
        self.down_since, self.suspect = self.suspect, None
        return [self._tr(False, self.down_since)]

    def spans(self, now: float) -> list[Span]:
        """Confirmed down spans, the open one running to what is settled by ``now``.

        A probe still awaited may end the open period at its send time, so the period only
        counts up to the earliest such send time: exported totals then never need to shrink.
        """
        if self.down_since is None:
            return self.closed
        unsettled = [*self.waiting.values(), *(at for at, _, _ in self._ready)]
        end = min([now, *unsettled])
        return [*self.closed, (self.down_since, max(self.down_since, end))]


@dataclass(slots=True)
class _Flight:
    route: str
    sent_at: float
    accepted: bool
    receive_known: bool = False


# ---------------------------------------------------------------- the accountant


class Accounting:
    """Turns probe outcomes and agent lifecycle into transitions and monotonic totals."""

    def __init__(
        self,
        routes: Sequence[str],
        sla: SlaConfig,
        windows: Sequence[OneOffWindow | RecurringWindow] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ALL_ROUTES in routes:
            raise ValueError(f"{ALL_ROUTES!r} is reserved for the account-wide check")
        self._sla, self._windows, self._clock = sla, tuple(windows), clock
        self._routes: list[str] = []
        self._machines: dict[tuple[str, Check], _Machine] = {}
        for route in routes:
            self._add_route(route)
        self._runs: list[Span] = []
        self._run: list[float] | None = None
        self._grace_until = -math.inf
        self._flights: dict[str, _Flight] = {}
        self._over_max_ids: dict[str, str] = {}
        self._baseline: dict[tuple[str, str, str], float] = {}
        self._reported: dict[tuple[str, str, str], float] = {}
        self._derived: dict[tuple[str, Check], bool] = {}
        self._window_cache: tuple[float, float, dict[str, list[Span]]] | None = None

    @property
    def replay_seconds(self) -> float:
        """How far before the last heartbeat a restart must replay probes."""
        return self._sla.confirm_within + self._sla.receive_deadline + 60.0

    @property
    def routes(self) -> tuple[str, ...]:
        """Routes known so far (configured first)."""
        return tuple(self._routes)

    def _add_route(self, route: str) -> None:
        if route in self._routes:
            return
        self._routes.append(route)
        for check in BASE_CHECKS:
            self._machines[(route, check)] = _Machine(route, check, self._sla.confirm_within)

    def _machine(self, route: str, check: Check) -> _Machine:
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
        """Advance time: extend the observed span, expire deadlines, count over-max probes."""
        now = self._clock() if now is None else now
        if self._run is not None:
            self._run[1] = max(self._run[1], now)
        out: list[Transition] = []
        deadline, maximum = self._sla.receive_deadline, self._sla.delay_maximum
        for probe_id, flight in list(self._flights.items()):
            if flight.accepted and flight.sent_at + maximum <= now:
                self._over_max_ids.setdefault(probe_id, flight.route)
            expired = flight.sent_at + deadline <= now and now >= self._grace_until
            if expired and not flight.receive_known:
                out += self._receive(probe_id, flight, ok=False)
            self._forget_if_done(probe_id, flight)
        for machine in self._machines.values():
            out += machine.tick(now)
        return self._with_derived(out)

    # -- probes

    def submitted(
        self, probe_id: str, route: str, sent_at: float, accepted_at: float | None = None
    ) -> list[Transition]:
        """The server accepted probe ``probe_id``: send worked; its arrival is now awaited."""
        del accepted_at  # the sample time is the send time; kept for symmetry with the ledger
        flight = self._flights.get(probe_id)
        if flight is None:
            flight = _Flight(route, sent_at, accepted=True)
            self._flights[probe_id] = flight
            self._machine(route, Check.RECEIVE).expect(probe_id, sent_at)
        out = self._machine(route, Check.SEND).sample(probe_id, sent_at, ok=True)
        return self._with_derived(out)

    def record(self, result: ProbeLike) -> list[Transition]:
        """Apply a probe outcome (feed each new ledger result once)."""
        status, probe_id = str(result.status), result.probe_id
        if status == "failed" and result.phase in SUBMIT_PHASES:
            self._flights.pop(probe_id, None)
            send = self._machine(result.route, Check.SEND)
            return self._with_derived(send.sample(probe_id, result.sent_at, ok=False))
        out: list[Transition] = []
        if result.accepted_at is not None or status in {"ok", "late", "overdue", "lost"}:
            out += self.submitted(probe_id, result.route, result.sent_at, result.accepted_at)
        flight = self._flights.get(probe_id) or _Flight(result.route, result.sent_at, True)
        delay = result.delay_seconds
        if status in {"ok", "late"} and delay is not None:
            if delay > self._sla.delay_maximum:
                self._over_max_ids.setdefault(probe_id, result.route)
            out += self._receive(probe_id, flight, ok=delay <= self._sla.receive_deadline)
            self._flights.pop(probe_id, None)
        elif status == "lost" or (status == "failed" and result.phase in RECEIVE_PHASES):
            out += self._receive(probe_id, flight, ok=False)
            if status == "failed":
                self._flights.pop(probe_id, None)
        return self._with_derived(out)

    def _receive(self, probe_id: str, flight: _Flight, *, ok: bool) -> list[Transition]:
        if flight.receive_known:
            return []
        flight.receive_known = True
        return self._machine(flight.route, Check.RECEIVE).sample(probe_id, flight.sent_at, ok)

    def _forget_if_done(self, probe_id: str, flight: _Flight) -> None:
        # A lost probe stays tracked until it has been counted over the maximum.
        if flight.receive_known and probe_id in self._over_max_ids:
            del self._flights[probe_id]

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

    def restore(self, source: HistorySource | History) -> list[Transition]:
        """Continue from a ledger's history; returns transitions the replay newly produced."""
        history = (
            source
            if isinstance(source, History)
            else source.history(
                replay_seconds=self.replay_seconds, delay_maximum=self._sla.delay_maximum
            )
        )
        self._runs = list(history.runs)
        self._baseline = dict(history.baseline)
        self._over_max_ids.update(history.over_max_ids)
        for tr in sorted(history.transitions, key=lambda t: t.at):
            if tr.check not in BASE_CHECKS:
                continue
            machine = self._machine(tr.route, tr.check)
            machine.cursor = max(machine.cursor, tr.at)
            if not tr.up and machine.down_since is None:
                machine.down_since = tr.at
            elif tr.up and machine.down_since is not None:
                machine.closed.append((machine.down_since, tr.at))
                machine.down_since = None
        for machine in self._machines.values():
            machine.cursor = max(machine.cursor, history.replay_from)
        for route in self._routes:
            self._derived[(route, Check.CONNECTIVITY)] = any(
                self._machines[(route, c)].down_since is not None for c in BASE_CHECKS
            )
        self._derived[(ALL_ROUTES, Check.ANY)] = any(self._derived.values())
        out: list[Transition] = []
        probes = sorted(history.probes, key=lambda p: p.sent_at)
        for probe in probes:  # register every awaited arrival before replaying any sample
            if probe.accepted_at is not None and str(probe.status) in {"sent", "overdue"}:
                self._machine(probe.route, Check.RECEIVE).expect(probe.probe_id, probe.sent_at)
        for probe in probes:
            out += self.record(probe)
        return out

    # -- reading

    def is_up(self, route: str, check: Check) -> bool:
        """Current confirmed state (a check never seen is up)."""
        if check in BASE_CHECKS:
            machine = self._machines.get((route, check))
            return machine is None or machine.down_since is None
        return not self._derived.get((route, check), False)

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
        """Totals, states and gauges for metrics."""
        now = self._clock() if now is None else now
        observed = self.observed_spans()
        origin = observed[0][0] if observed else now
        base = {key: union(m.spans(now)) for key, m in self._machines.items()}
        parts = breakdown(observed, base, self._routes, self._window_spans(origin, now))
        seen = total(observed)
        totals: dict[tuple[str, Check], CheckTotals] = {}
        for (route, check), (down, maint) in parts.items():
            totals[(route, check)] = CheckTotals(
                self._monotone(route, check, "observed", seen),
                self._monotone(route, check, "down", total(down)),
                self._monotone(route, check, "maintenance", total(maint)),
            )
        up = {key: self.is_up(*key) for key in totals}
        over: dict[str, int] = dict.fromkeys(self._routes, 0)
        for route in self._over_max_ids.values():
            over[route] = over.get(route, 0) + 1
        for route in over:
            over[route] += int(self._baseline.get((route, "", "over_max"), 0))
        flying: dict[str, int] = dict.fromkeys(self._routes, 0)
        for flight in self._flights.values():
            if not flight.receive_known:
                flying[flight.route] = flying.get(flight.route, 0) + 1
        glitches = {key: m.glitches for key, m in self._machines.items()}
        active = active_windows(self._windows, now)
        return Snapshot(now, totals, up, over, flying, glitches, active)

    def _monotone(self, route: str, check: Check, kind: str, value: float) -> float:
        key = (route, str(check), kind)
        value += self._baseline.get(key, 0.0)
        best = max(self._reported.get(key, 0.0), value)
        self._reported[key] = best
        return best
