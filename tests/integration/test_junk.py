"""The anti-spam clause on a real Postfix + Dovecot: probes the stack's Sieve rule files into Junk
are found there, counted junked, removed, and breach the clause in the report; the other mail in
Junk (ordinary mail, another agent's probe) is left exactly as it was."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Status
from mailprobe.agent.report import build_report
from mailprobe.agent.report_render import render_text
from mailprobe.agent.runtime import Agent
from mailprobe.agent.windows import month_of
from mailprobe.probes.message import build_probe, new_probe_id
from tests.helpers.agents import sample
from tests.helpers.configs import SECRET, account, make_config
from tests.mailstack import MailStack

SENDER, RECEIVER = "bob@probe.test", "carol@probe.test"


def _config(stack: MailStack, state: Path) -> object:
    common = {"host": stack.host, "ca_file": stack.ca_file, "smtp_port": stack.submission_port,
              "imap_port": stack.imap_port}  # fmt: skip
    return make_config(
        {"carol": account(RECEIVER, stack.users[RECEIVER], **common),
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
    in the inbox (as does any the route's own grid sends). The report's anti-spam clause is breached with the fee waived. The ordinary mail
    and the other agent's probe in Junk keep their files, contents and flags."""
    spam = b"From: x@spam.test\r\nTo: carol@probe.test\r\nSubject: cheap pills\r\n\r\nbuy\r\n"
    mailstack.append_raw(RECEIVER, spam, folder=mailstack.junk_folder)
    _, foreign = build_probe(secret=SECRET.encode(), route="b2c", sender=SENDER,
                             recipient=RECEIVER, sent_at=time.time(), probe_id=new_probe_id(),
                             agent="another-agent")  # fmt: skip
    mailstack.append_raw(RECEIVER, foreign, folder=mailstack.junk_folder)
    before = _junk_files(mailstack)
    assert len(before) == 2

    state = tmp_path / "state"
    agent = Agent(_config(mailstack, state), serve_http=False)  # type: ignore[arg-type]
    task = asyncio.ensure_future(agent.run())
    try:
        assert await agent.watchers.wait_up(["carol"], 15)
        route = agent.config.routes[0]
        agent.extra_headers = {mailstack.junk_header: "yes"}
        junked = [await agent.round_trip(route, timeout=30) for _ in range(2)]
        agent.extra_headers = {}
        inbox = await agent.round_trip(route, timeout=30)
        assert sample(agent, "mailprobe_probes_junked_total", route="b2c") == 2
        # The route's own grid may have sent one probe of its own at start: into the inbox.
        received = sample(agent, "mailprobe_probes_received_total", route="b2c")
        assert received in (3, 4)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 15)

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

    with Ledger.open(state / LEDGER_FILE) as ledger:
        report = build_report(ledger, agent.config.sla, month_of(time.time(), "UTC"),
                              routes=["b2c"])  # fmt: skip
    clause = next(c for c in report.scopes[0].clauses if c.clause == "anti_spam")
    assert (clause.measured, clause.verdict) == (2.0, "breached")
    assert f"2 of {received:.0f} delivered probes filed into the junk folder" in clause.detail
    assert [o.kind for o in report.remedy.owed] == ["fee_waived"]
    text = render_text(report)
    assert "Anti-spam: probes filed as spam" in text
    assert "monthly fee for" in text and "waived" in text
