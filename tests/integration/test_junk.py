"""The anti-spam clause on a real Postfix + Dovecot: probes the stack's Sieve rule files into Junk
are found there, counted junked, removed, and breach the clause in the report while the route's
connectivity stays up; the other mail in Junk (ordinary mail, another agent's probe) is left
exactly as it was; and Dovecot's own count of the watcher's commands for each probe stays within
the account's budget."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from bench.imap_commands import CommandLog, enable
from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.checks import Check
from mailprobe.agent.clauses import Verdict
from mailprobe.agent.config import Config
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.probe_once import round_trip
from mailprobe.agent.report import build_report
from mailprobe.agent.report_render import render_text
from mailprobe.agent.runtime import Agent
from mailprobe.agent.windows import month_of
from mailprobe.probes.message import build_probe, new_probe_id
from tests.helpers.agents import sample
from tests.helpers.configs import SECRET, account, make_config
from tests.helpers.waits import wait_until
from tests.mailstack import MailStack

SENDER, RECEIVER = "bob@probe.test", "carol@probe.test"
# Commands per probe, tighter than the default. The minute's stays the default: back-to-back
# probes under a minute's budget as small as one probe's wait for the next minute.
BUDGET = 60


def _config(stack: MailStack, state: Path) -> Config:
    common = {"host": stack.host, "ca_file": stack.ca_file, "smtp_port": stack.submission_port,
              "imap_port": stack.imap_port}  # fmt: skip
    carol = account(RECEIVER, stack.users[RECEIVER], **common)
    carol["imap"]["max_commands_per_probe"] = BUDGET
    return make_config(
        {"carol": carol,
         "bob": account(SENDER, stack.users[SENDER], **common)},
        [{"name": "b2c", "from": "bob", "to": "carol", "interval": "1d"}],
        state_dir=state,
    )  # fmt: skip


def _junk_files(stack: MailStack) -> dict[str, tuple[str, bytes]]:
    """Every message in carol's Junk folder: its flags and bytes, by the file's base name.

    Dovecot moves a file from new/ to cur/ (adding ``:2,`` and the flags to its name) when any
    session first looks into the folder: its bookkeeping, not a change to the message.
    """
    root = stack.maildir(RECEIVER) / f".{stack.junk_folder}"
    out: dict[str, tuple[str, bytes]] = {}
    for sub in ("new", "cur"):
        for path in (root / sub).iterdir() if (root / sub).exists() else ():
            base, _, flags = path.name.partition(":2,")
            out[base] = (flags, path.read_bytes())
    return out


async def test_probes_filed_as_spam_are_counted_reported_and_nothing_else_in_junk_moves(
    mailstack: MailStack, tmp_path: Path
) -> None:
    """Two probes marked for the stack's Sieve rule land in Junk: both are recorded junked with
    their delay, counted in mailprobe_probes_junked_total and removed; a third, unmarked, arrives
    in the inbox (as does any the route's own grid sends). Each cost at most the budget's
    commands by Dovecot's log. The report's anti-spam clause is breached with the fee waived,
    the route's connectivity is not. The ordinary mail and the other agent's probe in Junk keep
    their files, contents and flags."""
    spam = b"From: x@spam.test\r\nTo: carol@probe.test\r\nSubject: cheap pills\r\n\r\nbuy\r\n"
    mailstack.append_raw(RECEIVER, spam, folder=mailstack.junk_folder)
    _, foreign = build_probe(secret=SECRET.encode(), route="b2c", sender=SENDER,
                             recipient=RECEIVER, sent_at=time.time(), probe_id=new_probe_id(),
                             agent="another-agent")  # fmt: skip
    mailstack.append_raw(RECEIVER, foreign, folder=mailstack.junk_folder)
    before = _junk_files(mailstack)
    assert len(before) == 2

    enable(mailstack)  # Dovecot logs every command it finished (idempotent)
    commands = CommandLog(mailstack.layout.dovecot_log)
    state = tmp_path / "state"
    agent = Agent(_config(mailstack, state), serve_http=False)
    task = asyncio.ensure_future(agent.run())
    spent: list[int] = []
    try:
        assert await agent.watchers.wait_up(["carol"], 15)
        # The route's own grid may send one probe of its own at start: into the inbox, and
        # before the probes whose commands are counted.
        await wait_until(lambda: agent.inflight == 0, 30, "the grid's first probe")
        route = agent.config.routes[0]

        async def trip(headers: dict[str, str]) -> Probe:
            agent.extra_headers = headers
            mark = commands.offset()
            probe = await round_trip(agent, route, timeout=30)
            # Dovecot logs an IDLE when it ends: the one this probe woke ends before it is seen.
            await asyncio.sleep(0.5)
            spent.append(sum(commands.commands(RECEIVER, mark).values()))
            return probe

        junked = [await trip({mailstack.junk_header: "yes"}) for _ in range(2)]
        inbox = await trip({})
        assert sample(agent, "mailprobe_probes_junked_total", route="b2c") == 2
        received = sample(agent, "mailprobe_probes_received_total", route="b2c")
        assert received in (3, 4)
        for check in (Check.CONNECTIVITY, Check.RECEIVE):  # delivered: connectivity holds
            assert sample(agent, "mailprobe_check_up", route="b2c", check=check) == 1
    finally:
        agent.stop()
        await asyncio.wait_for(task, 15)

    assert all(0 < n <= BUDGET for n in spent), spent

    for probe in junked:
        assert (probe.status, probe.junked) == (Status.OK, True), probe
        assert probe.delay_seconds is not None
        assert probe.arrival_error_seconds is not None
        # Found at the junk folder's first check, 2 s after sending: within a second of it.
        assert 0 < probe.delay_seconds < 3.0
    assert (inbox.status, inbox.junked) == (Status.OK, False)
    assert inbox.arrival_error_seconds is not None
    assert inbox.arrival_error_seconds < 0.05

    assert _junk_files(mailstack) == before  # the same messages, bytes and flags (none)
    assert not mailstack.delivered(RECEIVER, b"X-Mailprobe-Junk", folder=mailstack.junk_folder)

    _assert_report(state, agent.config, received)


def _assert_report(state: Path, config: Config, received: float) -> None:
    """The month's report: anti-spam breached with the fee waived, nothing else owed, no outage."""
    with Ledger.open(state / LEDGER_FILE) as ledger:
        report = build_report(ledger, config.sla, month_of(time.time(), "UTC"),
                              routes=["b2c"])  # fmt: skip
    clauses = {c.clause: c for c in report.scopes[0].clauses}
    clause = clauses["anti_spam"]
    assert (clause.measured, clause.verdict) == (2.0, Verdict.BREACHED)
    # Of the probes delivered while the junk folder was watched: the three trips, and the
    # scheduler's own probe when it was in time (not found at a reconnect, say).
    assert re.search(rf"2 of [3-{received:.0f}] delivered probes filed into the junk folder",
                     clause.detail), clause.detail  # fmt: skip
    assert clauses["disconnection"].measured == 0
    assert clauses["disconnection"].verdict is not Verdict.BREACHED
    assert not report.outages
    assert [(o.kind, o.clauses) for o in report.remedy.owed] == [("fee_waived", ("anti_spam",))]
    text = render_text(report)
    assert "Anti-spam: probes filed as spam" in text
    assert "monthly fee for" in text
    assert "waived" in text
