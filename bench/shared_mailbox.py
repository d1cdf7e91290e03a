"""Shared mailbox: two `mailprobe run` agents and `probe-once` on one mailbox for ten minutes.

Run from the repository root (Postfix and Dovecot from tests/mailstack/install.sh; the stack is
started here, on 127.0.0.1, and stopped again):

    python -m bench.shared_mailbox                     # 10 minutes
    python -m bench.shared_mailbox --duration 2m       # a short run

Agents A (bob -> alice, every 2 s) and B (carol -> alice, every 3 s) share the secret and alice's
mailbox; `probe-once` runs on A's route every 10 s with an identity of its own; a third agent C,
whose probes Postfix holds, is killed with two of them in flight, and they are released into the
mailbox once it is dead. The scenario is tests/helpers/shared_mailbox.py, the one the integration
test runs for 45 s. Results go to bench/results/shared_mailbox.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from mailprobe.agent.durations import format_duration, parse_duration
from tests.helpers.shared_mailbox import SharedMailboxResult, median, percentile, run_shared_mailbox
from tests.mailstack import MailStack, missing_prerequisites

RESULTS = Path(__file__).parent / "results" / "shared_mailbox.md"


def render(result: SharedMailboxResult, command: str) -> str:
    """The results table in Markdown."""
    ms = 1000.0
    lines = [
        f"# Shared mailbox: two agents and probe-once on one mailbox for "
        f"{format_duration(round(result.duration))}",
        "",
        "Reproduce from the repository root (Postfix + Dovecot from tests/mailstack/install.sh):",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {platform.node() or 'a host'} "
        f"({os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.1f}); "
        f"foreign_probe_max_age {result.max_age:g} s.",
        "",
        "| who | probes judged | ok | late | lost or overdue | failed | in flight at stop | "
        "delay p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for agent in result.agents.values():
        d = agent.delays
        lines.append(
            f"| agent {agent.name} | {agent.sent} | {agent.ok} | {agent.late} | {agent.lost} | "
            f"{agent.failed} | {agent.in_flight_at_stop} | {median(d) * ms:.1f} | "
            f"{percentile(d, 0.99) * ms:.1f} | {max(d, default=float('nan')) * ms:.1f} |"
        )
    d = result.probe_once_delays
    lines.append(
        f"| probe-once | {result.probe_once_runs} | {result.probe_once_ok} | 0 | "
        f"{result.probe_once_runs - result.probe_once_ok} | 0 | 0 | {median(d) * ms:.1f} | "
        f"{percentile(d, 0.99) * ms:.1f} | {max(d, default=float('nan')) * ms:.1f} |"
    )
    lines += [
        "",
        "A probe counts as stolen when another agent removed it before its owner saw it: its "
        "owner would then report it lost or overdue. Probes sent in the last 10 s before the "
        "agents stopped may still be on their way and are listed apart.",
        "",
        "| stopped agent's probe | sent | gone from the mailbox | after max age by |",
        "|---|---|---|---:|",
    ]
    for pid, sent in sorted(result.stale_sent_at.items(), key=lambda kv: kv[1]):
        gone = result.stale_gone_at.get(pid)
        when = time.strftime("%H:%M:%S", time.gmtime(sent))
        if gone is None:
            lines.append(f"| {pid[:12]} | {when} | still there | - |")
        else:
            gone_at = time.strftime("%H:%M:%S", time.gmtime(gone))
            lines.append(
                f"| {pid[:12]} | {when} | {gone_at} | {gone - sent - result.max_age:.1f} s |"
            )
    removed = {a.name: a.foreign_removed for a in result.agents.values()}
    lines += [
        "",
        "(Seen by polling the mailbox every 0.5 s; the release into the mailbox happens once C "
        "is dead, so a probe is removed at max age after its send time, or soon after its "
        "release when that is later.)",
        "",
        f"Foreign removals counted: {', '.join(f'{k} {v:g}' for k, v in removed.items())} "
        f"(total {sum(removed.values()):g} for {len(result.stale_sent_at)} stale probes). "
        f"Ordinary mail: {len(result.ordinary_before)} messages before, "
        f"{len(result.ordinary_after)} after, flags "
        f"{'unchanged' if result.ordinary_before == result.ordinary_after else 'CHANGED'}. "
        f"Probes left in the mailbox at the end: {len(result.probes_left)}.",
        "",
        "**Held**" if not result.problems else "**Problems**: " + "; ".join(result.problems),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_mailbox")
    parser.add_argument("--duration", default="10m", help="how long the agents share (10m)")
    parser.add_argument("--max-age", default="30s", help="foreign_probe_max_age (30s)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    problem = missing_prerequisites()
    if problem is not None:
        print(f"shared_mailbox: {problem}", file=sys.stderr)
        return 2
    duration, max_age = parse_duration(args.duration), parse_duration(args.max_age)
    command = "python -m bench.shared_mailbox" + (
        f" --duration {args.duration}" if args.duration != "10m" else ""
    )

    def log(message: str) -> None:
        print(f"shared_mailbox: {message}", file=sys.stderr, flush=True)

    with MailStack() as stack, tempfile.TemporaryDirectory(prefix="mailprobe-shared-") as work:
        log(f"sharing alice's mailbox for {args.duration}")
        result = asyncio.run(
            run_shared_mailbox(stack, Path(work), duration, max_age=max_age, log=log)
        )
    text = render(result, command)
    args.output.write_text(text)
    print(text)
    return 0 if not result.problems else 1


if __name__ == "__main__":
    sys.exit(main())
