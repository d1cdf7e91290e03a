"""What `mailprobe demo` shows of each route: fed by the agent's results, judged by its accounting.

A side of a route (send, receive) is `waiting` until its first result, `up` while its last
result was good, `failing (unconfirmed)` after a failure the accounting has not confirmed (one
failure is only a suspicion: the route is probed again after `sla.confirm_retry`), and `down`
only while `mailprobe_check_up` says the accounting confirmed it. So the view never calls a
route down before its first probe or after a glitch the report will not count.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from mailprobe.agent.probe import Probe, Status

Samples = Mapping[tuple[str, str, str], float]
"""(metric name, route, check or protocol) -> value."""

_SAMPLED = {
    "mailprobe_check_up": "check",
    "mailprobe_down_seconds_total": "check",
    "mailprobe_observed_seconds_total": "check",
}


class SideState(enum.StrEnum):
    """How one side of a route looks in the view."""

    WAITING = "waiting"
    UP = "up"
    FAILING = "failing (unconfirmed)"
    DOWN = "down"


class RouteView:
    """What the view shows of one route, fed by the agent's results."""

    def __init__(self) -> None:
        self.delays: deque[float] = deque(maxlen=5)
        self.ok = self.failed = self.overdue = self.lost = 0
        self.last_reason = ""
        # Last result per side: None before the first, True good, False failed.
        self.send: bool | None = None
        self.receive: bool | None = None

    def add(self, result: Probe) -> None:
        """Count a result and remember how each side of the route last fared."""
        if result.status in (Status.OK, Status.LATE) and result.delay_seconds is not None:
            self.ok += 1
            self.delays.append(result.delay_seconds)
            self.send, self.receive = True, result.status is Status.OK
        elif result.status is Status.FAILED:
            self.failed += 1
            self.last_reason = f"{result.phase}/{result.reason}"
            if (result.phase or "").startswith("smtp"):
                self.send = False
            else:
                self.receive = False
        elif result.status is Status.OVERDUE:
            self.overdue += 1
            self.send, self.receive = True, False
        elif result.status is Status.LOST:
            self.lost += 1
            self.receive = False

    def state(self, side: str, confirmed_up: float | None) -> SideState:
        """`side` (send or receive) given the accounting's mailprobe_check_up for it."""
        if confirmed_up == 0:
            return SideState.DOWN
        last = self.send if side == "send" else self.receive
        if last is None:
            return SideState.WAITING
        return SideState.UP if last else SideState.FAILING


def samples(registry: CollectorRegistry) -> Samples:
    """The accounting series the view reads, from one collection of the registry."""
    out: dict[tuple[str, str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            label = _SAMPLED.get(sample.name)
            if label is not None:
                out[(sample.name, sample.labels.get("route", ""), sample.labels[label])] = (
                    sample.value
                )
    return out


def summary(views: Mapping[str, RouteView], data: Samples) -> str:
    """One status line for all routes (the view when stdout is not a terminal)."""
    parts = []
    for name, view in views.items():
        send = view.state("send", data.get(("mailprobe_check_up", name, "send")))
        receive = view.state("receive", data.get(("mailprobe_check_up", name, "receive")))
        last = f" last={view.delays[-1]:.3f}s" if view.delays else ""
        parts.append(f"{name}: send {send}, receive {receive}, ok={view.ok} "
                     f"failed={view.failed}{last}")  # fmt: skip
    return "; ".join(parts)


_STYLE = {
    SideState.WAITING: "dim",
    SideState.UP: "green",
    SideState.FAILING: "yellow",
    SideState.DOWN: "red",
}


def table(views: Mapping[str, RouteView], data: Samples) -> Any:
    """The live table (rich)."""
    from rich.table import Table

    grid = Table(title="mailprobe demo: routes", expand=True)
    for col in ("route", "send", "receive", "last delays (s)", "ok", "failed", "overdue", "lost",
                "last failure", "down s (month)", "observed s"):  # fmt: skip
        grid.add_column(col)
    for name, view in views.items():
        states = [
            view.state(side, data.get(("mailprobe_check_up", name, side)))
            for side in ("send", "receive")
        ]
        cells = [f"[{_STYLE[s]}]{s}[/]" for s in states]
        delays = " ".join(f"{d:.3f}" for d in view.delays) or "-"
        # Month-so-far figures from the contract accounting (connectivity = send and receive).
        down = data.get(("mailprobe_down_seconds_total", name, "connectivity"), 0.0)
        observed = data.get(("mailprobe_observed_seconds_total", name, "connectivity"), 0.0)
        grid.add_row(name, *cells, delays, str(view.ok), str(view.failed), str(view.overdue),
                     str(view.lost), view.last_reason, f"{down:.1f}", f"{observed:.0f}")  # fmt: skip
    return grid
