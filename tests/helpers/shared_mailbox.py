"""Two `mailprobe run` agents and `mailprobe probe-once` on one mailbox of the real stack.

The run behind tests/integration/test_shared_mailbox.py (about a minute) and bench/shared_mailbox.py
(ten minutes): agents A (bob -> alice) and B (carol -> alice) share the secret and alice's
mailbox, `probe-once` runs on the same route every few seconds, and a third agent C, whose probes
Postfix holds, is killed with probes in flight; once it is dead they are released into the shared
mailbox. What must hold: every probe of A, B and probe-once reaches its owner in time (none lost,
overdue or taken by another), C's probes are left alone until `foreign_probe_max_age` after their
send time and then removed, and the ordinary mail in the mailbox is exactly as it was.

A watcher of our own polls the mailbox over IMAP (BODY.PEEK, no flags set) to see when each probe
left it.
"""

from __future__ import annotations

import asyncio
import email
import imaplib
import math
import os
import signal
import smtplib
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Status
from tests.helpers.agents import AgentProcess, free_port, read, scrape
from tests.helpers.configs import SECRET, account
from tests.helpers.waits import wait_until
from tests.mailstack import MailStack

RECEIVER = "alice@probe.test"
SENDERS = {"a": "bob@probe.test", "b": "carol@probe.test", "c": "bob@probe.test"}
INTERVALS = {"a": 2.0, "b": 3.0, "c": 1.0}
ORDINARY = 3  # ordinary mails in the shared mailbox before the run; they must stay as they were
STALE_PROBES = 2  # probes of the stopped agent C released into the mailbox


@dataclass
class AgentResult:
    """What one agent's ledger says about its probes."""

    name: str
    sent: int = 0
    ok: int = 0
    late: int = 0
    lost: int = 0
    failed: int = 0
    in_flight_at_stop: int = 0
    delays: list[float] = field(default_factory=list)
    foreign_removed: float = 0.0
    unremoved: float = 0.0


@dataclass
class SharedMailboxResult:
    """The run's figures; `problems` lists every way it fell short (empty: it held)."""

    duration: float
    max_age: float
    agents: dict[str, AgentResult]
    probe_once_runs: int
    probe_once_ok: int
    probe_once_delays: list[float]
    stale_sent_at: dict[str, float]
    stale_gone_at: dict[str, float]
    ordinary_before: list[tuple[str, str]]
    ordinary_after: list[tuple[str, str]]
    probes_left: list[str]
    problems: list[str]


def _accounts(stack: MailStack) -> dict[str, dict[str, Any]]:
    common = {"host": stack.host, "ca_file": stack.ca_file, "smtp_port": stack.submission_port,
              "imap_port": stack.imap_port}  # fmt: skip
    names = {"alice": RECEIVER, "bob": SENDERS["a"], "carol": SENDERS["b"]}
    return {name: account(addr, stack.users[addr], **common) for name, addr in names.items()}


def _config(
    stack: MailStack, work: Path, name: str, max_age: float, *, file: str = "", **agent: Any
) -> Path:
    """Agent `name`'s config (route `name`, state and file of its own unless `file` is given)."""
    file = file or name
    sender = {"bob@probe.test": "bob", "carol@probe.test": "carol"}[SENDERS[name]]
    data = {
        "agent": {"listen": f"127.0.0.1:{free_port()}", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(work / f"state-{file}"), "log_level": "info",
                  "foreign_probe_max_age": f"{max_age:g}s", **agent},
        "accounts": _accounts(stack),
        "routes": [{"name": f"{sender}2alice-{name}", "from": sender, "to": "alice",
                    "interval": f"{INTERVALS[name]:g}s", "jitter": "0s"}],
        "sla": {"confirm_retry": "2s", "confirm_within": "10s"},
    }  # fmt: skip
    path = work / f"{file}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _total(text: str, name: str, having: str = "") -> float:
    """The sum of a metric's samples over its series (those whose labels contain `having`)."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith(name + "{") and having in line
    )  # fmt: skip


def _port(config: Path) -> int:
    return int(yaml.safe_load(config.read_text())["agent"]["listen"].rsplit(":", 1)[1])


class MailboxView:
    """Our own look into the shared mailbox: message ids, probe ids and owners, never a flag."""

    def __init__(self, stack: MailStack) -> None:
        self.stack = stack
        self.context = ssl.create_default_context(cafile=str(stack.ca_file))

    def snapshot(self) -> list[tuple[str, str, str]]:
        """(Message-ID, X-Mailprobe-Id, X-Mailprobe-Agent) of every message, '' when absent."""
        with imaplib.IMAP4(self.stack.host, self.stack.imap_port, timeout=10) as imap:
            imap.starttls(self.context)
            imap.login(RECEIVER, self.stack.users[RECEIVER])
            imap.select("INBOX", readonly=True)
            fields = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID X-MAILPROBE-ID X-MAILPROBE-AGENT)]"
            status, data = imap.uid("FETCH", "1:*", f"({fields})")
            imap.logout()
        seen = []
        for item in data if status == "OK" else []:
            if isinstance(item, tuple):
                headers = email.message_from_bytes(item[1])
                seen.append(tuple(headers.get(h, "") for h in
                                  ("Message-ID", "X-Mailprobe-Id", "X-Mailprobe-Agent")))  # fmt: skip
        return seen  # type: ignore[return-value]

    def ordinary(self) -> list[tuple[str, str]]:
        """(Message-ID, flags) of every message that is not a probe, sorted."""
        with imaplib.IMAP4(self.stack.host, self.stack.imap_port, timeout=10) as imap:
            imap.starttls(self.context)
            imap.login(RECEIVER, self.stack.users[RECEIVER])
            imap.select("INBOX", readonly=True)
            status, data = imap.uid(
                "FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID X-MAILPROBE-ID)])"
            )
            imap.logout()
        out = []
        for item in data if status == "OK" else []:
            if isinstance(item, tuple):
                headers = email.message_from_bytes(item[1])
                if headers.get("X-Mailprobe-Id") is None:
                    flags = item[0].decode().split("FLAGS (", 1)[1].split(")", 1)[0]
                    out.append((headers.get("Message-ID", ""), flags))
        return sorted(out)


def _send_ordinary(stack: MailStack, count: int) -> None:
    """Ordinary mail to the shared mailbox, one of it read and flagged the way a person would."""
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    with smtplib.SMTP(stack.host, stack.submission_port, timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.login(SENDERS["b"], stack.users[SENDERS["b"]])
        for i in range(count):
            msg = EmailMessage()
            msg["From"], msg["To"] = SENDERS["b"], RECEIVER
            msg["Subject"] = f"minutes of meeting {i}"
            msg["Message-ID"] = f"<ordinary-{i}-{time.time_ns()}@probe.test>"
            msg.set_content("Not a probe. Leave me alone.\n")
            smtp.send_message(msg)


def _mark_one_read(stack: MailStack) -> None:
    with imaplib.IMAP4(stack.host, stack.imap_port, timeout=10) as imap:
        imap.starttls(ssl.create_default_context(cafile=str(stack.ca_file)))
        imap.login(RECEIVER, stack.users[RECEIVER])
        imap.select("INBOX")
        imap.uid("STORE", "1", "+FLAGS", r"(\Seen \Flagged)")
        imap.logout()


async def _probe_once(
    config: Path, log: Path, route: str = "bob2alice-a"
) -> tuple[int, float | None]:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mailprobe.agent.cli", "probe-once", "--config", str(config),
            "--route", route, "--json", "--timeout", "30",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=out,
        )  # fmt: skip
        stdout, _ = await proc.communicate()
    try:
        delay = yaml.safe_load(stdout.decode()).get("delay_seconds")
    except (yaml.YAMLError, AttributeError):
        delay = None
    return proc.returncode or 0, delay


def _tally(name: str, probes: list[Probe], stop: float, grace: float) -> AgentResult:
    """Count an agent's probes; those sent in the last `grace` seconds may still be on their way."""
    result = AgentResult(name)
    for p in probes:
        done = p.status in {Status.OK, Status.LATE}
        if not done and (p.sent_at is None or p.sent_at > stop - grace):
            result.in_flight_at_stop += 1
            continue
        result.sent += 1
        if p.status is Status.OK:
            result.ok += 1
            if p.delay_seconds is not None:
                result.delays.append(p.delay_seconds)
        elif p.status is Status.LATE:
            result.late += 1
        elif p.status is Status.FAILED:
            result.failed += 1
        else:  # sent, overdue or lost long ago: not delivered to its owner in time
            result.lost += 1
    return result


class _Run:
    """One run of the scenario: its configs, processes and what it saw, step by step."""

    def __init__(self, stack: MailStack, work: Path, max_age: float, log: Callable[[str], None]):
        os.environ["MP_TEST_SECRET"] = SECRET
        self.stack, self.work, self.max_age, self.log = stack, work, max_age, log
        self.configs = {n: _config(stack, work, n, max_age) for n in ("a", "b")}
        hold = {stack.hold_header: "yes"}
        self.configs["c"] = _config(stack, work, "c", max_age, extra_headers=hold)
        self.configs["once"] = _config(stack, work, "a", max_age, file="once")  # own state
        self.agents = {n: AgentProcess(self.configs[n], work / f"{n}.log") for n in "abc"}
        self.view = MailboxView(stack)
        self.held_before = set(stack.held_queue_ids())
        self.stale_sent_at: dict[str, float] = {}
        self.stale_gone_at: dict[str, float] = {}
        self.once: list[tuple[int, float | None]] = []
        self.problems: list[str] = []
        self.ordinary_before: list[tuple[str, str]] = []
        self.started = self.stopped = 0.0
        self.scrapes: dict[str, str] = {}

    async def seed(self) -> None:
        """Ordinary mail in the shared mailbox, one of it read and flagged."""
        await asyncio.to_thread(_send_ordinary, self.stack, ORDINARY)
        await wait_until(lambda: len(self.view.ordinary()) == ORDINARY, 20, "ordinary mail")
        await asyncio.to_thread(_mark_one_read, self.stack)
        self.ordinary_before = self.view.ordinary()

    async def leave_stale_probes(self) -> list[str]:
        """Run C until Postfix holds probes of it, kill it; the held queue ids."""
        await self.agents["c"].start()
        state = self.work / "state-c"
        await wait_until(lambda: len(read(state, Ledger.in_flight) or []) >= STALE_PROBES, 30,
                         "the doomed agent's held probes")  # fmt: skip
        await self.agents["c"].signal(signal.SIGKILL)
        for p in read(state, Ledger.in_flight):
            self.stale_sent_at[p.probe_id] = p.sent_at
        self.log(f"agent C killed with {len(self.stale_sent_at)} probes held in Postfix")
        return sorted(set(self.stack.held_queue_ids()) - self.held_before)

    async def share(self, duration: float, probe_once_every: float) -> None:
        """A and B run, probe-once now and then, the mailbox watched, for `duration` seconds."""
        held = await self.leave_stale_probes()
        await self.agents["a"].start()
        await self.agents["b"].start()
        self.started = time.time()
        for queue_id in held:
            self.stack.release(queue_id)
        self.log(f"released {len(held)} held probes of the dead agent into the shared mailbox")
        loop = asyncio.get_running_loop()
        end, next_once = loop.time() + duration, loop.time() + 2.0
        while loop.time() < end:
            if loop.time() >= next_once:
                next_once += probe_once_every
                self.once.append(await _probe_once(self.configs["once"], self.work / "once.log"))
            present = {pid for _, pid, _ in await asyncio.to_thread(self.view.snapshot) if pid}
            now = time.time()
            for pid in self.stale_sent_at.keys() - present - self.stale_gone_at.keys():
                self.stale_gone_at[pid] = now
            await asyncio.sleep(0.5)
        self.stopped = time.time()
        for n in ("a", "b"):
            self.scrapes[n] = await scrape(_port(self.configs[n]))
            code = await self.agents[n].signal(signal.SIGTERM)
            if code != 0:
                self.problems.append(f"agent {n.upper()} exited {code} on SIGTERM")

    async def cleanup(self) -> None:
        for agent in self.agents.values():
            await agent.ensure_gone()
        for queue_id in set(self.stack.held_queue_ids()) - self.held_before:
            self.stack.release(queue_id)

    def judge_agents(self) -> dict[str, AgentResult]:
        results: dict[str, AgentResult] = {}
        for n in ("a", "b"):
            probes = read(self.work / f"state-{n}", lambda ledger: ledger.probes(0, math.inf))
            res = _tally(n.upper(), probes or [], self.stopped, grace=10.0)
            text = self.scrapes[n]
            res.foreign_removed = _total(text, "mailprobe_foreign_probes_total", 'action="removed"')
            res.unremoved = _total(text, "mailprobe_probes_unremoved_total")
            results[n] = res
            if res.sent == 0:
                self.problems.append(f"agent {res.name} sent no probes")
            for kind in ("late", "lost", "failed"):
                if getattr(res, kind):
                    self.problems.append(f"agent {res.name}: {getattr(res, kind)} probe(s) {kind}")
            if res.unremoved:
                self.problems.append(f"agent {res.name}: {res.unremoved:g} probe(s) left unremoved")
        # Each stale probe is removed by one of A and B, counted by the one that removed it;
        # both count it when they removed it at the same instant, before either had seen the
        # other's probes (probes/foreign.py), which only the first seconds of a run allow.
        removed, stale = sum(r.foreign_removed for r in results.values()), len(self.stale_sent_at)
        if not stale <= removed <= 2 * stale:
            self.problems.append(f"foreign removals counted {removed:g}, stale probes {stale}")
        return results

    def judge_stale(self) -> None:
        if len(self.stale_sent_at) < STALE_PROBES:
            self.problems.append(f"only {len(self.stale_sent_at)} stale probes")
        for pid, sent_at in self.stale_sent_at.items():
            gone, due = self.stale_gone_at.get(pid), sent_at + self.max_age
            if gone is None:
                self.problems.append(f"stale probe {pid} never removed")
            elif gone < due:
                self.problems.append(f"stale probe {pid} removed {due - gone:.1f}s too early")
            elif gone > max(due, self.started) + 15.0:
                self.problems.append(f"stale probe {pid} removed {gone - due:.1f}s late")

    def judge_once(self) -> list[float]:
        for i, (code, delay) in enumerate(self.once, 1):
            if code != 0 or delay is None:
                self.problems.append(f"probe-once run {i} exited {code}")
        if not self.once:
            self.problems.append("probe-once never ran")
        return [d for code, d in self.once if code == 0 and d is not None]


async def run_shared_mailbox(
    stack: MailStack,
    work: Path,
    duration: float,
    *,
    max_age: float = 20.0,
    probe_once_every: float = 10.0,
    log: Callable[[str], None] = print,
) -> SharedMailboxResult:
    """Run the shared-mailbox scenario for `duration` seconds and return what was seen."""
    run = _Run(stack, work, max_age, log)
    await run.seed()
    try:
        await run.share(duration, probe_once_every)
    finally:
        await run.cleanup()
    agents = run.judge_agents()
    run.judge_stale()
    once_delays = run.judge_once()
    ordinary_after = run.view.ordinary()
    if ordinary_after != run.ordinary_before:
        run.problems.append(f"ordinary mail changed: {run.ordinary_before} -> {ordinary_after}")
    return SharedMailboxResult(
        duration=run.stopped - run.started, max_age=max_age, agents=agents,
        probe_once_runs=len(run.once), probe_once_ok=len(once_delays),
        probe_once_delays=once_delays, stale_sent_at=run.stale_sent_at,
        stale_gone_at=run.stale_gone_at, ordinary_before=run.ordinary_before,
        ordinary_after=ordinary_after,
        probes_left=[pid for _, pid, _ in run.view.snapshot() if pid], problems=run.problems,
    )  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
