"""The accounting of routes that a config reload adds and retires while the agent runs.

``Accounting`` (``mailprobe.agent.accounting``) takes every route it hears of, for good: a restart
rebuilds the routes of before from the ledger. A reload that removes a route, or moves it to other
accounts, retires it instead: its history stays (its totals and the account's ``any`` keep what it
was down), what it still awaits settles without a verdict, a down period still open ends at the
reload (it is no longer observed, so it is no longer down), and whatever comes for it later (a
probe of before, lost a day after) says nothing, until a reload adds it again.

A restart with a config that no longer has a route the ledger knows does the same: the route is
retired where the run before ended (its last heartbeat), the last moment anyone observed it, so
an outage it was in then does not go on adding to the account's downtime.
"""

from __future__ import annotations

from mailprobe.agent.accounting import Accounting, History
from mailprobe.agent.checks import BASE_CHECKS, Transition
from mailprobe.agent.probe import Probe


class RouteAccounting(Accounting):
    """``Accounting`` whose routes a reload can add and retire."""

    _retired: frozenset[str] = frozenset()

    def restore(self, history: History) -> list[Transition]:
        """As ``Accounting.restore``; then the ledger's routes the config no longer has are
        retired at the end of the run before."""
        configured = set(self._routes)
        out = super().restore(history)
        gone = [route for route in self._routes if route not in configured]
        if gone and history.runs:
            ended = history.runs[-1][1]
            for route in gone:
                out += self.retire(route, ended)
        return out

    def add_route(self, route: str) -> None:
        """Account for ``route`` from now on (a reload added it, or added it again)."""
        self._retired = self._retired - {route}
        self._add_route(route)

    def retire(self, route: str, at: float) -> list[Transition]:
        """Stop accounting for ``route`` at ``at`` (see the module doc)."""
        self._retired = self._retired | {route}
        self._mailbox_down.pop(route, None)
        out: list[Transition] = []
        for check in BASE_CHECKS:
            machine = self._machines.get((route, check))
            if machine is not None:
                for sample_id in list(machine.waiting):
                    out += machine.settle(sample_id)
                out += machine.close(at)
        return self._with_derived(out)

    def attempt(self, probe_id: str, route: str, sent_at: float) -> None:
        """As ``Accounting.attempt``; nothing for a retired route."""
        if route not in self._retired:
            super().attempt(probe_id, route, sent_at)

    def record(self, probe: Probe) -> list[Transition]:
        """As ``Accounting.record``; a retired route's record counts only over the maximum."""
        if probe.route not in self._retired:
            return super().record(probe)
        if probe.over_max_at is not None:
            self._over_max.setdefault(probe.probe_id, (probe.route, probe.over_max_at))
        return []
