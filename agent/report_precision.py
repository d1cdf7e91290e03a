"""How precise the report's figures are, in words a provider can check.

Arrival is stamped by the mailbox watcher (``mailprobe.probes.imap``): the middle of the bracket
between the last look that did not see a probe and the announcement that showed it, half its
width the error bound kept with each probe. The schedule of looks at the default command budget
says how wide the brackets are planned; the month's own bounds say how wide they were; the
benchmark (``bench/polite_watch.py``) measured the real error against the moment Dovecot wrote
the message. The measured figures below are the committed results
(``bench/results/polite_watch.md``); a unit test checks that they still say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailprobe.agent.budgets import DEFAULT as DEFAULT_BUDGET
from mailprobe.agent.clauses import Figures
from mailprobe.agent.probe import Probe
from mailprobe.agent.report_format import duration, minutes, percent
from mailprobe.agent.sla import SlaConfig
from mailprobe.probes.imap import WatchPolicy
from mailprobe.probes.poll import Sparse, plan

MEASURED_P99_MS: tuple[tuple[str, int], ...] = (
    ("0 s", 18), ("1 s", 16), ("2 s", 33), ("10 s", 182), ("30 s", 545), ("60 s", 860),
)  # fmt: skip
"""Absolute arrival error, p99 in ms, by true delay, at the default budget (self_hosted), from
the committed benchmark results."""
BENCH_FILES = ("bench/results/polite_watch.md",)


@dataclass(frozen=True, slots=True)
class ArrivalErrors:
    """The error bounds of a period's arrivals."""

    count: int  # arrivals with a bound
    p99: float | None
    maximum: float | None
    unbounded: int  # seen arriving, but recorded without a bound (before bounds were kept)


def arrival_errors(probes: Sequence[Probe]) -> ArrivalErrors:
    """The bounds of the probes seen arriving (found-late ones have none: not measured)."""
    seen = [p for p in probes if p.arrived and not p.found_late]
    bounds = sorted(p.arrival_error_seconds for p in seen if p.arrival_error_seconds is not None)
    if not bounds:
        return ArrivalErrors(0, None, None, len(seen))
    # Nearest rank: the bound that 99 % of the arrivals stay within.
    rank = max(0, min(len(bounds) - 1, -(-len(bounds) * 99 // 100) - 1))
    return ArrivalErrors(len(bounds), bounds[rank], bounds[-1], len(seen) - len(bounds))


def _schedule_note() -> str:
    pol = WatchPolicy(budget=DEFAULT_BUDGET)
    sparse = Sparse.within(DEFAULT_BUDGET)
    schedule = plan(DEFAULT_BUDGET, pol.schedule, sparse=sparse.count)
    knee = schedule.floor / schedule.ratio
    return (
        "Arrival is stamped at the middle of the bracket between the last look (IMAP NOOP) that "
        "did not see the probe and the server's notice of it (EXISTS), before the message was "
        "fetched; half the bracket's width is the error bound, kept in the ledger with each "
        "probe. While a probe is awaited the mailbox session looks on a schedule that fits the "
        "account's command budget (imap.max_commands_per_probe and max_commands_per_minute): at "
        f"the default budget ({DEFAULT_BUDGET.per_probe} a probe, {DEFAULT_BUDGET.per_minute} a "
        f"minute) every {duration(2 * schedule.floor)} for the first {duration(round(knee, 1))}, then at "
        f"intervals of {200 * schedule.ratio:.1f} % of the probe's age up to "
        f"{duration(schedule.window)} after sending, so the bound is "
        f"max({duration(schedule.floor)}, {100 * schedule.ratio:.1f} % of the delay); a smaller "
        "budget widens it. A probe arriving later is stamped from the server's IDLE notice, its "
        "bracket reaching back to the last look. Each probe's looks start at a random phase, so "
        "the error averages out instead of leaning one way."
    )


def _month_note(errors: ArrivalErrors) -> str:
    if errors.count == 0 or errors.p99 is None or errors.maximum is None:
        text = "In this period no arrival carries an error bound"
    else:
        text = (
            f"In this period {errors.count} arrival{'' if errors.count == 1 else 's'} carried an "
            f"error bound: p99 {duration(errors.p99)}, at most {duration(errors.maximum)}"
        )
    if errors.unbounded:
        text += (
            f" ({errors.unbounded} more seen arriving before bounds were kept: their stamp is "
            "within one fast-poll interval, 20 ms to 0.5 s)"
        )
    return text + "."


def precision_notes(
    sla: SlaConfig, figures: Figures, errors: ArrivalErrors | None = None
) -> tuple[str, ...]:
    """The precision of a scope's figures: arrival stamps, delay split, outages, coverage."""
    measured = ", ".join(f"{ms} ms at {delay}" for delay, ms in MEASURED_P99_MS)
    late = figures.delivery.found_late
    unobserved = figures.period_seconds - figures.observed_seconds
    sparse = Sparse.within(DEFAULT_BUDGET)
    return (
        _schedule_note(),
        _month_note(errors or ArrivalErrors(0, None, None, 0)),
        f"Measured on Postfix and Dovecot against the moment the message file appeared in the "
        f"mailbox, the absolute error of the stamp (p99) at the default budget was {measured} "
        f"({' and '.join(BENCH_FILES)}).",
        "A probe filed into the junk folder is found at the folder's next check (STATUS), "
        f"{duration(sparse.first)} to {duration(sparse.until)} after sending: its arrival is the "
        "middle between the check that did not see it and the one that did, with that bound.",
        "Send and receive delays are split at the server dates of the Received headers, which "
        "have whole seconds: each split point is placed inside its second, so either part may be "
        "off by up to 1 s while the two always add up to the end-to-end delay.",
        "A probe found in the mailbox when the session (re)connected was not seen arriving: it is "
        "flagged as found late, its arrival is the earliest moment the agent could have seen it, "
        f"and its delay enters no delay figure ({late} such probe{'' if late == 1 else 's'} in "
        "this period).",
        f"Down periods start and end at probe send times, to the sub-second. While a route is down "
        f"it is probed every {duration(sla.confirm_retry)}, so the end of an outage is "
        "known that closely; its start is the send time of the first failed probe.",
        f"Coverage: the agent observed {percent(figures.coverage_percent)} % of the evaluated "
        f"period ({minutes(unobserved)} min not observed). Time not observed is neither up nor down; "
        f"a clause is kept only with at least {sla.coverage_floor_percent:g} % observed.",
    )
