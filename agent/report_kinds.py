"""Internal and external mail in the report: the routes of one kind taken together.

The contract promises that the address "can send and receive internal and external mail". A
route is ``internal`` (both ends at the monitored provider) or ``external`` (one end elsewhere),
as declared in its ``kind:`` or derived from the addresses' domains (``Config.route_kind``). For
each kind with routes, the report adds a scope judged on the connectivity and delay clauses: down
while any route of that kind is down (overlaps counted once, maintenance apart), delays of the
probes of those routes. The account figure stays over both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mailprobe.agent.checks import Check
from mailprobe.agent.windows import Span, subtract, union

KINDS = ("internal", "external")
KIND_SCOPE = "kind:"
"""Prefix of a kind scope's name in the report (``kind:internal``): never a route name."""


def kind_routes(kinds: Mapping[str, str], known: Sequence[str]) -> dict[str, list[str]]:
    """The known routes of each kind that has any, in the order of ``KINDS``."""
    out = {kind: [r for r in known if kinds.get(r) == kind] for kind in KINDS}
    return {kind: routes for kind, routes in out.items() if routes}


def kind_parts(
    parts: Mapping[tuple[str, Check], tuple[list[Span], list[Span]]], routes: Sequence[str]
) -> tuple[list[Span], list[Span]]:
    """(down outside, down inside maintenance) of the routes together, as ``any`` does it."""
    down = union(*(parts[(r, Check.CONNECTIVITY)][0] for r in routes))
    maint = union(*(parts[(r, Check.CONNECTIVITY)][1] for r in routes))
    return down, subtract(maint, down)
