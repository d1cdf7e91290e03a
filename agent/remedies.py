"""What the month's breached clauses owe, under the configured remedies.

A clause belongs to a group (connectivity, delay, operations, anti_spam, ...) and each group has a
remedy. Only decided breaches owe anything. ``double_service_time`` and ``fee_waived`` are owed once
a month however many clauses call for them. ``percentage`` is per breached clause (one event):
contract_total x overdue / committed x coefficient, or contract_total x rate_percent_per_hour % x
overdue hours when a rate is set and the clause measures time; at least ``minimum_per_event``; all
percentage amounts together capped at ``cap_percent`` of the contract total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailprobe.agent.clauses import ClauseResult, Verdict
from mailprobe.agent.sla import Remedy, RemedyKind, SlaConfig


@dataclass(frozen=True, slots=True)
class Owed:
    """One remedy owed, with the clauses that call for it and the reason in words."""

    kind: RemedyKind
    clauses: tuple[str, ...]
    amount: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class RemedyOutcome:
    """Everything owed for the month."""

    owed: tuple[Owed, ...]
    money_total: float
    currency: str
    capped: bool
    summary: str


def _remedy_for(group: str, sla: SlaConfig) -> Remedy:
    remedy: Remedy = getattr(sla.remedies, group)
    return remedy


def _percentage(
    result: ClauseResult, remedy: Remedy, total: float, minimum: float
) -> tuple[float, str]:
    if remedy.rate_percent_per_hour is not None and result.overdue_hours is not None:
        amount = total * remedy.rate_percent_per_hour / 100.0 * result.overdue_hours
        formula = (
            f"contract total {total:g} x {remedy.rate_percent_per_hour:g} % per hour x "
            f"{result.overdue_hours:.3f} h overdue"
        )
    else:
        amount = total * (result.overdue / result.committed) * remedy.coefficient
        formula = (
            f"contract total {total:g} x overdue {result.overdue:g} / committed "
            f"{result.committed:g} {result.unit} x coefficient {remedy.coefficient:g}"
        )
    if amount < minimum:
        return minimum, f"{formula} = {amount:.2f}, raised to the minimum {minimum:g} per event"
    return amount, f"{formula} = {amount:.2f}"


def remedies(
    results: Sequence[ClauseResult], sla: SlaConfig, month: str, month_days: int
) -> RemedyOutcome:
    """What the breached clauses owe for ``month`` under the configured remedies."""
    comp = sla.compensation
    breached = [r for r in results if r.verdict is Verdict.BREACHED]
    by_kind: dict[RemedyKind, list[ClauseResult]] = {}
    for result in breached:
        by_kind.setdefault(_remedy_for(result.group, sla).kind, []).append(result)
    owed: list[Owed] = []
    money, capped = 0.0, False
    if doubled := by_kind.get(RemedyKind.DOUBLE_SERVICE_TIME):
        names = ", ".join(r.title for r in doubled)
        owed.append(
            Owed(
                RemedyKind.DOUBLE_SERVICE_TIME,
                tuple(r.clause for r in doubled),
                None,
                f"double service time for {month}: the month's {month_days} days of service count "
                f"twice ({month_days} days' extension), because of: {names}",
            )
        )
    if waived := by_kind.get(RemedyKind.FEE_WAIVED):
        names = ", ".join(r.title for r in waived)
        owed.append(
            Owed(
                RemedyKind.FEE_WAIVED,
                tuple(r.clause for r in waived),
                comp.monthly_fee,
                f"monthly fee for {month} waived, because of: {names}",
            )
        )
        money += comp.monthly_fee or 0.0
    if (events := by_kind.get(RemedyKind.PERCENTAGE)) and comp.contract_total is not None:
        total = comp.contract_total
        priced = [
            _percentage(r, _remedy_for(r.group, sla), total, comp.minimum_per_event) for r in events
        ]
        amounts = [amount for amount, _ in priced]
        cap = total * comp.cap_percent / 100.0
        capped = sum(amounts) > cap
        scale = cap / sum(amounts) if capped else 1.0
        for result, (amount, formula) in zip(events, priced, strict=True):
            note = f", scaled by {scale:.4f} to the cap" if capped else ""
            owed.append(
                Owed(
                    RemedyKind.PERCENTAGE,
                    (result.clause,),
                    amount * scale,
                    f"{result.title} breached ({result.detail}): {formula}{note}",
                )
            )
        money += sum(amounts) * scale
    undecided = sum(r.verdict is Verdict.NOT_ENOUGH_DATA for r in results)
    if not owed:
        summary = "nothing owed: no clause was breached"
        if undecided:
            summary += (
                f" ({undecided} clause{'s' if undecided > 1 else ''} without enough data to decide: "
                "nothing is owed on a clause the data does not decide)"
            )
    else:
        parts = []
        if doubled:
            parts.append(f"double service time ({month_days} days' extension)")
        if waived:
            parts.append("monthly fee waived")
        if money:
            parts.append(
                f"{money:,.2f} {comp.currency}".strip()
                + " in money in total"
                + (f" (capped at {comp.cap_percent:g} % of the contract)" if capped else "")
            )
        summary = "owed: " + "; ".join(parts)
    return RemedyOutcome(tuple(owed), money, comp.currency, capped, summary)
