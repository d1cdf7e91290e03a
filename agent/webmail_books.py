"""Webmail samples -> a ``webmail`` check per webmail entry, confirmed like mail, and month figures.

A load that did not open within ``sla.webmail.limit`` (slower, or failed) is a down-sample of
its check, an opened one an up-sample; ``mailprobe.agent.confirm.Confirmation`` applies the same
rules as to mail (one failure is a suspicion, a second confirms it from the first, a success
within ``confirm_within`` clears it). Transitions carry the check's name in the route's place and
the check ``webmail``: they are recorded with the mail's but never count as mail downtime.

The month figures (``month``) are computed exactly as the report computes them from the ledger
(``mailprobe.agent.clauses.webmail.webmail_stats``), over the month's samples (read back from the
ledger at start) and the confirmed down spans, observed and outside maintenance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.clauses.base import WebmailStats
from mailprobe.agent.clauses.webmail import webmail_stats
from mailprobe.agent.confirm import Confirmation
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.webmail_sample import WebmailSample
from mailprobe.agent.windows import (
    OneOffWindow,
    RecurringWindow,
    Span,
    clip,
    intersect,
    month_bounds,
    month_of,
    subtract,
    total,
    union,
    window_spans,
)


def down_spans(transitions: Iterable[Transition], until: float) -> dict[str, list[Span]]:
    """Down spans per webmail check from its recorded transitions; an open one runs to ``until``."""
    since: dict[str, float] = {}
    out: dict[str, list[Span]] = {}
    for tr in sorted(transitions, key=lambda t: t.at):
        if tr.check is not Check.WEBMAIL:
            continue
        out.setdefault(tr.route, [])
        if not tr.up:
            since.setdefault(tr.route, tr.at)
        elif tr.route in since:
            out[tr.route].append((since.pop(tr.route), tr.at))
    for name, start in since.items():
        out[name].append((start, max(start, until)))
    return {name: union(spans) for name, spans in out.items()}


def month_stats(
    samples: Sequence[WebmailSample],
    down: Mapping[str, Sequence[Span]],
    observed: Sequence[Span],
    windows: Sequence[OneOffWindow | RecurringWindow],
    sla: SlaConfig,
    span: Span,
    checks: Sequence[str],
) -> dict[str, WebmailStats]:
    """Figures per webmail check for ``span`` (a month or its part), and ``""`` for all together.

    Down seconds are observed and outside maintenance windows that cover every route; down
    inside such a window is maintenance.
    """
    lo, hi = span
    maint = window_spans(windows, lo, hi, None)
    names = list(dict.fromkeys([*checks, *(s.check for s in samples), *down]))
    out: dict[str, WebmailStats] = {}
    every_down: list[Span] = []
    for name in names:
        seen = intersect(clip(list(down.get(name, ())), lo, hi), observed)
        every_down = union(every_down, seen)
        mine = [s for s in samples if s.check == name and lo <= s.at < hi]
        out[name] = webmail_stats(
            mine, sla, checks=int(name in checks),
            down_seconds=total(subtract(seen, maint)),
            maintenance_seconds=total(intersect(seen, maint)),
        )  # fmt: skip
    out[""] = webmail_stats(
        [s for s in samples if lo <= s.at < hi], sla, checks=len(checks),
        down_seconds=total(subtract(every_down, maint)),
        maintenance_seconds=total(intersect(every_down, maint)),
    )  # fmt: skip
    return out


class WebmailAccounting:
    """Confirmation per webmail check, and the month's samples for the exported figures."""

    def __init__(
        self,
        checks: Sequence[str],
        sla: SlaConfig,
        windows: Sequence[OneOffWindow | RecurringWindow] = (),
    ) -> None:
        self._sla, self._windows = sla, tuple(windows)
        self.checks = tuple(checks)
        self._machines = {c: Confirmation(c, Check.WEBMAIL, sla.confirm_within) for c in checks}
        self._samples: list[WebmailSample] = []
        self._month = ""

    def restore(self, transitions: Iterable[Transition], samples: Iterable[WebmailSample]) -> None:
        """Continue from the ledger: the checks' transitions, the month's samples."""
        for tr in sorted(transitions, key=lambda t: t.at):
            machine = self._machines.get(tr.route)
            if machine is not None and tr.check is Check.WEBMAIL:
                machine.restore(tr)
        self._samples = [s for s in samples if s.check in self._machines]

    def record(self, sample: WebmailSample) -> list[Transition]:
        """A load: an up- or down-sample of its check; the transitions it causes."""
        self._keep(sample)
        machine = self._machines.get(sample.check)
        if machine is None:
            return []
        ok = not sample.over(self._sla.webmail.limit)
        return machine.sample(f"{sample.check}@{sample.at!r}", sample.at, ok)

    def _keep(self, sample: WebmailSample) -> None:
        month = month_of(sample.at, self._sla.timezone)
        if month != self._month:
            start = month_bounds(month, self._sla.timezone)[0]
            self._samples = [s for s in self._samples if s.at >= start]
            self._month = month
        self._samples.append(sample)

    def tick(self, now: float) -> list[Transition]:
        """Confirm suspicions nothing could clear in time."""
        out: list[Transition] = []
        for machine in self._machines.values():
            out += machine.tick(now)
        return out

    def unsettled(self, check: str) -> bool:
        """The check is suspect or down: load it again soon."""
        machine = self._machines.get(check)
        return machine is not None and machine.unsettled

    def is_up(self, check: str) -> bool:
        """The check's confirmed state (up until confirmed down)."""
        machine = self._machines.get(check)
        return machine is None or machine.down_since is None

    def month(self, now: float, observed: Sequence[Span]) -> dict[str, WebmailStats]:
        """Figures of the contract month to date, per check and (``""``) for all."""
        start = month_bounds(month_of(now, self._sla.timezone), self._sla.timezone)[0]
        down = {name: m.spans(now) for name, m in self._machines.items()}
        return month_stats(self._samples, down, observed, self._windows, self._sla, (start, now),
                           self.checks)  # fmt: skip
