"""Polite watching on the real mail stack: IMAP commands and arrival error, budget by budget.

Each probe is held by Postfix (header_checks HOLD) and released at a chosen moment after it was
sent; the ground truth is the moment its file appears in the recipient's Maildir new/ (inotify,
see bench/maildir_watch.py). Each budget is one lane: its own mailbox, its own process (no lane
waits for another's GIL), the in-process Agent (probe-once mode, bob -> the lane's mailbox)
watching with that budget. A lane sends one probe at a time and at most one a minute, as a route
with the default interval does, so each probe is watched alone and Dovecot's per-command log
(bench/imap_commands.py) tells what it cost: the commands of the lane's session from one probe's
start to the next. Per minute: the most commands of that session in any 60 whole seconds of the
log (a window may so span up to 61 s: the count can only be too high).

Run as root from the repository root (Postfix and Dovecot on loopback only):

    bash tests/mailstack/install.sh
    python -m bench.polite_watch                              # the presets' budgets and a curve

``--baseline`` drives a mailprobe from before command budgets (the 20 ms fast poll) the same way
and keeps its figures for the write-up: install that version into a venv of its own and run this
script from this tree with that venv's python (``--budgets today --baseline``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import imap_commands
from bench.agent_thread import AgentThread
from bench.maildir_watch import MaildirWatch
from bench.polite_report import LaneResult, Sample, write_csv, write_report
from mailprobe.agent.config import Config
from mailprobe.agent.probe import Status
from tests.helpers.configs import account, make_config
from tests.mailstack import MailStack, missing_prerequisites

DEFAULT_DELAYS = "0,1,2,10,30,60"
# The default (no preset), three presets' (agent/presets.py: 150/60, 100/30, 60/20), a tighter one.
DEFAULT_BUDGETS = "self_hosted,gmail,yahoo,tencent-exmail,30/15"
SENDER = "bob@probe.test"
RESULTS = Path(__file__).parent / "results"
WARM_UP = (1.0, 1.0)  # delays of probes before measuring: the session decides what IDLE is worth
SPACING = 60.0  # seconds from one probe's start to the next's, at least
WARM_UP_GAP = 20.0  # the same between the warm-up probes (their commands are not counted)
HOLD_POLL = 0.005
LOAD_EVERY = 30.0  # seconds between load-average samples
_PROBE_ID = re.compile(rb"X-Mailprobe-Id: ([0-9a-f]{32})")
_PROBE_SENT = re.compile(rb"X-Mailprobe-Sent: (\d+\.\d+)")
_STAMP = re.compile(r"^(\w{3} \d{2} \d{2}:\d{2}:\d{2}) imap\(([^)]+)\)<\d+><[^>]+>: Debug: Command")


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def budget_of(name: str) -> tuple[int, int] | None:
    """(per probe, per minute) of a budget name: ``self_hosted``, a provider preset's, ``N/M``,
    or ``today`` (None)."""
    if name == "today":
        return None
    if "/" in name:
        probe, minute = name.split("/", 1)
        return int(probe), int(minute)
    from mailprobe.agent.budgets import BUDGETS  # absent from a baseline install

    budget = BUDGETS[name]
    return budget.per_probe, budget.per_minute


@dataclasses.dataclass(frozen=True)
class Lane:
    """One budget's mailbox and route."""

    budget: str
    user: str
    route: str

    @property
    def pattern(self) -> re.Pattern[bytes]:
        """The lane's own probes in Postfix's queue files (record bytes between the headers)."""
        return re.compile(
            rb"X-Mailprobe-Id: ([0-9a-f]{32}).{1,8}?X-Mailprobe-Route: "
            + re.escape(self.route.encode()) + rb"(?![0-9])", re.DOTALL,
        )  # fmt: skip


def agent_config(stack: MailStack, lane: Lane) -> Config:
    """bob -> the lane's mailbox, STARTTLS both ways, the lane's budget on its IMAP."""

    def endpoint(address: str) -> dict[str, Any]:
        return account(
            address, stack.users[address], host=stack.host, ca_file=stack.ca_file,
            smtp_port=stack.submission_port, imap_port=stack.imap_port,
            smtp_security="starttls", imap_security="starttls",
        )  # fmt: skip

    box = endpoint(lane.user)
    if (budget := budget_of(lane.budget)) is not None:
        box["imap"]["max_commands_per_probe"], box["imap"]["max_commands_per_minute"] = budget
    return make_config(
        {"box": box, "bob": endpoint(SENDER)},
        [{"name": lane.route, "from": "bob", "to": "box", "interval": "1d"}],
    )


async def held(stack: MailStack, pattern: re.Pattern[bytes], trip: asyncio.Future[Any],
               claimed: set[str]) -> tuple[str, bytes, re.Match[bytes]] | None:  # fmt: skip
    """The lane's message once Postfix holds it; None if the round trip ended first."""
    directory = stack.layout.spool / "hold"
    while not trip.done():
        for qid in stack.held_queue_ids():
            if qid in claimed:
                continue
            try:
                data = (directory / qid).read_bytes()
            except FileNotFoundError:
                continue
            if match := pattern.search(data):
                claimed.add(qid)
                return qid, data, match
        await asyncio.sleep(HOLD_POLL)
    return None


async def one_probe(stack: MailStack, lane: Lane, agent: AgentThread, watch: MaildirWatch,
                    delay: float, claimed: set[str]) -> Sample:  # fmt: skip
    """One round trip, held and released ``delay`` seconds after it was sent."""
    trip = agent.round_trip(delay + 60)
    found = await held(stack, lane.pattern, trip, claimed)
    if found is None:
        result = await trip
        return Sample(lane.budget, delay, result.probe_id, result.sent_at,
                      status=f"not held: {result.status} {result.reason}")  # fmt: skip
    qid, data, match = found
    probe_id = match.group(1).decode()
    sent = _PROBE_SENT.search(data)
    assert sent is not None, "a held probe without its X-Mailprobe-Sent header"
    await asyncio.sleep(max(0.0, float(sent.group(1)) + delay - time.time()))
    await asyncio.to_thread(stack.release, qid)
    result = await trip
    seen = await watch.wait_for(probe_id, 10)
    status = "ok"
    if result.probe_id != probe_id:
        status = "held message is not the probe just sent"
    elif result.status is not Status.OK:
        status = f"mailprobe status {result.status}"
    elif seen is None:
        status = "no inotify sighting"
    bound = getattr(result, "arrival_error_seconds", None)
    return Sample(
        lane.budget, delay, probe_id, result.sent_at, result.delay_seconds,
        seen.seen_at if seen else None, seen.ctime if seen else None, bound, status=status,
    )  # fmt: skip


def per_minute_peak(path: Path, user: str, start: int, end: int) -> int:
    """The most commands of ``user`` logged in any 60 whole seconds between the offsets."""
    with path.open("rb") as handle:
        handle.seek(start)
        lines = handle.read(max(0, end - start)).decode(errors="replace").splitlines()
    seconds: Counter[int] = Counter()
    for line in lines:
        if (m := _STAMP.match(line)) and m.group(2) == user:
            when = datetime.strptime(f"2000 {m.group(1)}", "%Y %b %d %H:%M:%S")
            seconds[int(when.timestamp())] += 1
    if not seconds:
        return 0
    first, last = min(seconds), max(seconds)
    window = sum(seconds[t] for t in range(first, first + 60))
    peak = window
    for t in range(first + 1, last + 1):
        window += seconds[t + 59] - seconds[t - 1]
        peak = max(peak, window)
    return peak


async def run_lane(
    stack: MailStack, lane: Lane, schedule: list[float], spacing: float, timeout: float
) -> LaneResult:
    """Every probe of one budget, one at a time, with its commands from the server's log."""
    command_log = imap_commands.CommandLog(stack.layout.dovecot_log)
    watch = MaildirWatch({lane.user: stack.maildir(lane.user)}, [_PROBE_ID])
    agent = AgentThread(agent_config(stack, lane), "box", {stack.hold_header: "yes"})
    samples: list[Sample] = []
    mix: Counter[str] = Counter()
    claimed: set[str] = set()
    try:
        await watch.start()
        await agent.start(15)
        for i, delay in enumerate(WARM_UP):
            started = time.monotonic()
            await one_probe(stack, lane, agent, watch, delay, claimed)
            # The last one a full spacing before the first measured: its minute is its own.
            gap = spacing if i == len(WARM_UP) - 1 else min(spacing, WARM_UP_GAP)
            await asyncio.sleep(max(0.5, gap - (time.monotonic() - started)))
        began, start = time.monotonic(), command_log.offset()
        async with asyncio.timeout(timeout):
            for delay in schedule:
                started, mark = time.monotonic(), command_log.offset()
                sample = await one_probe(stack, lane, agent, watch, delay, claimed)
                await asyncio.sleep(max(0.5, spacing - (time.monotonic() - started)))
                # Dovecot logs IDLE when it ends: the next probe's wake ends it, after `mark`.
                commands = command_log.commands(lane.user, mark, command_log.offset())
                mix.update(commands)
                samples.append(dataclasses.replace(sample, imap_commands=sum(commands.values())))
                log(f"{lane.budget:>12} {delay:5.1f} s  {samples[-1].describe()}")
        peak = per_minute_peak(stack.layout.dovecot_log, lane.user, start, command_log.offset())
        return LaneResult(lane.budget, budget_of(lane.budget), samples, mix, peak,
                          time.monotonic() - began)  # fmt: skip
    finally:
        await agent.stop()
        watch.stop()


def _lane_process(stack: MailStack, lane: Lane, schedule: list[float],
                  args: argparse.Namespace, out: Any) -> None:  # fmt: skip
    """A lane in a process of its own (forked: it shares the parent's stack, never stops it)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    result = asyncio.run(run_lane(stack, lane, schedule, args.spacing, args.max_seconds))
    out.put(json.dumps(result.to_json()))


def _next_result(queue: Any, processes: list[Any]) -> LaneResult:
    """The next lane's result; a lane that died without one ends the run."""
    while True:
        try:
            return LaneResult.from_json(json.loads(queue.get(timeout=5)))
        except Exception as exc:  # queue.Empty
            if type(exc).__name__ != "Empty":
                raise
        dead = [p for p in processes if not p.is_alive() and p.exitcode not in (0, None)]
        if dead:
            raise RuntimeError(f"a lane ended with exit code {dead[0].exitcode}")


def _sample_load(into: list[float], done: threading.Event) -> None:
    """The 1-minute load average every LOAD_EVERY seconds until ``done``."""
    while not done.wait(LOAD_EVERY):
        into.append(os.getloadavg()[0])


def measure(args: argparse.Namespace) -> tuple[list[LaneResult], list[str]]:
    """Start the stack, run every budget's lane at once, each in its own process."""
    delays = [float(d) for d in args.delays.split(",")]
    rng = random.Random(args.seed)
    names = args.budgets.split(",")
    lanes = [Lane(name, f"lane{i}@probe.test", f"lane{i}") for i, name in enumerate(names)]
    load = os.getloadavg()[0]
    began = time.monotonic()
    context = multiprocessing.get_context("fork")
    stack = MailStack()
    for lane in lanes:
        stack.users[lane.user] = f"pw-{lane.route}"
    with stack:
        imap_commands.enable(stack)
        queue = context.Queue()
        processes = []
        for lane in lanes:
            schedule = [d for d in delays for _ in range(args.count)]
            rng.shuffle(schedule)
            log(f"{lane.budget}: {len(schedule)} probes to {lane.user}, delays {delays}")
            process = context.Process(target=_lane_process,
                                      args=(stack, lane, schedule, args, queue))  # fmt: skip
            process.start()
            processes.append(process)
        loads: list[float] = []
        sampling = threading.Event()
        sampler = threading.Thread(target=_sample_load, args=(loads, sampling), daemon=True)
        sampler.start()
        try:
            found = [_next_result(queue, processes) for _ in processes]
        finally:
            sampling.set()
            for process in processes:
                process.join(5)
                if process.is_alive():
                    process.terminate()
    order = {name: i for i, name in enumerate(names)}
    found.sort(key=lambda r: order[r.name])
    measured = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    run = [
        f"Measured {measured} at mailprobe commit {commit or 'unknown'}",
        f"Measuring took {time.monotonic() - began:.0f} s, lanes in parallel; load average "
        f"(1 min) {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; sampled every "
        f"{LOAD_EVERY:g} s while measuring: mean {statistics.mean(loads or [load]):.2f}, "
        f"max {max(loads or [load]):.2f} ({os.cpu_count()} cores, shared)",
    ]
    return found, run


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budgets",
        default=DEFAULT_BUDGETS,
        help="self_hosted, provider names (agent/budgets.py), PROBE/MINUTE, or today",
    )
    parser.add_argument("--count", type=int, default=8, help="probes per delay and budget")
    parser.add_argument(
        "--spacing",
        type=float,
        default=SPACING,
        help="seconds from one probe's start to the next's, at least",
    )
    parser.add_argument("--delays", default=DEFAULT_DELAYS, help="injected delays, seconds")
    parser.add_argument("--seed", type=int, default=1, help="shuffles the order of delays")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="record a mailprobe from before budgets (JSON for the write-up)",
    )
    parser.add_argument("--max-seconds", type=float, default=7200, help="per budget")
    parser.add_argument(
        "--render",
        action="store_true",
        help="write the report again from the kept figures, measure nothing",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS / "polite_watch.json",
        help="the figures of every sample, kept for --render",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "polite_watch.md")
    parser.add_argument("--csv", type=Path, default=RESULTS / "polite_watch.csv")
    parser.add_argument(
        "--baseline-file",
        type=Path,
        default=RESULTS / "polite_watch_today.json",
        help="today's figures: written with --baseline, read otherwise",
    )
    return parser.parse_args(argv)  # fmt: skip


def _write(args: argparse.Namespace) -> None:
    if args.render:
        data = json.loads(args.json.read_text())
        results = [LaneResult.from_json(d) for d in data["lanes"]]
        run, args.given = data["run"], data["given"]
    else:
        results, run = measure(args)
        target = args.baseline_file if args.baseline else args.json
        target.parent.mkdir(parents=True, exist_ok=True)
        lanes = [r.to_json() for r in results]
        target.write_text(json.dumps({"lanes": lanes, "run": run, "given": args.given}) + "\n")
    if args.baseline:
        return
    today = []
    if args.baseline_file.exists():
        kept = json.loads(args.baseline_file.read_text())
        today = [LaneResult.from_json(d) for d in kept["lanes"]]
        run = [*run, *(f"today's figures: {line}" for line in kept["run"])]
    write_csv([s for r in [*today, *results] for s in r.samples], args.csv)
    write_report(results, today, args, args.output, run)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 when it ran (whatever the figures), 1 if stopped, 2 if it cannot."""
    given = sys.argv[1:] if argv is None else argv
    args = parse_args(given)
    args.given = given
    problem = None if args.render else missing_prerequisites()
    if problem is not None:
        log(f"polite_watch: {problem}")
        return 2
    started = time.monotonic()
    # SIGTERM ends the run like Ctrl-C: the stack and every lane are cleaned up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _write(args)
    except KeyboardInterrupt:
        log("polite_watch: stopped")
        return 1
    log(f"done in {time.monotonic() - started:.0f} s: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
