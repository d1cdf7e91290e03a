"""Samples of the polite-watching benchmark, their statistics, and the Markdown/CSV write-up."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import shlex
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.precision_report import _machine, percentile

FLOOR = 0.025  # seconds: the p99 target is max(FLOOR, SHARE * delay)
SHARE = 0.02
BIAS = 0.010  # |mean signed error| at most
AT_60_S, AT_1_S = 150, 30  # commands per probe at most, at those delays


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe: what mailprobe reported, what the Maildir says, what it cost."""

    budget: str
    injected: float
    key: str
    sent_at: float
    reported_delay: float | None = None
    truth_at: float | None = None  # inotify: the file appeared in new/
    truth_ctime: float | None = None
    bound: float | None = None  # the error bound mailprobe stated with the arrival
    imap_commands: int | None = None
    status: str = "ok"

    @property
    def true_delay(self) -> float | None:
        return None if self.truth_at is None else self.truth_at - self.sent_at

    @property
    def signed_error(self) -> float | None:
        """Reported minus true delay (positive: stamped late)."""
        if self.status != "ok" or self.reported_delay is None or self.true_delay is None:
            return None
        return self.reported_delay - self.true_delay

    @property
    def error(self) -> float | None:
        signed = self.signed_error
        return None if signed is None else abs(signed)

    def describe(self) -> str:
        """One progress line."""
        if self.error is None:
            return self.status
        bound = "-" if self.bound is None else f"{self.bound * 1000:.1f}"
        return (f"error {self.signed_error * 1000:+7.1f} ms (bound {bound} ms), "  # type: ignore[operator]
                f"{self.imap_commands} commands")  # fmt: skip


@dataclass
class LaneResult:
    """One budget's run."""

    name: str
    budget: tuple[int, int] | None  # per probe, per minute; None: before budgets
    samples: list[Sample]
    mix: Counter[str] = field(default_factory=Counter)
    per_minute_peak: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "budget": self.budget, "mix": dict(self.mix),
            "per_minute_peak": self.per_minute_peak, "seconds": self.seconds,
            "samples": [dataclasses.asdict(s) for s in self.samples],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaneResult:
        budget = tuple(data["budget"]) if data["budget"] is not None else None
        return cls(data["name"], budget, [Sample(**s) for s in data["samples"]],  # type: ignore[arg-type]
                   Counter(data["mix"]), data["per_minute_peak"], data["seconds"])  # fmt: skip

    def at(self, delay: float) -> list[Sample]:
        return [s for s in self.samples if s.injected == delay]


@dataclass(frozen=True, slots=True)
class Figures:
    """Error and cost figures of one budget at one delay."""

    n: int
    failed: int
    true_delay: float
    p50: float
    p99: float
    max: float
    bias: float
    bias_se: float  # standard error of the mean signed error
    bound_p50: float
    bound_max: float
    inside: int  # samples whose true arrival lies within the stated bound
    commands_mean: float
    commands_max: float

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> Figures:
        picked = list(samples)
        ok = [s for s in picked if s.error is not None]
        errors = [s.error for s in ok if s.error is not None]
        signed = [s.signed_error for s in ok if s.signed_error is not None]
        bounds = [s.bound for s in ok if s.bound is not None]
        # A 1 ms allowance: inotify's stamp, the truth, is taken by a thread of the same process.
        inside = sum(1 for s in ok if s.bound is not None and (s.error or 0) <= s.bound + 0.001)
        commands = [float(s.imap_commands) for s in picked if s.imap_commands is not None]
        se = statistics.stdev(signed) / math.sqrt(len(signed)) if len(signed) > 1 else math.nan
        return cls(
            len(ok), len(picked) - len(ok), _mean(s.true_delay for s in ok),
            percentile(errors, 50), percentile(errors, 99), max(errors, default=math.nan),
            _mean(signed), se, percentile(bounds, 50), max(bounds, default=math.nan), inside,
            _mean(commands), max(commands, default=math.nan),
        )  # fmt: skip


def target(delay: float) -> float:
    """The p99 target at a delay."""
    return max(FLOOR, SHARE * delay)


def _mean(values: Iterable[float | None]) -> float:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else math.nan


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


def _num(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _delays(lanes: Sequence[LaneResult]) -> list[float]:
    return sorted({s.injected for lane in lanes for s in lane.samples})


def verdicts(lane: LaneResult) -> list[str]:
    """Each target for one budget: met or missed, with the figure that decides."""
    out = []
    figs = {d: Figures.of(lane.at(d)) for d in _delays([lane])}
    missed = [f"{d:g} s: {_ms(f.p99)} ms > {_ms(target(d))}, {f.p99 / target(d):.1f} times the target"
              for d, f in figs.items() if not f.p99 <= target(d)]  # fmt: skip
    out.append("p99 ≤ max(25 ms, 2 % of the delay): " + ("met" if not missed else
               "**missed** (" + "; ".join(missed) + ")"))  # fmt: skip
    # A mean of n errors spread over +-b has a standard error of about b / sqrt(3 n): where
    # that is larger than 10 ms, the samples cannot tell a 10 ms bias from none.
    biased = [f"{d:g} s: {_ms(f.bias)} ms" for d, f in figs.items()
              if not abs(f.bias) <= max(BIAS, 2 * f.bias_se)]  # fmt: skip
    unresolved = [f"{d:g} s: {_ms(f.bias)} ± {_ms(f.bias_se)} ms" for d, f in figs.items()
                  if BIAS < abs(f.bias) <= 2 * f.bias_se]  # fmt: skip
    verdict = "met" if not biased and not unresolved else "**missed**" if biased else (
        "met where resolvable; within two standard errors of 0 at "
        + "; ".join(unresolved) + " (too few samples to resolve 10 ms there)")  # fmt: skip
    out.append("mean signed error within ±10 ms: " + verdict
               + (" (" + "; ".join(biased) + "; each beyond ±max(10 ms, 2 standard errors))"
                  if biased else ""))  # fmt: skip
    inside = sum(f.inside for f in figs.values())
    total = sum(f.n for f in figs.values())
    if lane.budget is not None:
        out.append(f"true arrival within the stated bound: {inside} of {total} probes")
        shares = [s.signed_error / s.bound for s in lane.samples
                  if s.signed_error is not None and s.bound]  # fmt: skip
        if len(shares) > 1:
            se = statistics.stdev(shares) / math.sqrt(len(shares))
            out.append(f"signed error as a share of the stated bound, all delays pooled: mean "
                       f"{statistics.mean(shares):+.3f} ± {se:.3f} (an unbiased stamp: 0)")  # fmt: skip
    for delay, limit in ((60.0, AT_60_S), (1.0, AT_1_S)):
        if delay in figs:
            worst = figs[delay].commands_max
            verdict = "met" if worst <= limit else "**missed**"
            out.append(f"at most {limit} commands per probe at {delay:g} s: {verdict} "
                       f"(at most {_num(worst, 0)})")  # fmt: skip
    if lane.budget is not None:
        per_probe, per_minute = lane.budget
        most = max((s.imap_commands or 0 for s in lane.samples), default=0)
        out.append(f"within the budget: per probe at most {most} of {per_probe}, per minute at "
                   f"most {lane.per_minute_peak} of {per_minute}: "
                   + ("met" if most <= per_probe and lane.per_minute_peak <= per_minute
                      else "**missed**"))  # fmt: skip
    failed = sum(1 for s in lane.samples if s.error is None)
    if failed:
        out.append(f"{failed} probe(s) without an error figure (listed at the end)")
    return out


def _lane_table(lane: LaneResult) -> list[str]:
    lines = [
        "| delay | n | true delay | error p50 | p99 | max | target p99 | mean signed ± s.e. | "
        "stated bound p50 | bound max | truth inside bound | commands mean | max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for delay in _delays([lane]):
        f = Figures.of(lane.at(delay))
        inside = "-" if lane.budget is None else f"{f.inside}/{f.n}"
        lines.append(
            f"| {delay:g} s | {f.n} | {_num(f.true_delay, 3)} s | {_ms(f.p50)} | {_ms(f.p99)} | "
            f"{_ms(f.max)} | {_ms(target(delay))} | {_ms(f.bias)} ± {_ms(f.bias_se)} | "
            f"{_ms(f.bound_p50)} | "
            f"{_ms(f.bound_max)} | {inside} | {_num(f.commands_mean)} | {_num(f.commands_max, 0)} |"
        )
    return lines


def _curve(lanes: Sequence[LaneResult]) -> list[str]:
    delays = _delays(lanes)
    head = "| budget (per probe / per minute) |" + "".join(f" {d:g} s |" for d in delays)
    lines = [head, "|---|" + "---:|" * len(delays)]
    for lane in lanes:
        name = (
            "today (no budget)"
            if lane.budget is None
            else f"{lane.name} ({lane.budget[0]} / {lane.budget[1]})"
        )
        cells = []
        for d in delays:
            f = Figures.of(lane.at(d))
            share = f" ({100 * f.p99 / d:.1f} %)" if d > 0 and not math.isnan(f.p99) else ""
            cells.append(f" {_ms(f.p99)}{share} |")
        lines.append(f"| {name} |" + "".join(cells))
    return lines


def _mix(lane: LaneResult) -> str:
    n = len(lane.samples)
    parts = ", ".join(f"{name} {count / n:.1f}" for name, count in lane.mix.most_common())
    return parts or "-"


def render(
    lanes: Sequence[LaneResult], today: Sequence[LaneResult], args: argparse.Namespace,
    run: Sequence[str],
) -> str:  # fmt: skip
    """The Markdown write-up."""
    lines = [
        "# Polite watching: IMAP commands and arrival error per budget",
        "",
        "Each probe is held by Postfix and released a known time after it was sent; the truth is "
        "the moment its file appears in the recipient's Maildir `new/`. Error = reported delay - "
        "true delay (ms); mailprobe stamps the arrival at the middle of the bracket between the "
        "last look that did not see the probe and the one that did and states half its width as "
        "the bound. Targets: p99 of the absolute error ≤ max(25 ms, 2 % of the delay), mean signed "
        "error within ±10 ms, at most 150 IMAP commands per probe at 60 s and 30 at 1 s.",
        "",
        # The machine is shared: timing figures are read against its load.
        *(f"- {line}" for line in run if "load average" in line),
        "",
    ]
    for lane in [*today, *lanes]:
        if lane.budget is None:
            title = "today's fast poll (before budgets: NOOP every 20 ms, 0.5 % of the age)"
        else:
            title = f"{lane.name}: {lane.budget[0]} per probe, {lane.budget[1]} per minute"
        lines += [f"## {title}", "", *_lane_table(lane), ""]
        lines += [f"- {v}" for v in verdicts(lane)]
        lines += [f"- IMAP command mix per probe: {_mix(lane)}", ""]
    lines += ["## Error against budget (p99 of the absolute error, ms, and as a share of the "
              "delay)", "", *_curve([*today, *lanes]), ""]  # fmt: skip
    lines += _method(args)
    lines += [
        "",
        "## Run",
        "",
        "```",
        "bash tests/mailstack/install.sh   # as root, once",
        "python -m bench.polite_watch " + " ".join(map(shlex.quote, args.given)),
        "```",
        "",
        f"- Written: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {_machine()}",
        *(f"- {line}" for line in run),
        *(f"- {lane.name}: {lane.seconds:.0f} s" for lane in [*today, *lanes]),
    ]
    failures = [s for lane in [*today, *lanes] for s in lane.samples if s.status != "ok"]
    if failures:
        lines += ["", "## Samples without an error figure", ""]
        lines += [f"- {s.budget}, {s.injected:g} s: {s.status}" for s in failures]
    return "\n".join(lines) + "\n"


def _method(args: argparse.Namespace) -> list[str]:
    return [
        "## How it was measured",
        "",
        "- Mail stack: tests/mailstack (Postfix + Dovecot 2.3 on 127.0.0.1). Postfix holds every "
        "message with `X-Mailprobe-Hold: yes`; the bench finds it in the hold queue and releases "
        "it (`postsuper -H`, `postqueue -i`) at its send time + the injected delay.",
        "- Ground truth: `inotifywait --monitor` on the lane's `new/`, each line stamped with "
        "`time.time()` by a reader thread (bench/maildir_watch.py).",
        "- mailprobe: one lane per budget, each its own mailbox and process, all at once: the "
        "in-process Agent (probe-once mode: a watcher on the lane's mailbox, submissions from "
        "bob, STARTTLS both ways), one probe at a time, the budget in the mailbox's `imap:` "
        f"section. Probes start at least {args.spacing:g} s apart (a route's default interval). "
        "Before each budget's run 2 probes at 1 s (not counted) let the session decide what its "
        "IDLE notices are worth (Dovecot holds them 0.5 s: the looks time arrivals).",
        "- Commands: counted by Dovecot (`log_debug = event=imap_command_finished`), all of "
        "the lane's session from one probe's start to the next (IDLE included). Per minute: the "
        "most in any 60 whole seconds of the log over the budget's run.",
        f"- Schedule: {args.count} probes per delay, delays shuffled (seed {args.seed}). p99 of "
        f"{args.count} samples lies between the two largest: read it as close to the worst case.",
        "- Today's figures: the same lanes with mailprobe before budgets (`--baseline`, its own "
        "venv), kept in `bench/results/polite_watch_today.json`.",
    ]


def write_report(
    lanes: Sequence[LaneResult], today: Sequence[LaneResult], args: argparse.Namespace,
    path: Path, run: Sequence[str],
) -> None:  # fmt: skip
    """Write the Markdown write-up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(lanes, today, args, run))


def write_csv(samples: Sequence[Sample], path: Path) -> None:
    """Every sample, one row each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in dataclasses.fields(Sample)] + ["true_delay", "error"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for s in samples:
            row = [*dataclasses.astuple(s), s.true_delay, s.error]
            writer.writerow("" if v is None else f"{v:.6f}" if isinstance(v, float) else v
                            for v in row)  # fmt: skip
