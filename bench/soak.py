"""Soak: 100 routes with hostile mail servers mixed in; does the agent stay flat for an hour?

Run from the repository root (no root needed, everything listens on 127.0.0.1):

    python -m bench.soak                      # 1 h, 100 routes of which 20 hostile (~75 min)
    python -m bench.soak --duration 5m        # a short run, to see it work

The mail service (embedded aiosmtpd + pymap) and the hostile servers (tests/hostile: each route's
SMTP and IMAP server misbehaves in its own way) run in this process. The agent under test runs
in a process of its own, the same Agent `mailprobe run` runs. Beside it runs a baseline agent
with the same good routes on mailboxes of its own and no hostile ones: the hostile modes cost
the difference between the two. Each agent samples itself every 10 s (RSS, open fds, asyncio
tasks, CPU seconds); the results go to bench/results/soak.md and soak.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mailprobe.agent import logs
from mailprobe.agent.config import load_config
from mailprobe.agent.durations import format_duration, parse_duration
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.runtime import Agent
from mailprobe.probes.message import build_probe, new_probe_id
from tests.hostile import imap_modes, smtp_modes

RESULTS = Path(__file__).parent / "results"
MAILBOXES = 20  # good routes spread over this many receiving mailboxes per agent
AGENTS = ("hostile", "baseline")


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"soak: {message}", file=sys.stderr, flush=True)


# -- the agent process ------------------------------------------------------------------------
def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run_agent(config_path: Path, samples_path: Path, every: float) -> None:
    """One agent under observation: run it until SIGTERM, sampling itself every `every` s."""
    config = load_config(config_path)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")  # fmt: skip
    logs.install("info", config)
    outcomes: Counter[str] = Counter()

    def count(result: Probe) -> None:
        if result.status is Status.SENT:
            return  # the outcome follows
        kind = result.route.split("-", 1)[0]
        outcomes[f"{kind}:{result.status.value}:{result.reason or '-'}"] += 1
        if kind == "good":
            outcomes[f"route:{result.route}:{result.status.value}"] += 1

    agent = Agent(config, sinks=[count])
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, agent.stop)
    start = time.monotonic()

    def sample() -> dict[str, Any]:
        watches = agent.watchers.watches
        reconnects = sum(sum(w.watcher.reconnects.values()) for w in watches.values())
        return {"t": round(time.monotonic() - start, 3), "rss_kib": _rss_kib(),
                "fds": len(os.listdir("/proc/self/fd")), "tasks": len(asyncio.all_tasks()),
                "cpu_s": round(time.process_time(), 4), "reconnects": reconnects,
                "outcomes": dict(outcomes)}  # fmt: skip

    async def sampler() -> None:
        with samples_path.open("a") as out:
            while True:
                out.write(json.dumps(sample()) + "\n")
                out.flush()
                await asyncio.sleep(every)

    task = asyncio.ensure_future(sampler())
    try:
        await agent.run()
    finally:
        task.cancel()
        with samples_path.open("a") as out:
            out.write(json.dumps({**sample(), "final": True}) + "\n")


# -- the world ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What runs: durations in seconds."""

    duration: float
    routes: int
    hostile: int
    interval: float
    every: float

    @property
    def good(self) -> int:
        return self.routes - self.hostile


def _good_accounts(
    prefix: str, mail: Any, workdir: Path, passwords: dict[str, str]
) -> dict[str, Any]:
    accounts = {}
    for i in range(MAILBOXES):
        address = f"{prefix}{i}@soak.test"
        pw_file = workdir / f"{prefix}{i}.pw"
        pw_file.write_text(passwords[address] + "\n")
        common = {"host": mail.host, "security": "starttls", "username": address,
                  "password_file": str(pw_file), "ca_file": str(mail.ca_file), "timeout": "10s"}  # fmt: skip
        accounts[f"{prefix}{i}"] = {"address": address, "smtp": {**common, "port": mail.smtp_port},
                                    "imap": {**common, "port": mail.imap_port}}  # fmt: skip
    return accounts


def _good_routes(prefix: str, plan: Plan) -> list[dict[str, Any]]:
    # Route k goes from one mailbox to another (or itself), spreading over all MAILBOXES.
    return [{"name": f"good-{k}", "from": f"{prefix}{k % MAILBOXES}",
             "to": f"{prefix}{(k * 7 + 3) % MAILBOXES}", "interval": f"{plan.interval}s"}
            for k in range(plan.good)]  # fmt: skip


def _hostile(j: int, imap_port: int, smtp_port: int, workdir: Path) -> tuple[str, dict[str, Any]]:
    pw_file = workdir / "hostile.pw"
    pw_file.write_text("pw\n")
    common = {"host": "127.0.0.1", "security": "plain", "username": f"h{j}@hostile.test",
              "password_file": str(pw_file), "timeout": "5s"}  # fmt: skip
    return f"h{j}", {"address": f"h{j}@hostile.test", "imap": {**common, "port": imap_port},
                     "smtp": {**common, "port": smtp_port}}  # fmt: skip


def _write_config(workdir: Path, name: str, accounts: dict[str, Any],
                  routes: list[dict[str, Any]], secret: Path) -> Path:  # fmt: skip
    data = {
        # max_concurrency well above the silent SMTP servers' count: per-endpoint fairness is
        # its own change, and this run is about memory, fds, tasks and CPU.
        "agent": {"listen": "127.0.0.1:0", "state_dir": str(workdir / f"state-{name}"),
                  "secret_file": str(secret), "max_concurrency": 64, "log_level": "info"},
        "accounts": accounts,
        "routes": routes,
    }  # fmt: skip
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def run_world(plan: Plan, output: Path, csv_path: Path, argv: list[str]) -> None:
    """Start the mail service, the hostile servers and both agents; write the results."""
    from mailprobe.agent.demo.service import EmbeddedMailService

    users = {f"{p}{i}@soak.test": secrets.token_urlsafe(12) for p in "ab" for i in range(MAILBOXES)}
    with tempfile.TemporaryDirectory(prefix="mailprobe-soak-") as tmp:
        workdir = Path(tmp)
        secret = workdir / "secret"
        secret.write_text(secrets.token_urlsafe(32) + "\n")
        async with AsyncExitStack() as stack:
            mail = await stack.enter_async_context(EmbeddedMailService(users))
            hostile_accounts: dict[str, Any] = {}
            hostile_routes: list[dict[str, Any]] = []
            modes: list[str] = []
            for j in range(plan.hostile):
                imap_cls = imap_modes.FAILING[j % len(imap_modes.FAILING)]
                smtp_cls = smtp_modes.FAILING[j % len(smtp_modes.FAILING)]
                raw = build_probe(secret=secret.read_text().strip().encode(), route=f"h{j}",
                                  sender="x@hostile.test", recipient=f"h{j}@hostile.test",
                                  sent_at=time.time(), probe_id=new_probe_id())[1]  # fmt: skip
                imap = await stack.enter_async_context(imap_cls([raw]))
                smtp = await stack.enter_async_context(smtp_cls())
                name, acc = _hostile(j, imap.port, smtp.port, workdir)
                hostile_accounts[name] = acc
                mode = f"{imap_cls.__name__}+{smtp_cls.__name__}"
                modes.append(mode)
                hostile_routes.append({"name": f"hostile-{j}", "from": name, "to": name,
                                       "interval": f"{plan.interval}s"})  # fmt: skip
            configs = {
                "hostile": _write_config(
                    workdir, "hostile",
                    {**_good_accounts("a", mail, workdir, users), **hostile_accounts},
                    _good_routes("a", plan) + hostile_routes, secret,
                ),
                "baseline": _write_config(
                    workdir, "baseline", _good_accounts("b", mail, workdir, users),
                    _good_routes("b", plan), secret,
                ),
            }  # fmt: skip
            load_start = os.getloadavg()
            procs = {}
            for name, path in configs.items():
                samples = workdir / f"{name}.jsonl"
                err = (workdir / f"{name}.log").open("w")
                procs[name] = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.soak", "--agent", str(path), "--samples",
                    str(samples), "--every", str(plan.every), stderr=err,
                    cwd=Path(__file__).parent.parent,
                )  # fmt: skip
            log(f"running {format_duration(plan.duration)}: {plan.routes} routes "
                f"({plan.hostile} hostile) beside a {plan.good}-route baseline")  # fmt: skip
            deadline = time.monotonic() + plan.duration
            while time.monotonic() < deadline:
                await asyncio.sleep(min(60.0, deadline - time.monotonic()))
                for name, proc in procs.items():
                    if proc.returncode is not None:
                        raise SystemExit(f"soak: the {name} agent ended early ({proc.returncode})")
                log(f"{format_duration(plan.duration - (deadline - time.monotonic()))} done")
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            codes = {n: await asyncio.wait_for(p.wait(), 60) for n, p in procs.items()}
            load_end = os.getloadavg()
        runs = {n: _read(workdir / f"{n}.jsonl") for n in AGENTS}
        log_bytes = {n: (workdir / f"{n}.log").stat().st_size for n in AGENTS}
        log_lines = {n: len((workdir / f"{n}.log").read_bytes().splitlines()) for n in AGENTS}
    _write_csv(csv_path, runs)
    _write_report(output, _report(plan, runs, modes, codes, log_bytes, log_lines,
                                  (load_start, load_end), argv))  # fmt: skip
    log(f"wrote {output} and {csv_path}")


def _write_report(path: Path, text: str) -> None:
    path.write_text(text)


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_csv(path: Path, runs: dict[str, list[dict[str, Any]]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["agent", "t_s", "rss_kib", "fds", "tasks", "cpu_s", "reconnects"])
        for name, samples in runs.items():
            for s in samples:
                writer.writerow([name, s["t"], s["rss_kib"], s["fds"], s["tasks"], s["cpu_s"],
                                 s["reconnects"]])  # fmt: skip


# -- the report --------------------------------------------------------------------------------
def _window(samples: list[dict[str, Any]], lo: float, hi: float, key: str) -> float:
    running = [s for s in samples if not s.get("final")]  # the last one is after shutdown
    end = running[-1]["t"]
    values = [s[key] for s in running if lo * end <= s["t"] <= hi * end]
    return statistics.median(values) if values else float("nan")


def _drift(samples: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    """Median just after warm-up (10-20 % of the run), median of the last 10 %, and the change."""
    early, late = _window(samples, 0.1, 0.2, key), _window(samples, 0.9, 1.0, key)
    return early, late, (late - early) / early * 100 if early else float("nan")


def _cpu_percent(samples: list[dict[str, Any]]) -> float:
    first, last = samples[0], samples[-1]
    return (last["cpu_s"] - first["cpu_s"]) / max(last["t"] - first["t"], 1e-9) * 100


def _report(plan: Plan, runs: dict[str, list[dict[str, Any]]], modes: list[str],
            codes: dict[str, int], log_bytes: dict[str, int], log_lines: dict[str, int],
            load: tuple[tuple[float, ...], tuple[float, ...]], argv: list[str]) -> str:  # fmt: skip
    hostile = runs["hostile"]
    hours = hostile[-1]["t"] / 3600
    cpu = {n: _cpu_percent(s) for n, s in runs.items()}
    cost = cpu["hostile"] - cpu["baseline"]
    lines = [
        f"# Soak: {plan.routes} routes ({plan.hostile} hostile) for {format_duration(plan.duration)}",
        "",
        "Reproduce from the repository root (no root needed, all on 127.0.0.1):",
        "",
        "```sh",
        "python -m bench.soak " + " ".join(argv),
        "```",
        "",
        *(["This is a short run; the full soak (one hour) is `python -m bench.soak`.", ""]
          if plan.duration < 3600 else []),
        f"Routes every {format_duration(plan.interval)}; samples every "
        f"{format_duration(plan.every)}. Load average of the host (2 shared cores) "
        f"at start {load[0][0]:.1f}, at end {load[1][0]:.1f}. Agents exited with "
        + ", ".join(f"{n} {c}" for n, c in codes.items()) + " after SIGTERM.",
        "",
        "| agent | RSS MiB early → late (change) | open fds early → late | asyncio tasks early → late | CPU % of a core | log lines / h | log KiB / h |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    verdicts = []
    for name, samples in runs.items():
        rss = _drift(samples, "rss_kib")
        fds, tasks = _drift(samples, "fds"), _drift(samples, "tasks")
        lines.append(
            f"| {name} | {rss[0] / 1024:.1f} → {rss[1] / 1024:.1f} ({rss[2]:+.1f} %) | "
            f"{fds[0]:.0f} → {fds[1]:.0f} ({fds[2]:+.1f} %) | {tasks[0]:.0f} → {tasks[1]:.0f} | "
            f"{cpu[name]:.1f} | {log_lines[name] / hours:.0f} | {log_bytes[name] / 1024 / hours:.0f} |"
        )  # fmt: skip
        verdicts.append(f"{name}: RSS {'flat' if abs(rss[2]) <= 10 else 'NOT flat'} "
                        f"({rss[2]:+.1f} %), fds {'flat' if abs(fds[2]) <= 10 else 'NOT flat'} "
                        f"({fds[2]:+.1f} %)")  # fmt: skip
    lines += [
        "",
        "Early is the median just after warm-up (10-20 % of the run), late the median of the last "
        "10 %. Target: RSS and fds within 10 %: " + "; ".join(verdicts) + ".",
        "",
        f"Cost of the hostile modes: {cost:.1f} % of a core (hostile agent {cpu['hostile']:.1f} % "
        f"minus baseline {cpu['baseline']:.1f} %); target under 5 %: "
        f"**{'met' if cost < 5 else 'not met'}**.",
        "",
    ]  # fmt: skip
    lines += _schedule(plan, runs)
    lines += _outcomes(hostile[-1]["outcomes"], hostile[-1]["reconnects"])
    lines += ["", "Hostile routes (IMAP mode + SMTP mode), from tests/hostile:", ""]
    lines += [f"- hostile-{j}: {m}" for j, m in enumerate(modes)]
    lines += ["", "## Samples (hostile agent)", "",
              "| t | RSS MiB | fds | tasks | CPU s | watcher reconnects |",
              "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    step = max(1, len(hostile) // 60)
    for s in hostile[::step]:
        lines.append(f"| {format_duration(round(s['t']))} | {s['rss_kib'] / 1024:.1f} | "
                     f"{s['fds']} | {s['tasks']} | {s['cpu_s']:.1f} | {s['reconnects']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _schedule(plan: Plan, runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = ["| agent | good routes | probes per route expected | ok per route: min / median / max | routes within 10 % |",
           "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, samples in runs.items():
        final = samples[-1]["outcomes"]
        expected = samples[-1]["t"] / plan.interval
        per_route = [final.get(f"route:good-{k}:ok", 0) for k in range(plan.good)]
        within = sum(1 for n in per_route if abs(n - expected) <= 0.1 * expected + 1)
        out.append(f"| {name} | {plan.good} | {expected:.1f} | {min(per_route)} / "
                   f"{statistics.median(per_route):.0f} / {max(per_route)} | {within} |")  # fmt: skip
    out.append("")
    out.append("(A route's probe is counted when it arrived; \"within 10 %\" allows one probe "
               "for the one in flight at the end.)")  # fmt: skip
    return out


def _outcomes(outcomes: dict[str, int], reconnects: int) -> list[str]:
    rows = sorted((k, v) for k, v in outcomes.items() if not k.startswith("route:"))
    out = ["", f"Outcomes in the hostile agent (kind:status:reason), watcher reconnects: "
                f"{reconnects}:", ""]  # fmt: skip
    out += [f"- {k}: {v}" for k, v in rows]
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: the world by default, one observed agent with --agent."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", default="1h")
    parser.add_argument("--routes", type=int, default=100)
    parser.add_argument("--hostile", type=int, default=20)
    parser.add_argument("--interval", default="60s")
    parser.add_argument("--every", default="10s", help="sampling interval")
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.md")
    parser.add_argument("--csv", type=Path, default=RESULTS / "soak.csv")
    parser.add_argument("--agent", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.agent is not None:
        asyncio.run(run_agent(args.agent, args.samples, float(args.every)))
        return 0
    plan = Plan(duration=parse_duration(args.duration), routes=args.routes, hostile=args.hostile,
                interval=parse_duration(args.interval), every=parse_duration(args.every))  # fmt: skip
    if not 0 <= plan.hostile < plan.routes:
        parser.error("--hostile must be at least 0 and fewer than --routes")
    shown = sys.argv[1:] if argv is None else argv
    asyncio.run(run_world(plan, args.output, args.csv, shown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
