"""Spans back from a seconds counter: when a state held, from samples of how long it had held.

The agent exports ``mailprobe_observed_seconds_total`` and ``mailprobe_down_seconds_total`` (plus
``_maintenance_``): counters that grow by one a second while the agent observes, or while a check
is down. Sampled by Prometheus, each interval between two samples says how many of its seconds
the state held, not which. Laying them out:

- Consecutive intervals that grew form one run, laid end to end: a run of ``L`` seconds that
  stopped growing in the interval after sample ``t`` ends at ``t + d`` (``d`` what that interval
  grew: the state held from ``t`` on and ended ``d`` later) and began ``L`` seconds before.
- An interval may grow by more than its length: the agent counts an open outage only up to a
  sample still being taken (a probe whose answer is pending), then catches up. The excess belongs
  to earlier intervals, so the run is laid out backwards from its end and takes in every earlier
  interval it reaches, also one that did not grow.
- A counter that goes down was reset (a new state directory): its new value is what it grew.

So the seconds are exact (a run holds exactly what the counter grew) and each edge is off by at
most one sample interval, plus the lag between the agent's last update and the scrape (its tick,
5 s): an outage that starts and ends between two samples is placed at the first of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from mailprobe.agent.windows import Span, normalize

TOUCH = 0.5
"""Seconds: a run laid out to within this of an earlier growing interval takes it in (the
agent's figures move in steps, so two runs that close are one the counter cannot tell apart)."""


def increments(samples: Sequence[tuple[float, float]]) -> list[tuple[float, float, float]]:
    """(previous time, time, growth) of each interval between samples sorted by time."""
    out = []
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        grown = v1 - v0 if v1 >= v0 else v1  # a reset starts again from 0
        out.append((t0, t1, grown))
    return out


def spans_from_counter(samples: Sequence[tuple[float, float]], touch: float = TOUCH) -> list[Span]:
    """The spans a seconds counter grew in, from its samples (time, value) sorted by time."""
    spans: list[Span] = []
    run: list[float] | None = None  # [start, end] of the run being laid out, backwards
    for t0, t1, grown in reversed(increments(samples)):
        if grown <= 0:
            continue
        if run is not None and t1 >= run[0] - touch:
            run[0] -= grown
            continue
        if run is not None:
            spans.append((run[0], run[1]))
        end = t0 + min(grown, t1 - t0)
        run = [end - grown, end]
    if run is not None:
        spans.append((run[0], run[1]))
    return normalize(spans)
