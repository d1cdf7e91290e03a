"""Folding ledger rows older than the retention into per-route totals, so reports keep their figures.

The report needs the report month and the rolling year before it, so rows are kept at least
``MIN_RETENTION``. What the folded rows amounted to (observed, down and maintenance seconds per
route and check, and the probe counts) is computed here with the same span arithmetic the
accounting uses, and handed to ``Ledger.compact`` to store; the ledger does no accounting.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailprobe.agent.checks import Check, breakdown, spans_from_transitions
from mailprobe.agent.config import MIN_RETENTION
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.windows import (
    OneOffWindow,
    RecurringWindow,
    normalize,
    total,
    window_spans,
)


def compact(
    ledger: Ledger,
    now: float,
    *,
    retention: float,
    windows: Sequence[OneOffWindow | RecurringWindow] = (),
) -> float:
    """Fold rows older than ``retention`` (at least MIN_RETENTION) into the baseline; the cut.

    Totals computed from the ledger afterwards (baseline + rows) are the same as before.
    """
    cut = now - max(retention, MIN_RETENTION)
    runs = ledger.runs()
    if not runs or runs[0][0] >= cut:
        return cut
    before = [t for t in ledger.transitions() if t.at < cut]
    observed = normalize((s, min(e, cut)) for s, e in runs if s < cut)
    parts = breakdown(
        observed,
        spans_from_transitions(before, cut),
        ledger.routes(),
        lambda route: window_spans(windows, runs[0][0], cut, route),
    )
    seen = total(observed)
    carried: dict[tuple[str, str, str], float] = {}
    for (route, check), (down, maint) in parts.items():
        carried[(route, str(check), "observed")] = seen
        carried[(route, str(check), "down")] = total(down)
        carried[(route, str(check), "maintenance")] = total(maint)
    for (route, kind), count in ledger.counts(cut, compacted=False).items():
        carried[(route, "", kind)] = count
    state: dict[tuple[str, Check], bool] = {}
    for tr in before:
        state[(tr.route, tr.check)] = tr.up
    ledger.compact(cut, carried, [key for key, up in state.items() if not up])
    return cut
