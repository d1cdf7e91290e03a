"""How precise the report's figures are, in words a provider can check.

Arrival is stamped by the mailbox watcher (``mailprobe.probes.imap``): its fast-poll policy bounds
how late a stamp can be, and the arrival-time benchmark (``bench/delay_precision.py``) measured
the real error against the moment Dovecot wrote the message. The measured figures below are the
committed results (``bench/results/delay_precision.md`` and ``delay_precision_long.md``); a unit
test checks that they still say so.
"""

from __future__ import annotations

from mailprobe.agent.clauses import Figures
from mailprobe.agent.report_format import duration, minutes, percent
from mailprobe.agent.sla import SlaConfig
from mailprobe.probes.imap import WatchPolicy

MEASURED_P99_MS: tuple[tuple[str, int], ...] = (("up to 10 s", 53), ("20 s", 99), ("40 s", 186))
"""Arrival-stamp error, p99 in ms, by true delay (the worst of 0, 0.5, 2, 5 and 10 s for the
first), from the committed benchmark results."""
BENCH_FILES = ("bench/results/delay_precision.md", "bench/results/delay_precision_long.md")


def precision_notes(sla: SlaConfig, figures: Figures) -> tuple[str, ...]:
    """The precision of a scope's figures: arrival stamps, delay split, outages, coverage."""
    pol = WatchPolicy()
    floor_until = pol.fast_poll_min / pol.fast_poll_factor
    cap_from = pol.fast_poll_max / pol.fast_poll_factor
    measured = ", ".join(
        f"{ms} ms {'for delays ' if delay.startswith('up') else 'at '}{delay}"
        for delay, ms in MEASURED_P99_MS
    )
    late = figures.delivery.found_late
    unobserved = figures.period_seconds - figures.observed_seconds
    return (
        "Arrival is the agent's clock reading when the server's notice of the new message "
        "(IMAP EXISTS) reached it, before the message was fetched. While a probe is awaited the "
        f"mailbox session polls at an interval of {pol.fast_poll_factor * 100:g} % of the "
        f"probe's age, kept between {duration(pol.fast_poll_min)} and {duration(pol.fast_poll_max)}, for "
        f"{duration(pol.fast_window)} after sending, so a stamp is late by about one poll "
        f"interval at most: {duration(pol.fast_poll_min)} for delays up to "
        f"{duration(floor_until)}, {duration(pol.fast_poll_factor * 20)} at 20 s, "
        f"{duration(pol.fast_poll_max)} from {duration(cap_from)} on. Later probes are "
        "stamped when the server's IDLE notice reaches the agent.",
        f"Measured on Postfix and Dovecot against the moment the message file appeared in the "
        f"mailbox, the stamp's error (p99) was at most {measured} "
        f"({' and '.join(BENCH_FILES)}).",
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
