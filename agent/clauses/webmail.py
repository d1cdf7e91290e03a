"""Webmail opens within 10 s (remedy by default: double service time).

Each webmail load is a sample; a load that did not open within ``sla.webmail.limit`` (slower, or
failed) is over the limit. The verdict follows ``sla.webmail.policy``:

- ``count`` (the default): more than ``allowed`` (2) loads over the limit in the month is a
  breach, as the contract reads its delay maximum; certain once exceeded.
- ``any``: a single load over the limit is a breach.
- ``percentile``: the ``percentile``th (95th) load time of the month over the limit is a breach
  (a failed load counts as never opened); decided only once the month is over.

Judged for the account (every webmail check together); webmail outage minutes are shown beside
it, counted apart from mail connectivity. With no webmail check configured and no load recorded
the clause is not judged: the report names it as not measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mailprobe.agent.clauses.base import (
    ClauseResult,
    Figures,
    Scope,
    Unit,
    Verdict,
    WebmailStats,
    decide,
)
from mailprobe.agent.durations import format_duration
from mailprobe.agent.sla import SlaConfig, WebmailPolicy
from mailprobe.agent.webmail_sample import WebmailSample


def nearest_rank(values: Sequence[float], percent: float) -> float:
    """The ``percent``th percentile by nearest rank (a value that occurred); values not empty."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100.0 * len(ordered)))
    return ordered[rank - 1]


def webmail_stats(
    samples: Sequence[WebmailSample],
    sla: SlaConfig,
    *,
    checks: int,
    down_seconds: float = 0.0,
    maintenance_seconds: float = 0.0,
) -> WebmailStats:
    """The month's figures of these loads against the contract's limit."""
    limit = sla.webmail.limit
    opened = [s.seconds for s in samples if s.ok]
    every = [s.seconds if s.ok else math.inf for s in samples]
    return WebmailStats(
        checks=checks,
        samples=len(samples),
        failed=sum(not s.ok for s in samples),
        over_limit=sum(s.over(limit) for s in samples),
        p95=nearest_rank(opened, 95.0) if opened else None,
        maximum=max(opened) if opened else None,
        percentile=nearest_rank(every, sla.webmail.percentile) if every else None,
        down_seconds=down_seconds,
        maintenance_seconds=maintenance_seconds,
    )


def _summary(stats: WebmailStats, limit: float) -> str:
    within = stats.within_percent
    text = (
        f"{stats.over_limit} of {stats.samples} loads did not open within "
        f"{format_duration(limit)} ({stats.failed} failed)"
    )
    if stats.p95 is not None and stats.maximum is not None:
        text += f"; p95 {stats.p95:.3f} s, maximum {stats.maximum:.3f} s"
    if within is not None:
        text += f"; {math.floor(within * 100) / 100:.2f} % within the limit"
    return text + f"; webmail down {stats.down_seconds / 60.0:.2f} min, apart from mail"


class Webmail:
    """Webmail loads against the limit, under the configured policy."""

    id = "webmail"
    group = "webmail"
    scopes = frozenset({Scope.ACCOUNT})

    @property
    def title(self) -> str:
        """The clause in words."""
        return "Webmail opens within the limit"

    @property
    def unit(self) -> Unit:
        """Loads (count policies); the percentile policy is judged in seconds (see ``judge``)."""
        return Unit.LOADS

    def limit(self, sla: SlaConfig, month_seconds: float) -> float:
        """Loads over the limit allowed a month (seconds for the percentile policy)."""
        policy = sla.webmail.policy
        if policy is WebmailPolicy.PERCENTILE:
            return sla.webmail.limit
        return 0.0 if policy is WebmailPolicy.ANY else float(sla.webmail.allowed)

    def judge(self, figures: Figures, sla: SlaConfig, scope: Scope) -> ClauseResult | None:
        """The month's loads against the policy; None when webmail is neither configured nor seen."""
        stats = figures.webmail
        if stats.checks == 0 and stats.samples == 0:
            return None
        cfg = sla.webmail
        bound = format_duration(cfg.limit)
        if stats.samples == 0:
            return ClauseResult(
                self.id, self.group, f"Webmail opens within {bound}", None,
                self.limit(sla, figures.month_seconds), self._unit(sla), Verdict.NOT_ENOUGH_DATA,
                "no webmail load recorded", "webmail loads while the agent runs",
            )  # fmt: skip
        if cfg.policy is WebmailPolicy.PERCENTILE:
            return self._percentile(figures, sla, stats)
        allowed = 0 if cfg.policy is WebmailPolicy.ANY else cfg.allowed
        frac = figures.observed_fraction
        projected = stats.over_limit / frac if frac > 0 else float(stats.over_limit)
        verdict, needed, projection = decide(
            figures, sla, certain_breach=stats.over_limit > allowed, holds=True,
            projected_holds=projected <= allowed,
        )  # fmt: skip
        rule = "any is a breach" if allowed == 0 else f"more than {allowed} is a breach"
        detail = f"{_summary(stats, cfg.limit)} ({rule})"
        excess = float(max(0, stats.over_limit - allowed))
        return ClauseResult(
            self.id, self.group, f"Webmail opens within {bound}: loads over it",
            float(stats.over_limit), float(allowed), Unit.LOADS, verdict, detail, needed,
            projection, overdue=excess, committed=float(max(allowed, 1)),
        )  # fmt: skip

    def _percentile(self, figures: Figures, sla: SlaConfig, stats: WebmailStats) -> ClauseResult:
        cfg = sla.webmail
        value = stats.percentile
        assert value is not None  # noqa: S101 - there are samples
        holds = value <= cfg.limit
        verdict, needed, projection = decide(
            figures, sla, certain_breach=False, holds=holds, projected_holds=holds
        )
        shown = f"{value:.3f} s" if math.isfinite(value) else "a load that never opened"
        detail = f"p{cfg.percentile:g} {shown}; {_summary(stats, cfg.limit)}"
        return ClauseResult(
            self.id, self.group,
            f"Webmail opens within {format_duration(cfg.limit)}: p{cfg.percentile:g} load time",
            value if math.isfinite(value) else None, cfg.limit, Unit.SECONDS, verdict, detail,
            needed, projection, overdue=max(0.0, min(value, 1e9) - cfg.limit),
            committed=cfg.limit,
        )  # fmt: skip

    @staticmethod
    def _unit(sla: SlaConfig) -> Unit:
        return Unit.SECONDS if sla.webmail.policy is WebmailPolicy.PERCENTILE else Unit.LOADS
