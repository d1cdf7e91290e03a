"""Arrival-time precision on the real mail stack: mailprobe against check_email_delivery.

Each probe is held by Postfix (header_checks HOLD) and released at a chosen moment after it was
sent. The ground truth is the moment its file appears in the recipient's Maildir new/ (inotify,
see bench/maildir_watch.py). A tool's error is |its reported delay - true delay|, true delay =
file time - the tool's own send time. mailprobe (the in-process Agent, probe-once mode) sends
to alice, one probe at a time; check_email_delivery runs in parallel lanes to carol and dave.

Run as root from the repository root (Postfix, Dovecot and the peer on loopback only):

    bash tests/mailstack/install.sh && bash bench/install.sh
    python -m bench.delay_precision
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import imap_commands, peer_check
from bench.agent_thread import AgentThread
from bench.maildir_watch import MaildirWatch
from bench.precision_report import MAILPROBE, PEER, Sample, write_csv, write_report
from mailprobe.agent.config import Config
from mailprobe.agent.probe import Status
from tests.helpers.configs import account, make_config
from tests.mailstack import MailStack, missing_prerequisites

DEFAULT_DELAYS = "0,0.5,2,5,10"
SENDER = "bob@probe.test"
MP_RECIPIENT = "alice@probe.test"
PEER_RECIPIENTS = ("carol@probe.test", "dave@other.test")
RESULTS = Path(__file__).parent / "results"
_PROBE_ID = re.compile(rb"X-Mailprobe-Id: ([0-9a-f]{32})")
_PROBE_SENT = re.compile(rb"X-Mailprobe-Sent: (\d+\.\d+)")
# How often the hold queue is looked at: the release moment is taken after the file is seen,
# so this bounds only the d=0 release lag, not the precision of any figure.
HOLD_POLL = 0.005
HOLD_TIMEOUT = 30.0  # seconds from start until a tool's message must be on hold


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


class HoldQueue:
    """Messages Postfix put on hold, claimed by the lane whose pattern matches the queue file."""

    def __init__(self, stack: MailStack) -> None:
        self._stack = stack
        self._dir = stack.layout.spool / "hold"
        self._claimed: set[str] = set()

    async def claim(
        self, pattern: re.Pattern[bytes], timeout: float
    ) -> tuple[str, bytes, re.Match[bytes]]:
        """Queue id, queue file and match of the first unclaimed held message matching."""
        deadline = time.monotonic() + timeout
        while True:
            for qid in self._stack.held_queue_ids():
                if qid in self._claimed:
                    continue
                try:
                    data = (self._dir / qid).read_bytes()
                except FileNotFoundError:
                    continue
                if match := pattern.search(data):
                    self._claimed.add(qid)
                    return qid, data, match
            if time.monotonic() > deadline:
                raise TimeoutError(f"no held message matching {pattern.pattern!r}")
            await asyncio.sleep(HOLD_POLL)

    async def release_at(self, qid: str, when: float) -> float:
        """Release a held message at `when` (Unix seconds); return the moment the release began."""
        await asyncio.sleep(max(0.0, when - time.time()))
        released = time.time()
        await asyncio.to_thread(self._stack.release, qid)
        return released


@dataclass(frozen=True, slots=True)
class Lane:
    """One peer lane: its own recipient mailbox and Subject marker."""

    settings: peer_check.PeerSettings
    pattern: re.Pattern[bytes]


@dataclass
class Bench:
    """Everything a probe needs while the run is on."""

    stack: MailStack
    hold: HoldQueue
    watch: MaildirWatch
    agent: AgentThread
    peers: peer_check.PeerRunner
    log: imap_commands.CommandLog


def _progress(sample: Sample) -> None:
    error = f"{sample.error * 1000:7.1f} ms" if sample.error is not None else sample.status
    log(f"{sample.tool:>20} injected {sample.injected:5.1f} s  error {error}")


async def held_or_done(
    hold: HoldQueue, pattern: re.Pattern[bytes], sender: asyncio.Future[Any]
) -> tuple[str, bytes, re.Match[bytes]] | None:
    """The tool's message once Postfix holds it; None if the tool finished first or never sent."""
    claim = asyncio.ensure_future(hold.claim(pattern, HOLD_TIMEOUT))
    # A held message cannot arrive, so a tool that finishes first has failed to send.
    await asyncio.wait({claim, sender}, return_when=asyncio.FIRST_COMPLETED)
    if not claim.done():
        claim.cancel()
        await asyncio.gather(claim, return_exceptions=True)
        return None
    try:
        return claim.result()
    except TimeoutError:
        return None


async def mailprobe_probe(bench: Bench, delay: float) -> Sample:
    """One mailprobe round trip, held and released `delay` seconds after it was sent."""
    trip = bench.agent.round_trip(delay + 30)
    held = await held_or_done(bench.hold, _PROBE_ID, trip)
    if held is None:
        result = await trip
        return Sample(MAILPROBE, delay, result.probe_id, result.sent_at,
                      status=f"not held: {result.status} {result.reason}")  # fmt: skip
    qid, data, match = held
    probe_id = match.group(1).decode()
    sent = _PROBE_SENT.search(data)
    assert sent is not None, "a held probe without its X-Mailprobe-Sent header"
    released = await bench.hold.release_at(qid, float(sent.group(1)) + delay)
    result = await trip
    seen = await bench.watch.wait_for(probe_id, 10)
    status = "ok"
    if result.probe_id != probe_id:
        status = "held message is not the probe just sent"
    elif result.status is not Status.OK:
        status = f"mailprobe status {result.status}"
    elif seen is None:
        status = "no inotify sighting"
    return Sample(
        MAILPROBE, delay, probe_id, result.sent_at, released, result.delay_seconds,
        seen.seen_at if seen else None, seen.ctime if seen else None, status=status,
    )  # fmt: skip


async def peer_probe(bench: Bench, lane: Lane, delay: float) -> Sample:
    """One check_email_delivery run, its message released `delay` s after the peer started."""
    argv = peer_check.peer_command(lane.settings)
    run = asyncio.ensure_future(asyncio.to_thread(bench.peers.run, argv))
    held = await held_or_done(bench.hold, lane.pattern, run)
    if held is None:
        outcome = await run
        first = outcome.output.splitlines()[0] if outcome.output else ""
        return Sample(PEER, delay, "", time.time(), status=f"not held: {first[:120]}",
                      cpu_seconds=outcome.cpu_seconds)  # fmt: skip
    qid, _, match = held
    token = match.group(1).decode()
    sent_at = peer_check.token_sent_at(token)
    released = await bench.hold.release_at(qid, sent_at + delay)
    outcome = await run
    seen = await bench.watch.wait_for(token, 10)
    status = "ok"
    if outcome.elapsed is None:
        first = outcome.output.splitlines()[0] if outcome.output else ""
        status = f"peer exit {outcome.exit_code}: {first[:120]}"
    elif seen is None:
        status = "no inotify sighting"
    return Sample(
        PEER, delay, token, sent_at, released, outcome.elapsed,
        seen.seen_at if seen else None, seen.ctime if seen else None,
        cpu_seconds=outcome.cpu_seconds, status=status, lane=lane.settings.recipient,
    )  # fmt: skip


async def mailprobe_lane(
    bench: Bench, delays: list[float]
) -> tuple[list[Sample], list[tuple[int, float]]]:
    """mailprobe's probes one at a time; marks (log offset, agent CPU) at each probe's start."""
    samples: list[Sample] = []
    marks: list[tuple[int, float]] = []
    for delay in delays:
        marks.append((bench.log.offset(), await bench.agent.cpu()))
        samples.append(await mailprobe_probe(bench, delay))
        _progress(samples[-1])
    return samples, marks


async def peer_lane(bench: Bench, lane: Lane, delays: list[float]) -> list[Sample]:
    """One lane of peer runs, one at a time."""
    samples = []
    for delay in delays:
        samples.append(await peer_probe(bench, lane, delay))
        _progress(samples[-1])
    return samples


def attribute_mailprobe(
    bench: Bench, samples: list[Sample], marks: list[tuple[int, float]]
) -> tuple[list[Sample], Counter[str]]:
    """Each probe gets the agent CPU and alice's IMAP commands from its start to the next's."""
    out = []
    mix: Counter[str] = Counter()
    for sample, (start, end) in zip(samples, itertools.pairwise(marks), strict=True):
        commands = bench.log.commands(MP_RECIPIENT, start[0], end[0])
        mix.update(commands)
        out.append(dataclasses.replace(
            sample, cpu_seconds=end[1] - start[1], imap_commands=sum(commands.values())
        ))  # fmt: skip
    return out, mix


def attribute_peer(
    bench: Bench, samples: list[Sample], start: int
) -> tuple[list[Sample], Counter[str]]:
    """Each peer run logs in once: its session's commands, matched in order within its lane."""
    sessions = bench.log.sessions(start)
    out = []
    mix: Counter[str] = Counter()
    for recipient in PEER_RECIPIENTS:
        mine = [s for s in samples if s.lane == recipient]
        theirs = [s for s in sessions if s.user == recipient]
        ran = [s for s in mine if s.reported_delay is not None]
        if len(theirs) != len(ran):
            log(f"{recipient}: {len(theirs)} IMAP sessions for {len(ran)} runs: not attributed")
            out += mine
            continue
        counts = iter(theirs)
        for sample in mine:
            if sample.reported_delay is None:
                out.append(sample)
                continue
            session = next(counts)
            mix.update(session.commands)
            out.append(dataclasses.replace(sample, imap_commands=session.total))
    return out, mix


async def wait_peer_sessions_ended(bench: Bench, start: int, runs: int) -> None:
    """Wait until Dovecot has logged the end of every peer session (its log is asynchronous)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sessions = bench.log.sessions(start)
        ended = [s for s in sessions if s.user in PEER_RECIPIENTS and s.ended]
        if len(ended) >= runs:
            return
        await asyncio.sleep(0.05)


def agent_config(stack: MailStack) -> Config:
    """mailprobe on the stack: bob -> alice, STARTTLS both ways, default watch policy."""

    def endpoint(address: str) -> dict[str, Any]:
        return account(
            address, stack.users[address], host=stack.host, ca_file=stack.ca_file,
            smtp_port=stack.submission_port, imap_port=stack.imap_port,
            smtp_security="starttls", imap_security="starttls",
        )  # fmt: skip

    return make_config(
        {"alice": endpoint(MP_RECIPIENT), "bob": endpoint(SENDER)},
        [{"name": "bench", "from": "bob", "to": "alice", "interval": "1d"}],
    )


def peer_lanes(stack: MailStack, args: argparse.Namespace) -> list[Lane]:
    lanes = []
    for recipient in PEER_RECIPIENTS[: args.peer_lanes]:
        marker = f"peer-bench-{recipient.partition('@')[0]}"
        settings = peer_check.PeerSettings(
            host=stack.host, smtp_port=stack.submission_port, imaps_port=stack.imaps_port,
            ca_file=stack.ca_file, sender=SENDER, sender_password=stack.users[SENDER],
            recipient=recipient, recipient_password=stack.users[recipient], marker=marker,
            extra_header=f"{stack.hold_header}: yes", wait=args.peer_wait,
            interval=args.peer_interval, retries=args.peer_retries,
        )  # fmt: skip
        lanes.append(Lane(settings, peer_check.token_pattern(marker)))
    return lanes


async def measure(
    args: argparse.Namespace,
) -> tuple[list[Sample], dict[str, Counter[str]], list[str]]:
    """Start the stack, run both tools over the schedule, stop everything.

    Returns the samples, each tool's IMAP command mix and lines describing the run.
    """
    delays = [float(d) for d in args.delays.split(",")]
    rng = random.Random(args.seed)
    schedule = [d for d in delays for _ in range(args.count)]
    rng.shuffle(schedule)
    with MailStack() as stack:
        imap_commands.enable(stack)
        command_log = imap_commands.CommandLog(stack.layout.dovecot_log)
        lanes = [] if args.no_peer else peer_lanes(stack, args)
        recipients = [MP_RECIPIENT, *(lane.settings.recipient for lane in lanes)]
        patterns = [_PROBE_ID, *(lane.pattern for lane in lanes)]
        watch = MaildirWatch({r: stack.maildir(r) for r in recipients}, patterns)
        agent = AgentThread(agent_config(stack), "alice", {stack.hold_header: "yes"})
        env = dict(os.environ, SSL_CERT_FILE=str(stack.ca_file))
        bench = Bench(stack, HoldQueue(stack), watch, agent,
                      peer_check.PeerRunner(env, timeout=120), command_log)  # fmt: skip
        try:
            await watch.start()
            await agent.start(15)
            start = command_log.offset()
            log(f"stack up; {len(schedule)} probes per tool, delays {delays}")
            began, load = time.monotonic(), os.getloadavg()[0]
            async with asyncio.timeout(args.max_seconds), asyncio.TaskGroup() as tg:
                mp_task = tg.create_task(mailprobe_lane(bench, schedule))
                peer_tasks = [
                    tg.create_task(peer_lane(bench, lane, schedule[i :: len(lanes)]))
                    for i, lane in enumerate(lanes)
                ]
            peer_samples = [s for task in peer_tasks for s in task.result()]
            await wait_peer_sessions_ended(
                bench, start, sum(s.reported_delay is not None for s in peer_samples)
            )
            run = [
                f"Measuring took {time.monotonic() - began:.0f} s; load average (1 min) "
                f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
            ]
            mp_samples, marks = mp_task.result()
            marks.append((command_log.offset(), await agent.cpu()))
            mp_samples, mp_mix = attribute_mailprobe(bench, mp_samples, marks)
            peer_samples, peer_mix = attribute_peer(bench, peer_samples, start)
            if watch.unidentified:
                log(f"files matching no probe: {watch.unidentified}")
            return mp_samples + peer_samples, {MAILPROBE: mp_mix, PEER: peer_mix}, run
        finally:
            bench.peers.kill_all()
            await agent.stop()
            watch.stop()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="probes per delay and tool")
    parser.add_argument("--delays", default=DEFAULT_DELAYS, help="injected delays, seconds")
    parser.add_argument("--seed", type=int, default=1, help="shuffles the order of delays")
    parser.add_argument("--no-peer", action="store_true", help="measure mailprobe only")
    parser.add_argument(
        "--peer-lanes",
        type=int,
        choices=(1, 2),
        default=2,
        help="check_email_delivery runs in parallel (own mailbox each)",
    )
    parser.add_argument(
        "--peer-wait",
        type=int,
        default=1,
        help="its --wait: whole seconds; 0 would mean its default 5",
    )
    parser.add_argument(
        "--peer-interval", type=int, default=1, help="its --imap-check-interval: whole seconds"
    )
    parser.add_argument("--peer-retries", type=int, default=30, help="its --imap-retries")
    parser.add_argument("--max-seconds", type=float, default=900, help="give up after this")
    parser.add_argument("--output", type=Path, default=RESULTS / "delay_precision.md")
    parser.add_argument("--csv", type=Path, default=RESULTS / "delay_precision.csv")
    return parser.parse_args(argv)  # fmt: skip


async def _main(args: argparse.Namespace) -> list[Sample]:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM ends the run like Ctrl-C: the stack and every child are cleaned up.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    samples, mixes, run = await measure(args)
    write_csv(samples, args.csv)
    write_report(samples, mixes, args, args.output, run)
    return samples


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 when it ran (whatever the figures), 1 if stopped, 2 if it cannot."""
    given = sys.argv[1:] if argv is None else argv
    args = parse_args(given)
    args.given = given
    problem = missing_prerequisites() or (None if args.no_peer else peer_check.missing())
    if problem is not None:
        log(f"delay_precision: {problem}")
        return 2
    started = time.monotonic()
    try:
        asyncio.run(_main(args))
    except (asyncio.CancelledError, KeyboardInterrupt):
        log("delay_precision: stopped")
        return 1
    except TimeoutError:
        log(f"delay_precision: gave up after {args.max_seconds:g} s")
        return 1
    log(f"done in {time.monotonic() - started:.0f} s: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
