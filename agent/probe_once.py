"""`mailprobe probe-once`: one round trip with Nagios/Icinga output (or JSON) and exit code.

`--timeout` bounds the whole run, not one step: connecting the watcher, submitting, waiting for
delivery and logging out each get at most what is left of it. Without `--timeout` the watcher
gets its IMAP timeout to connect and the probe `overdue_after` to arrive, as before.

The agent's own machinery (submission, the route's receiving watcher, the in-flight registry)
without its ledger or route loops, and with an identity of its own: a probe-once run beside a
daemon on the same mailbox never touches the daemon's books or probes, nor the daemon its probe.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from mailprobe.agent.config import Config, Route
from mailprobe.agent.identity import ephemeral
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.runtime import Agent
from mailprobe.probes.errors import Phase, Reason
from mailprobe.probes.message import new_probe_id

EXIT_OK, EXIT_WARN, EXIT_FAIL = 0, 1, 2
NAGIOS_STATE = {Status.OK: "OK", Status.LATE: "WARNING", Status.OVERDUE: "WARNING"}
# Kept back from --timeout for logging out: the last 10 % of it, at most a second.
_LOGOUT_SHARE, _LOGOUT_MAX = 0.1, 1.0
_NO_PROBE = "-" * 32  # the probe id of a result for a probe that was never built


def result_json(result: Probe) -> dict[str, object]:
    """The JSON shape of a probe result (probe-once --json)."""
    status = "ok" if result.status is Status.OK else result.status.value
    if result.status is Status.LATE:
        status = "overdue"
    return {
        "route": result.route,
        "probe_id": result.probe_id,
        "status": status,
        "delay_seconds": result.delay_seconds,
        "sent_at": result.sent_at,
        "accepted_at": result.accepted_at,
        "arrived_at": result.arrived_at,
        "reason": result.reason,
        "phase": result.phase,
        "reply_code": result.reply_code,
        "phases": dict(result.phases),
        "send_delay_seconds": result.send_delay_seconds,
        "receive_delay_seconds": result.receive_delay_seconds,
    }


def thresholds(config: Config, route: Route) -> tuple[float, float]:
    """(warning, critical) delay for the perfdata: the contract's average delay and the route's
    `overdue_after`, kept in order (warning <= critical) when overdue_after is the shorter."""
    critical = route.overdue_after
    return min(config.sla.delay_average, critical), critical


def nagios_line(result: Probe, warn: float, crit: float) -> str:
    """A Nagios/Icinga plugin line with perfdata."""
    state = NAGIOS_STATE.get(result.status, "CRITICAL")
    if result.status in (Status.OK, Status.LATE):
        text = f"route {result.route} delivered in {result.delay_seconds:.3f}s"
    elif result.status is Status.OVERDUE:
        text = f"route {result.route} probe not delivered yet (overdue)"
    else:
        text = f"route {result.route} failed in {result.phase}: {result.reason}"
        if result.reply_code:
            text += f" (reply {result.reply_code})"
    perf = []
    if result.delay_seconds is not None:
        perf.append(f"delay={result.delay_seconds:.6f}s;{warn:g};{crit:g};0")
    perf += [f"{name}={sec:.6f}s;;;0" for name, sec in result.phases.items()]
    return f"MAILPROBE {state} - {text}" + (" | " + " ".join(perf) if perf else "")


def exit_code(result: Probe) -> int:
    """0 ok, 1 overdue (or arrived late), 2 failed or lost."""
    if result.status is Status.OK:
        return EXIT_OK
    if result.status in (Status.OVERDUE, Status.LATE):
        return EXIT_WARN
    return EXIT_FAIL


@dataclass(frozen=True, slots=True)
class _Budget:
    """What is left of --timeout (None: no overall bound) on the event loop's clock."""

    deadline: float | None

    @classmethod
    def of(cls, timeout: float | None, since: float) -> _Budget:
        return cls(None if timeout is None else since + timeout)

    def cap(self, seconds: float) -> float:
        """`seconds`, or less when less is left."""
        if self.deadline is None:
            return seconds
        return max(0.0, min(seconds, self.deadline - asyncio.get_running_loop().time()))

    def left(self) -> float | None:
        """Seconds left (None: unbounded)."""
        return None if self.deadline is None else self.cap(self.deadline)


async def probe_once(
    config: Config, route_name: str, timeout: float | None, *, since: float | None = None
) -> Probe:
    """Connect the route's watcher, send one probe, wait for it; all within `timeout` seconds
    of `since` (a time.monotonic() reading, e.g. when the command started; default: now)."""
    route = config.route(route_name)
    imap = config.accounts[route.to].imap
    assert imap is not None  # noqa: S101 - config validation: a route's `to` has an imap section
    agent = Agent(config, serve_http=False, identity=ephemeral())
    # The event loop's clock is time.monotonic(), so `since` and the budget's reads agree.
    start = asyncio.get_running_loop().time() if since is None else since
    reserve = 0.0 if timeout is None else min(_LOGOUT_MAX, timeout * _LOGOUT_SHARE)
    whole = _Budget.of(timeout, start)
    work = _Budget.of(None if timeout is None else timeout - reserve, start)
    watcher_task = asyncio.ensure_future(agent.watchers.watches[route.to].watcher.run())
    try:
        return await _round_trip(agent, route, imap.timeout, work)
    finally:
        watcher_task.cancel()
        # A watcher that will not stop, or a server slow to answer LOGOUT, costs what is left.
        await asyncio.wait({watcher_task}, timeout=whole.left())
        if watcher_task.done() and not watcher_task.cancelled():
            watcher_task.exception()  # retrieved: a watcher that failed has said why already
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(agent.watchers.close(), whole.left())


async def round_trip(agent: Agent, route: Route, timeout: float) -> Probe:
    """Send one probe of the agent's and wait, at most ``timeout`` in all, for its final record.

    The final record: arrived, lost or failed; still in flight at the timeout, it is returned
    as overdue.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pid = new_probe_id()
    done: asyncio.Future[Probe] = loop.create_future()

    def mine(probe: Probe) -> None:
        final = probe.arrived or probe.status in (Status.LOST, Status.FAILED)
        if probe.probe_id == pid and final and not done.done():
            done.set_result(probe)

    stop_listening = agent.books.listen(mine)
    try:
        try:
            record = await asyncio.wait_for(agent.probe(route, pid), timeout)
        except TimeoutError:
            return Probe(pid, route.name, Status.FAILED, agent.clock.time(),
                         phase=Phase.SMTP_SUBMIT, reason=Reason.TIMEOUT)  # fmt: skip
        if record is None or record.status is Status.FAILED:
            return record or Probe(pid, route.name, Status.FAILED, agent.clock.time(),
                                   phase=Phase.SMTP_SUBMIT, reason=Reason.ERROR)  # fmt: skip
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(done), deadline - loop.time())
        current = agent.books.inflight.get(pid) or record
        if current.status is Status.SENT:
            current = current.overdue(agent.clock.time())
        return current
    finally:
        stop_listening()


async def _round_trip(agent: Agent, route: Route, connect: float, budget: _Budget) -> Probe:
    now = agent.clock.time
    if not await agent.watchers.wait_up([route.to], budget.cap(connect)):
        error = agent.watchers.watches[route.to].error
        reason = Reason(error.reason) if error else Reason.TIMEOUT
        return Probe(_NO_PROBE, route.name, Status.FAILED, now(), phase=Phase.IMAP, reason=reason)
    started = now()
    try:
        return await asyncio.wait_for(
            round_trip(agent, route, budget.cap(route.overdue_after)), budget.left()
        )
    except TimeoutError:
        pass
    # --timeout ran out during the round trip: still on its way, or not even submitted.
    pending = next((p for p in agent.books.inflight if p.route == route.name), None)
    if pending is None:
        return Probe(_NO_PROBE, route.name, Status.FAILED, started, phase=Phase.SMTP_SUBMIT,
                     reason=Reason.TIMEOUT)  # fmt: skip
    return pending if pending.status is not Status.SENT else pending.overdue(now())
