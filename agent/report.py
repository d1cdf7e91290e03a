"""The monthly SLA report: figures per route and for the account, verdicts, remedies, renderers.

Everything is recomputed from the ledger (runs, base-check transitions, probes) for a calendar month
in the contract time zone, so the report does not depend on a running agent's counters. A month
still in progress is evaluated up to ``now`` and marked partial.

Scopes: the account (route ``all``: downtime is ``any``, the union over routes) and each route
(downtime is ``connectivity``). Remedies are owed on the first scope of the report: the account,
or the single route asked for.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from mailprobe.agent.accounting import ALL_ROUTES, Check, breakdown, spans_from_transitions
from mailprobe.agent.durations import format_duration
from mailprobe.agent.ledger import Ledger, StoredProbe
from mailprobe.agent.sla import (
    ClauseResult,
    DelayStats,
    Figures,
    RemedyOutcome,
    SlaConfig,
    Verdict,
    evaluate,
    remedies,
)
from mailprobe.agent.windows import (
    OneOffWindow,
    RecurringWindow,
    Span,
    clip,
    days_between,
    intersect,
    month_bounds,
    shift_month,
    subtract,
    total,
    window_occurrences,
    window_spans,
    zone,
)

NOT_MEASURED = (
    "Anti-spam (probe mail landing in Junk): not measured by this agent",
    "Anti-virus: not measured by this agent",
    "Webmail page load time: not measured by this agent",
)


@dataclass(frozen=True, slots=True)
class Outage:
    """One down period of a route's base check, cut to the month."""

    route: str
    check: str
    start: float
    end: float
    down_seconds: float
    maintenance_seconds: float


@dataclass(frozen=True, slots=True)
class DayFigure:
    """Seconds of one local calendar day for a scope."""

    day: date
    observed_seconds: float
    down_seconds: float
    maintenance_seconds: float
    unobserved_seconds: float


@dataclass(frozen=True, slots=True)
class ScopeReport:
    """Figures and verdicts of the account or one route."""

    route: str
    figures: Figures
    send_down_seconds: float | None
    receive_down_seconds: float | None
    probes_sent: int
    probes_delivered: int
    probes_lost: int
    probes_failed: int
    daily: tuple[DayFigure, ...]
    clauses: tuple[ClauseResult, ...]
    delays: tuple[float, ...]

    @property
    def unobserved_seconds(self) -> float:
        """Evaluated time the agent was not running."""
        return self.figures.period_seconds - self.figures.observed_seconds


@dataclass(frozen=True, slots=True)
class Report:
    """A month's report."""

    month: str
    timezone: str
    start: float
    end: float
    evaluated_until: float
    generated_at: float
    partial: bool
    scopes: tuple[ScopeReport, ...]
    remedy: RemedyOutcome
    outages: tuple[Outage, ...]
    windows: tuple[tuple[str, float, float], ...]
    unobserved: tuple[Span, ...]
    delay_average: float
    delay_maximum: float
    rules: tuple[str, ...]
    not_measured: tuple[str, ...] = NOT_MEASURED

    @property
    def verdict(self) -> Verdict:
        """Worst clause verdict of the first scope."""
        found = {c.verdict for c in self.scopes[0].clauses} if self.scopes else set()
        for verdict in (Verdict.BREACHED, Verdict.INSUFFICIENT_DATA):
            if verdict in found:
                return verdict
        return Verdict.KEPT


def accounting_rules(sla: SlaConfig) -> tuple[str, ...]:
    """The accounting rules in words, with the configured numbers."""
    f = format_duration
    return (
        f"Calendar months and days are taken in the contract time zone {sla.timezone}.",
        "Each probe is a sample taken at its send time. Send works when the server accepted the "
        "probe; it fails when submission failed (connect, TLS, login or the message refused).",
        f"Receive works when an accepted probe is in the mailbox within {f(sla.receive_deadline)} "
        "of its send time; it fails when the probe comes later, is lost, the mailbox cannot be "
        "opened, or the deadline passes without it. A route that accepts mail but does not deliver "
        "it is therefore down from the send time of the first such probe until the send time of "
        "the next probe that arrives in time.",
        f"One failed sample is a suspicion. A second consecutive failure confirms it; a success "
        f"sent within {f(sla.confirm_within)} clears it as a glitch that costs nothing. If no "
        f"sample comes within {f(sla.confirm_within)} the failure stands. A confirmed down period "
        "starts at the send time of the FIRST failed sample and ends at the send time of the first "
        "successful one, to the sub-second; it is never rounded to the probe interval.",
        "A route's connectivity is down while it cannot send or cannot receive (the union of "
        "both). The account is down while any route is down; overlapping outages count once.",
        "Seconds inside an agreed maintenance window are maintenance, not downtime. Time the "
        "agent was not running is unobserved: neither up nor down. Coverage is observed time "
        "divided by the evaluated time.",
        "Disconnection and failure minutes are the down minutes outside maintenance "
        + (
            f"(disconnection limit {sla.connectivity_percent:g} % of the month's length); "
            if sla.ratio_mode
            else f"(limits {sla.disconnection_minutes:g} and {sla.failure_minutes:g} min, as stated "
            "in the contract, not a ratio of the month's length); "
        )
        + f"maintenance minutes are down minutes inside windows (limit "
        f"{sla.maintenance_minutes:g}). Availability is 1 - down / (observed - maintenance) "
        f"(target {sla.availability_percent:g} %).",
        f"A trouble-free day is a local calendar day with no down second outside maintenance; the "
        f"rolling year is the 12 months ending with the report month (target "
        f"{sla.trouble_free_days} days).",
        f"Delivery delay is arrival minus send time of probes sent in the month (average at most "
        f"{f(sla.delay_average)}). A probe is over the maximum when it arrived more than "
        f"{f(sla.delay_maximum)} after sending or had not arrived by then; it counts once, in the "
        f"month it passed the maximum (more than {sla.over_maximum_allowed} is a breach).",
        f"A clause is breached when the observed figures alone exceed its limit; otherwise, with "
        f"coverage below {sla.coverage_floor_percent:g} %, there is not enough data; otherwise it "
        "is kept.",
    )


def _delay_stats(values: Sequence[float], over: int) -> DelayStats:
    if not values:
        return DelayStats(over_max=over)
    return DelayStats(len(values), sum(values) / len(values), max(values), over)


def _delays(
    probes: Sequence[StoredProbe], over_max: Sequence[StoredProbe], sla: SlaConfig
) -> tuple[DelayStats, DelayStats, DelayStats]:
    maximum = sla.delay_maximum
    delivery = [p.delay_seconds for p in probes if p.delay_seconds is not None]
    send = [p.send_delay_seconds for p in probes if p.send_delay_seconds is not None]
    receive = [p.receive_delay_seconds for p in probes if p.receive_delay_seconds is not None]
    return (
        _delay_stats(delivery, len(over_max)),
        _delay_stats(send, sum(v > maximum for v in send)),
        _delay_stats(receive, sum(v > maximum for v in receive)),
    )


def _failure_days(
    parts: Mapping[tuple[str, Check], tuple[list[Span], list[Span]]],
    key: tuple[str, Check],
    days: Sequence[tuple[date, Span]],
) -> int:
    down = parts[key][0]
    return sum(1 for _, (lo, hi) in days if total(clip(down, lo, hi)) > 0)


def build_report(
    ledger: Ledger,
    sla: SlaConfig,
    month: str,
    *,
    windows: Sequence[OneOffWindow | RecurringWindow] = (),
    routes: Sequence[str] = (),
    route: str | None = None,
    now: float | None = None,
) -> Report:
    """Compute the report of calendar ``month`` (``YYYY-MM``) from the ledger."""
    now = time.time() if now is None else now
    tz = zone(sla.timezone)
    start, end = month_bounds(month, tz)
    until = max(start, min(end, now))
    known = list(dict.fromkeys([*routes, *ledger.routes()]))
    if route is not None and route not in known:
        raise ValueError(f"route {route!r} is neither configured nor in the ledger")
    runs = ledger.runs()
    transitions = ledger.transitions(until)
    base = spans_from_transitions(transitions, until)

    def parts_for(lo: float, hi: float) -> dict[tuple[str, Check], tuple[list[Span], list[Span]]]:
        return breakdown(
            clip(runs, lo, hi), base, known, lambda r: window_spans(windows, lo, hi, r)
        )

    month_parts = parts_for(start, until)
    year_start = month_bounds(shift_month(month, -11), tz)[0]
    year_parts = parts_for(year_start, until)
    year_days = days_between(year_start, end, tz)
    year_observed = 100.0 * total(clip(runs, year_start, until)) / max(until - year_start, 1e-9)
    month_days = days_between(start, until, tz) if until > start else []
    observed = clip(runs, start, until)
    probes = ledger.probes(start, until)
    over_candidates = ledger.probes(start - sla.delay_maximum, until - sla.delay_maximum)
    over_max = [p for p in over_candidates if p.over_max(sla.delay_maximum, now)]

    scopes: list[ScopeReport] = []
    names = [route] if route is not None else [ALL_ROUTES, *known]
    for name in names:
        key = (ALL_ROUTES, Check.ANY) if name == ALL_ROUTES else (name, Check.CONNECTIVITY)
        down, maint = month_parts[key]
        mine = [p for p in probes if name in (ALL_ROUTES, p.route)]
        mine_over = [p for p in over_max if name in (ALL_ROUTES, p.route)]
        delivery, send, receive = _delays(mine, mine_over, sla)
        figures = Figures(
            period_seconds=until - start,
            month_seconds=end - start,
            observed_seconds=total(observed),
            down_seconds=total(down),
            maintenance_seconds=total(maint),
            year_days=len(year_days),
            year_failure_days=_failure_days(year_parts, key, year_days),
            year_observed_percent=year_observed,
            delivery=delivery,
            send=send,
            receive=receive,
        )
        daily = tuple(
            DayFigure(
                day,
                total(clip(observed, lo, hi)),
                total(clip(down, lo, hi)),
                total(clip(maint, lo, hi)),
                hi - lo - total(clip(observed, lo, hi)),
            )
            for day, (lo, hi) in month_days
        )
        per_check = name != ALL_ROUTES
        scopes.append(
            ScopeReport(
                route=name,
                figures=figures,
                send_down_seconds=total(month_parts[(name, Check.SEND)][0]) if per_check else None,
                receive_down_seconds=(
                    total(month_parts[(name, Check.RECEIVE)][0]) if per_check else None
                ),
                probes_sent=len(mine),
                probes_delivered=sum(p.arrived_at is not None for p in mine),
                probes_lost=sum(p.status == "lost" for p in mine),
                probes_failed=sum(p.status == "failed" for p in mine),
                daily=daily,
                clauses=evaluate(figures, sla, route_scope=per_check),
                delays=tuple(p.delay_seconds for p in mine if p.delay_seconds is not None),
            )
        )

    outages: list[Outage] = []
    for (r, check), spans in sorted(base.items()):
        if route is not None and r != route:
            continue
        win = window_spans(windows, start, until, r)
        for span in clip(spans, start, until):
            seen = clip(observed, *span)
            outages.append(
                Outage(
                    r,
                    str(check),
                    span[0],
                    span[1],
                    total(clip(subtract(seen, win), *span)),
                    total(clip(intersect(seen, win), *span)),
                )
            )
    outages.sort(key=lambda o: (o.start, o.route, o.check))
    return Report(
        month=month,
        timezone=sla.timezone,
        start=start,
        end=end,
        evaluated_until=until,
        generated_at=now,
        partial=until < end,
        scopes=tuple(scopes),
        remedy=remedies(scopes[0].clauses, sla, month, len(days_between(start, end, tz))),
        outages=tuple(outages),
        windows=tuple((n, s, e) for n, (s, e) in window_occurrences(windows, start, end)),
        unobserved=tuple(subtract([(start, until)], observed)),
        delay_average=sla.delay_average,
        delay_maximum=sla.delay_maximum,
        rules=accounting_rules(sla),
    )


# ---------------------------------------------------------------- renderers


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def render_json(report: Report) -> str:
    """The report as JSON (every figure, seconds as numbers)."""
    data = _jsonable(dataclasses.asdict(report))
    data["verdict"] = report.verdict.value
    for scope, raw in zip(report.scopes, data["scopes"], strict=True):
        raw["coverage_percent"] = scope.figures.coverage_percent
        raw["availability_percent"] = scope.figures.availability_percent
        raw["unobserved_seconds"] = scope.unobserved_seconds
    return json.dumps(data, indent=2, sort_keys=False)


def _when(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _measured(clause: ClauseResult) -> str:
    if clause.measured is None:
        return "-"
    if clause.unit == "s":
        return format_duration(clause.measured)
    if clause.unit == "%":
        return f"{clause.measured:.4f} %"
    if clause.unit == "min":
        return f"{clause.measured:.2f} min"
    return f"{clause.measured:g} {clause.unit}"


def _limit(clause: ClauseResult) -> str:
    if clause.unit == "s":
        return f"<= {format_duration(clause.limit)}"
    if clause.unit == "%":
        return f">= {clause.limit:g} %"
    if clause.unit == "days":
        return f">= {clause.limit:g} days"
    return f"<= {clause.limit:g} {clause.unit}"


def _scope_lines(scope: ScopeReport) -> list[tuple[str, str]]:
    f = scope.figures
    avail = "-" if f.availability_percent is None else f"{f.availability_percent:.4f} %"
    rows = [
        (
            "coverage",
            f"{f.coverage_percent:.2f} % (unobserved {scope.unobserved_seconds / 60:.1f} min)",
        ),
        ("down (outside maintenance)", f"{f.down_seconds / 60:.2f} min"),
        ("maintenance", f"{f.maintenance_seconds / 60:.2f} min"),
        ("availability", avail),
    ]
    if scope.send_down_seconds is not None and scope.receive_down_seconds is not None:
        rows.append(
            (
                "send / receive down",
                f"{scope.send_down_seconds / 60:.2f} / {scope.receive_down_seconds / 60:.2f} min",
            )
        )
    d = f.delivery
    if d.average is not None and d.maximum is not None:
        rows.append(
            (
                "delivery delay",
                f"avg {format_duration(d.average)}, max "
                f"{format_duration(d.maximum)} over {d.count} probes",
            )
        )
    rows.append(
        (
            "probes",
            f"{scope.probes_sent} sent, {scope.probes_delivered} delivered, "
            f"{scope.probes_lost} lost, {scope.probes_failed} failed, "
            f"{d.over_max} over the maximum",
        )
    )
    rows.append(("trouble-free days", f"{f.year_days - f.year_failure_days} of {f.year_days}"))
    return rows


def _title(scope: ScopeReport) -> str:
    return "Account (all routes)" if scope.route == ALL_ROUTES else f"Route {scope.route}"


def _header(report: Report) -> str:
    span = f"{_when(report.start, report.timezone)} to {_when(report.end, report.timezone)}"
    partial = f" (partial: up to {_when(report.evaluated_until, report.timezone)})"
    return f"SLA report {report.month}, {span}" + (partial if report.partial else "")


def render_text(report: Report) -> str:
    """The report as plain text."""
    out = [_header(report), f"Overall: {report.verdict.value}", ""]
    for scope in report.scopes:
        out.append(_title(scope))
        out += [f"  {k:<28} {v}" for k, v in _scope_lines(scope)]
        out.append(f"  {'clause':<44} {'measured':>16} {'limit':>14}  verdict")
        for c in scope.clauses:
            out.append(f"  {c.title:<44} {_measured(c):>16} {_limit(c):>14}  {c.verdict.value}")
        out.append("")
    out.append("Owed: " + report.remedy.summary)
    out += [f"  - {o.reason}" for o in report.remedy.owed]
    if report.outages:
        out += ["", "Outages:"]
        out += [
            f"  {o.route:<12} {o.check:<8} {_when(o.start, report.timezone)} -> "
            f"{_when(o.end, report.timezone)}  down {o.down_seconds / 60:.2f} min, "
            f"maintenance {o.maintenance_seconds / 60:.2f} min"
            for o in report.outages
        ]
    out += ["", "Accounting rules:"] + [f"  - {rule}" for rule in report.rules]
    out += ["", "Not measured:"] + [f"  - {item}" for item in report.not_measured]
    return "\n".join(out) + "\n"


def render_markdown(report: Report) -> str:
    """The report as Markdown."""
    out = [f"# {_header(report)}", "", f"**Overall: {report.verdict.value}**", ""]
    for scope in report.scopes:
        out += [f"## {_title(scope)}", "", "| figure | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in _scope_lines(scope)]
        out += ["", "| clause | measured | limit | verdict | detail |", "|---|---|---|---|---|"]
        out += [
            f"| {c.title} | {_measured(c)} | {_limit(c)} | **{c.verdict.value}** | {c.detail} |"
            for c in scope.clauses
        ]
        out.append("")
    out += ["## Owed", "", report.remedy.summary, ""]
    out += [f"- {o.reason}" for o in report.remedy.owed]
    if report.outages:
        out += ["", "## Outages", "", "| route | check | start | end | down | maintenance |"]
        out.append("|---|---|---|---|---|---|")
        out += [
            f"| {o.route} | {o.check} | {_when(o.start, report.timezone)} | "
            f"{_when(o.end, report.timezone)} | {o.down_seconds / 60:.2f} min | "
            f"{o.maintenance_seconds / 60:.2f} min |"
            for o in report.outages
        ]
    out += ["", "## Accounting rules", ""] + [f"- {rule}" for rule in report.rules]
    out += ["", "## Not measured", ""] + [f"- {item}" for item in report.not_measured]
    return "\n".join(out) + "\n"


FORMATS = ("text", "json", "markdown")


def render(report: Report, fmt: str) -> str:
    """Render in one of FORMATS (HTML is ``mailprobe.agent.report_html.render_html``)."""
    if fmt == "text":
        return render_text(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
