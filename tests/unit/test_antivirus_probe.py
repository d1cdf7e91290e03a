"""The EICAR probe and what a delivered one shows: built beside the normal probe, judged by parts."""

from __future__ import annotations

import email
import os
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from mailprobe.agent.antivirus import AntivirusRunner
from mailprobe.agent.antivirus_test import AntivirusTest, Outcome
from mailprobe.agent.config import parse_config
from mailprobe.probes.antivirus import (
    ATTACHMENT_NAME,
    Delivery,
    build_eicar_probe,
    eicar,
    inspect_delivery,
)
from mailprobe.probes.message import build_probe, verify_probe
from tests.helpers.clock import FakeClock

SECRET = b"k"
ARGS = {"secret": SECRET, "route": "r", "sender": "a@x.test", "recipient": "b@x.test",
        "sent_at": 1.7e9, "agent": "agent-1"}  # fmt: skip


def test_the_eicar_probe_is_a_signed_probe_with_the_test_file_attached() -> None:
    """It verifies like any probe and carries the 68-byte test file as eicar.com."""
    stamp, raw = build_eicar_probe(**ARGS)  # type: ignore[arg-type]
    assert verify_probe(raw, SECRET) == stamp
    msg = email.message_from_bytes(raw, policy=SMTP)
    (part,) = [p for p in msg.walk() if p.get_filename() == ATTACHMENT_NAME]
    assert part.get_payload(decode=True) == eicar()
    assert len(eicar()) == 68
    assert inspect_delivery(raw) is Delivery.INTACT


def test_a_normal_probe_never_carries_the_test_file() -> None:
    """Only build_eicar_probe attaches it: the ordinary probe has no attachment at all."""
    _, raw = build_probe(**ARGS)  # type: ignore[arg-type]
    assert b"EICAR" not in raw
    assert inspect_delivery(raw) is Delivery.STRIPPED


def _without_attachment(raw: bytes, notice: bool) -> bytes:
    msg = email.message_from_bytes(raw, policy=SMTP)
    payload = [p for p in msg.get_payload() if p.get_filename() != ATTACHMENT_NAME]
    if notice:
        note = EmailMessage()
        note.set_content("virus removed", disposition="attachment", filename="removed.txt")
        payload.append(note)
    msg.set_payload(payload)
    return msg.as_bytes()


def test_a_delivery_shows_whether_the_file_was_stripped_or_replaced() -> None:
    """No attachment left: stripped; another attachment in its place: replaced."""
    _, raw = build_eicar_probe(**ARGS)  # type: ignore[arg-type]
    assert inspect_delivery(_without_attachment(raw, notice=False)) is Delivery.STRIPPED
    assert inspect_delivery(_without_attachment(raw, notice=True)) is Delivery.REPLACED
    assert inspect_delivery(b"\xff\xfe garbage") is Delivery.STRIPPED


async def test_a_test_not_seen_by_its_deadline_is_not_seen(tmp_path: Path) -> None:
    """Pending tests past the route's deadline are decided not_seen, once."""
    os.environ["MP_AV_PW"] = "pw"
    os.environ["MP_AV_SECRET"] = "s"
    endpoint = {"host": "127.0.0.1", "port": 1, "username": "u", "password_env": "MP_AV_PW"}
    config = parse_config({
        "agent": {"secret_env": "MP_AV_SECRET", "state_dir": str(tmp_path)},
        "accounts": {"a": {"address": "a@x.test", "smtp": endpoint, "imap": endpoint}},
        "routes": [{"name": "r", "from": "a", "to": "a", "antivirus": {"deadline": "10m"}}],
    })  # fmt: skip
    recorded: list[AntivirusTest] = []
    clock = FakeClock()

    async def clean(route: object) -> None:
        return None

    runner = AntivirusRunner(config, SECRET, "agent-1", clock, recorded.append, clean)
    runner.restore([AntivirusTest("a" * 32, "r", clock.time() - 300.0)])
    runner.sweep(clock.time())
    assert recorded == []
    runner.sweep(clock.time() + 301.0)
    runner.sweep(clock.time() + 400.0)
    assert [t.outcome for t in recorded] == [Outcome.NOT_SEEN]
    assert runner.pending == {}
