"""The config keys of the webmail, anti-virus and route-kind clauses, at the config boundary."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mailprobe.agent.config import ConfigError, parse_config
from mailprobe.agent.sla import WebmailPolicy


def _data(**extra: Any) -> dict[str, Any]:
    os.environ["MP_CC_SECRET"] = "s"
    os.environ["MP_CC_PW"] = "pw"
    endpoint = {
        "host": "mail.example.com",
        "port": 465,
        "username": "u",
        "password_env": "MP_CC_PW",
    }
    accounts = {
        "a": {"address": "a@example.com", "smtp": endpoint, "imap": {**endpoint, "port": 993}},
        "b": {"address": "b@example.com", "smtp": endpoint, "imap": {**endpoint, "port": 993}},
        "x": {"address": "x@elsewhere.net", "smtp": endpoint, "imap": {**endpoint, "port": 993}},
    }
    routes = [{"name": "ab", "from": "a", "to": "b"}, {"name": "ax", "from": "a", "to": "x"},
              {"name": "xa", "from": "x", "to": "a", "kind": "internal"}]  # fmt: skip
    return {"agent": {"secret_env": "MP_CC_SECRET"}, "accounts": accounts, "routes": routes,
            **extra}  # fmt: skip


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_route_kind_is_declared_or_derived_from_the_domains() -> None:
    """Same mail domain at both ends: internal; another domain: external; `kind:` wins."""
    config = parse_config(_data())
    assert {r.name: config.route_kind(r) for r in config.routes} == {
        "ab": "internal", "ax": "external", "xa": "internal",
    }  # fmt: skip
    data = _data()
    data["routes"][0]["kind"] = "sideways"
    assert any(p.startswith("routes[0].kind:") for p in _problems(data))


def test_antivirus_tests_are_off_unless_a_route_sets_them() -> None:
    """No route sends EICAR by default; `antivirus: {every: ...}` turns it on, at most once a minute."""
    assert all(r.antivirus is None for r in parse_config(_data()).routes)
    data = _data()
    data["routes"][1]["antivirus"] = {"every": "6h", "deadline": "20m"}
    test = parse_config(data).routes[1].antivirus
    assert test is not None
    assert (test.every, test.deadline) == (21600.0, 1200.0)
    data["routes"][1]["antivirus"] = {"every": "10s", "attach": "x"}
    problems = _problems(data)
    assert "routes[1].antivirus.every: must be at least 1m" in problems
    assert "routes[1].antivirus.attach: unknown key" in problems


def test_webmail_entries_are_part_of_the_config_with_every_problem_at_once() -> None:
    """`webmail:` entries are validated with the rest: key paths, duplicates, the sla limit."""
    checks = [{"name": "w", "url": "https://webmail.example.com/"}]
    config = parse_config(_data(webmail=checks))
    assert [c.name for c in config.webmail] == ["w"]
    assert config.sla.webmail.policy is WebmailPolicy.COUNT
    assert config.sla.webmail.allowed == 2
    bad = _data(
        webmail=[*checks, {"name": "w", "url": "ftp://x"}, {"name": "slow", "url": "https://a/",
                                                            "timeout": "12s", "limit": "5s"}],
        sla={"webmail": {"limit": "15s", "policy": "median"}},
    )  # fmt: skip
    problems = _problems(bad)
    assert any(p.startswith("webmail[1].url:") for p in problems), problems
    assert "webmail[1].name: duplicate webmail name 'w'" in problems
    assert any(p.startswith("sla.webmail.policy:") for p in problems), problems
    bad = _data(webmail=[{"name": "slow", "url": "https://a/", "timeout": "12s", "limit": "5s"}],
                sla={"webmail": {"limit": "15s"}})  # fmt: skip
    assert _problems(bad) == ["webmail[0].timeout: must be longer than sla.webmail.limit (15s)"]


def test_a_webmail_password_that_cannot_be_read_is_a_config_problem() -> None:
    """With secrets checked (run, check-config), a missing login password is named by its key."""
    os.environ.pop("MP_CC_MISSING", None)
    checks = [
        {
            "name": "w",
            "url": "https://a/",
            "login": {"username": "u", "password_env": "MP_CC_MISSING"},
        }
    ]
    problems = _problems(_data(webmail=checks))
    assert problems == ["webmail[0].login.password: environment variable MP_CC_MISSING is not set"]
    assert parse_config(_data(webmail=checks), check_secrets=False).webmail[0].login is not None
