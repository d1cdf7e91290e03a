"""Provider presets: each validates as a config, fills what its provider documents, and every
field it fills is overridden by what the account gives."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mailprobe.agent.config import Config, ConfigError, parse_config
from mailprobe.agent.presets import PRESETS, PROVIDERS, preset, watch_limits

OAUTH2 = {"gmail", "microsoft365", "outlook"}


def _config(account: dict[str, Any], **others: dict[str, Any]) -> Config:
    """Account p (routed to itself unless another account `q` sends to it)."""
    os.environ.setdefault("MP_SIGN", "signing-secret")
    accounts = {"p": {"address": "probe@example.com", **account}}
    accounts.update(
        {name: {"address": f"{name}@example.com", **acc} for name, acc in others.items()}
    )
    data = {
        "agent": {"secret_env": "MP_SIGN", "state_dir": "/tmp/mp-preset-test"},
        "accounts": accounts,
        "routes": [{"name": "r", "from": "q" if "q" in others else "p", "to": "p"}],
    }
    return parse_config(data, check_secrets=False)


def _sign_in(name: str) -> dict[str, Any]:
    if PRESETS[name].auth == "oauth2":
        return {"auth": {"command": ["get-token"]}}
    return {"password_env": "MP_APP_PASSWORD"}


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_validates_and_fills_both_sides(name: str) -> None:
    """Host, port, security, the login and the junk folder come from the preset."""
    chosen = PRESETS[name]
    config = _config({"provider": name, "smtp": _sign_in(name), "imap": _sign_in(name)})
    account = config.accounts["p"]
    assert account.provider == name
    assert account.smtp is not None
    assert account.imap is not None
    for endpoint, server in ((account.smtp, chosen.smtp), (account.imap, chosen.imap)):
        assert (endpoint.host, endpoint.port, endpoint.security) == (
            server["host"], server["port"], server["security"],
        )  # fmt: skip
        assert endpoint.username == "probe@example.com"
        assert endpoint.verify
    assert account.imap.junk_folder == chosen.junk_folder
    # Implicit TLS on 465/993, STARTTLS on 587: the ports and securities agree.
    assert {(s["port"], s["security"]) for s in (chosen.smtp, chosen.imap)} <= {
        (465, "tls"), (587, "starttls"), (993, "tls"),
    }  # fmt: skip


def test_google_and_microsoft_take_oauth2_the_others_passwords() -> None:
    """The auth kind follows what each provider allows programs."""
    assert {name for name, p in PRESETS.items() if p.auth == "oauth2"} == OAUTH2


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_has_watch_limits_for_the_watcher(name: str) -> None:
    """The watch dict says whether to IDLE and the command budget, positive whole numbers."""
    limits = watch_limits(name)
    assert set(limits) == {"idle", "max_commands_per_probe", "max_commands_per_minute"}
    assert limits["idle"] is True
    assert limits["max_commands_per_probe"] >= limits["max_commands_per_minute"] > 0


def test_every_field_a_preset_fills_is_overridden_by_the_account() -> None:
    """A host, port, security, login, junk folder the account gives wins."""
    config = _config({
        "provider": "zoho",
        "smtp": {"host": "smtppro.zoho.eu", "port": 587, "security": "starttls",
                 "username": "alias@example.com", "password_env": "MP_PW"},
        "imap": {"host": "imappro.zoho.eu", "junk_folder": "Junk", "password_env": "MP_PW",
                 "timeout": "10s", "verify": False},
    })  # fmt: skip
    smtp, imap = config.accounts["p"].smtp, config.accounts["p"].imap
    assert smtp is not None
    assert imap is not None
    assert (smtp.host, smtp.port, smtp.security, smtp.username) == (
        "smtppro.zoho.eu", 587, "starttls", "alias@example.com",
    )  # fmt: skip
    assert (imap.host, imap.port, imap.junk_folder, imap.timeout) == (
        "imappro.zoho.eu", 993, "Junk", 10.0,
    )  # fmt: skip
    assert not imap.verify


def test_an_oauth2_provider_still_takes_a_password_when_given() -> None:
    """An app password on Gmail is the account's choice, not the preset's."""
    config = _config({"provider": "gmail", "smtp": {"password_env": "MP_PW"},
                      "imap": {"password_file": "/etc/mailprobe/pw"}})  # fmt: skip
    assert config.accounts["p"].imap is not None
    assert config.accounts["p"].imap.auth is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("microsoft365", "Microsoft 365 (Exchange Online) signs in with OAuth2: give auth"),
        ("tencent-exmail", "signs in with a password (an app password): give password_env"),
    ],
)
def test_a_side_without_sign_in_says_what_the_provider_takes(name: str, message: str) -> None:
    """Neither auth nor a password: one error per side, naming the provider's way."""
    with pytest.raises(ConfigError) as caught:
        _config({"provider": name})
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == ["accounts.p.smtp.auth", "accounts.p.imap.auth"]
    assert all(message in p for p in problems), problems


def test_a_side_set_to_null_is_dropped() -> None:
    """A receive-only account: `smtp: null` keeps the preset from filling it."""
    sender = {"provider": "fastmail", "smtp": {"password_env": "MP_PW"}, "imap": None}
    config = _config({"provider": "fastmail", "smtp": None, "imap": {"password_env": "MP_PW"}},
                     q=sender)  # fmt: skip
    assert config.accounts["p"].smtp is None
    assert config.accounts["q"].imap is None
    assert config.accounts["q"].smtp is not None


def test_a_route_from_a_preset_account_without_smtp_is_refused() -> None:
    """The cross check knows presets fill smtp, and that null drops it."""
    with pytest.raises(ConfigError) as caught:
        _config({"provider": "fastmail", "smtp": None, "imap": {"password_env": "MP_PW"}})
    assert "routes[0].from: account 'p' has no smtp section" in caught.value.problems


def test_custom_and_no_provider_fill_nothing() -> None:
    """custom is the default: the account writes its servers itself."""
    with pytest.raises(ConfigError) as caught:
        _config({"provider": "custom"})
    assert "routes[0].from: account 'p' has no smtp section" in caught.value.problems
    assert preset("custom") is None
    assert preset(None) is None


def test_an_unknown_provider_lists_the_known_ones() -> None:
    """A typo is an error naming every provider."""
    with pytest.raises(ConfigError) as caught:
        _config({"provider": "gmial", "smtp": None, "imap": None})
    (problem,) = [p for p in caught.value.problems if p.startswith("accounts.p.provider")]
    assert all(name in problem for name in PROVIDERS)
