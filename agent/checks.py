"""What a down period is about, its transitions, and down spans per route and check.

Checks. Per route: ``send`` (submission works), ``receive`` (the mailbox can be opened and probes
arrive in time), ``connectivity`` (both work: down while either is down). For the account, route
``all``: ``any`` (some check of some route is down; overlaps are counted once). ``send`` and
``receive`` are the base checks: their transitions are the record; the other two are derived.
``webmail`` is a webmail check's (its name in the route's place): counted apart, never part of
the mail checks.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mailprobe.agent.windows import Span, intersect, subtract, union

ALL_ROUTES = "all"
"""Route label of the account-wide ``any`` check."""


class Check(enum.StrEnum):
    """What a down period is about."""

    SEND = "send"
    RECEIVE = "receive"
    CONNECTIVITY = "connectivity"
    ANY = "any"
    WEBMAIL = "webmail"


BASE_CHECKS = (Check.SEND, Check.RECEIVE)


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
class CheckTotals:
    """Seconds for one (route, check): observed, down outside and down inside maintenance."""

    observed: float
    down: float
    maintenance: float


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
