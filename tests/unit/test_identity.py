"""The agent's instance identity: created once in the state dir, read back, never shared."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mailprobe.agent.config import parse_config
from mailprobe.agent.identity import FILE_NAME, IdentityError, ephemeral, load_or_create
from mailprobe.probes.message import AGENT_ID, build_probe, verify_probe


def test_identity_is_created_once_and_read_back(tmp_path: Path) -> None:
    """The first start creates the file; every later start (a restart) gets the same id."""
    state = tmp_path / "state"
    first = load_or_create(state)
    assert AGENT_ID.fullmatch(first)
    assert (state / FILE_NAME).read_text().strip() == first
    assert load_or_create(state) == first
    assert [p.name for p in state.iterdir()] == [FILE_NAME]  # no temporary file left


def test_agents_starting_at_once_agree_on_one_identity(tmp_path: Path) -> None:
    """Concurrent first starts on one state dir never end with two identities."""
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(load_or_create(tmp_path)))
               for _ in range(16)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


@pytest.mark.parametrize("content", [b"", b"two words\n", b"\xff\xfe\n", b"x" * 65])
def test_damaged_identity_file_is_an_error_naming_it(tmp_path: Path, content: bytes) -> None:
    """An edited or damaged file is not silently replaced (probes in flight would be orphaned)."""
    (tmp_path / FILE_NAME).write_bytes(content)
    with pytest.raises(IdentityError, match=FILE_NAME):
        load_or_create(tmp_path)
    assert (tmp_path / FILE_NAME).read_bytes() == content


def test_probe_once_identity_is_fresh_and_not_the_daemons(tmp_path: Path) -> None:
    """Each probe-once run gets its own identity, never the stored one, never stored."""
    daemon = load_or_create(tmp_path)
    runs = {ephemeral() for _ in range(50)}
    assert len(runs) == 50
    assert daemon not in runs
    assert all(AGENT_ID.fullmatch(r) for r in runs)
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]


def test_identity_signs_probes(tmp_path: Path) -> None:
    """The stored identity is a valid probe header value and comes back from verification."""
    me = load_or_create(tmp_path)
    _, raw = build_probe(secret=b"k", route="r", sender="a@x", recipient="b@y", sent_at=1.0,
                         agent=me)  # fmt: skip
    stamp = verify_probe(raw, b"k")
    assert stamp is not None
    assert stamp.agent == me


def test_foreign_probe_max_age_defaults_to_six_hours_and_takes_a_duration() -> None:
    """agent.foreign_probe_max_age: 6 h unless set; a duration with a unit."""
    data = {"agent": {"secret_env": "MP_ID_SECRET"},
            "accounts": {"a": {"address": "a@x.test",
                               "imap": {"host": "h", "port": 993}}},
            "routes": [{"name": "r", "from": "a", "to": "a"}]}  # fmt: skip
    data["accounts"]["a"]["smtp"] = {"host": "h", "port": 465}  # type: ignore[index]
    assert parse_config(data, check_secrets=False).agent.foreign_probe_max_age == 6 * 3600
    data["agent"]["foreign_probe_max_age"] = "90m"  # type: ignore[index]
    assert parse_config(data, check_secrets=False).agent.foreign_probe_max_age == 5400
