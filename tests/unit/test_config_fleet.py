"""agent.vantage and fleet.quorum: read and checked at the config boundary like every key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailprobe.agent.config import ConfigError, parse_config
from mailprobe.agent.config_fleet import DEFAULT_QUORUM, quorum_for


def data(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s3cret\n")
    agent = {"listen": "127.0.0.1:0", "state_dir": str(tmp_path / "state"),
             "secret_file": str(tmp_path / "secret"), **sections.pop("agent", {})}  # fmt: skip
    return {
        "agent": agent,
        "accounts": {"probe": {"address": "probe@example.com",
                               "smtp": {"host": "127.0.0.1", "port": 1, "security": "plain"},
                               "imap": {"host": "127.0.0.1", "port": 2, "security": "plain"}}},
        "routes": [{"name": "internal", "from": "probe", "to": "probe"}],
        **sections,
    }  # fmt: skip


def test_vantage_and_quorum_are_read(tmp_path: Path) -> None:
    """Name, site and region of the vantage; the quorum."""
    config = parse_config(data(tmp_path, agent={"vantage": {"name": "berlin-1", "site": "HQ 2",
                                                            "region": "eu-central"}},
                               fleet={"quorum": 3}))  # fmt: skip
    assert (config.agent.vantage.name, config.agent.vantage.site) == ("berlin-1", "HQ 2")
    assert config.agent.vantage.region == "eu-central"
    assert config.fleet.quorum == 3


def test_without_them_the_vantage_is_unnamed_and_the_quorum_two(tmp_path: Path) -> None:
    """Both sections are optional: one agent on its own needs neither."""
    config = parse_config(data(tmp_path))
    assert config.agent.vantage.name is None
    assert config.fleet.quorum == DEFAULT_QUORUM == 2


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"agent": {"vantage": {"name": "two words"}}}, "agent.vantage.name: 'two words': a vantage name"),
        ({"agent": {"vantage": {"name": "x" * 65}}}, "agent.vantage.name:"),
        ({"agent": {"vantage": {"name": 7}}}, "agent.vantage.name:"),
        ({"agent": {"vantage": {"site": "a\nb"}}}, "agent.vantage.site: must not contain control"),
        ({"agent": {"vantage": {"zone": "a"}}}, "agent.vantage.zone: unknown key"),
        ({"fleet": {"quorum": 0}}, "fleet.quorum:"),
        ({"fleet": {"quorum": True}}, "fleet.quorum:"),
        ({"fleet": {"quorum": 2.0}}, "fleet.quorum:"),
        ({"fleet": {"k": 2}}, "fleet.k: unknown key"),
    ],
)  # fmt: skip
def test_a_bad_vantage_or_quorum_names_its_key(
    tmp_path: Path, sections: dict[str, Any], expected: str
) -> None:
    """Each mistake is a config problem with its key path."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data(tmp_path, **sections))
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(("quorum", "vantages", "effective"),
                         [(2, 1, 1), (2, 2, 2), (2, 3, 2), (3, 2, 2), (1, 5, 1), (2, 0, 1)])  # fmt: skip
def test_the_quorum_in_effect_is_never_more_than_the_fleet(
    quorum: int, vantages: int, effective: int
) -> None:
    """k of n with k clamped to n: a single vantage counts every fault it sees."""
    assert quorum_for(quorum, vantages) == effective

