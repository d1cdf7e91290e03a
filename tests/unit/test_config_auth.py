"""The `auth:` section of an endpoint: one token source, secrets never inline, every problem with
its key path, the extras a flow needs named, and its secrets handed to the log scrubber."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from mailprobe.agent import config_auth, logs
from mailprobe.agent.config import ConfigError, parse_config
from mailprobe.agent.endpoints import imap_endpoint, smtp_endpoint

MS = {
    "tenant": "contoso.onmicrosoft.com",
    "client_id": "11111111-2222",
    "client_secret_env": "MP_MS_SECRET",
}


def _data(imap: dict[str, Any] | None = None, smtp: dict[str, Any] | None = None) -> dict[str, Any]:
    os.environ.setdefault("MP_SIGN", "signing-secret")
    os.environ["MP_MS_SECRET"] = "ms-client-secret-value"
    base = {"host": "mail.example.com", "port": 993, "username": "probe@example.com"}
    return {
        "agent": {"secret_env": "MP_SIGN", "state_dir": "/tmp/mp-auth-test"},
        "accounts": {"p": {
            "address": "probe@example.com",
            "imap": {**base, **(imap if imap is not None else {"auth": {"microsoft": MS}})},
            "smtp": {**base, "port": 465, **(smtp if smtp is not None else {"auth": {"microsoft": MS}})},
        }},
        "routes": [{"name": "r", "from": "p", "to": "p"}],
    }  # fmt: skip


def _problems(data: dict[str, Any], check_secrets: bool = True) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, check_secrets=check_secrets)
    return caught.value.problems


def test_an_auth_section_validates_and_reaches_the_endpoints() -> None:
    """With auth, both endpoints sign in with a token (SMTP as the username, IMAP too)."""
    config = parse_config(_data())
    account = config.accounts["p"]
    assert account.imap is not None
    assert account.imap.auth is not None
    assert account.imap.auth.kind == "microsoft"
    assert account.imap.auth.microsoft is not None
    assert account.imap.auth.microsoft.scope == "https://outlook.office365.com/.default"
    assert account.imap.auth.microsoft.authority_url == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    )
    assert imap_endpoint(account.imap, account.address).oauth2 is not None
    assert account.smtp is not None
    smtp = smtp_endpoint(account.smtp, address=account.address)
    assert smtp.oauth2 is not None
    assert smtp.username == "probe@example.com"


@pytest.mark.parametrize(
    ("flow", "key", "instead"),
    [
        ({**MS, "client_secret": "s3cret"}, "microsoft.client_secret", "client_secret_env or client_secret_file"),
        ({"refresh_token": "1//abc", "client_id": "x"}, "google.refresh_token", "refresh_token_env"),
        ({"private_key": "-----BEGIN", **MS}, "microsoft.private_key", "private_key_env"),
    ],
)  # fmt: skip
def test_secrets_written_inline_are_refused_with_where_they_go(
    flow: dict[str, Any], key: str, instead: str
) -> None:
    """A client secret, refresh token or key inline is an error naming *_env and *_file."""
    kind = key.split(".", maxsplit=1)[0]
    problems = _problems(_data(imap={"auth": {kind: flow}}), check_secrets=False)
    assert any(
        p.startswith(f"accounts.p.imap.auth.{key}: secrets are never written inline")
        and instead in p
        for p in problems
    ), problems


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({}, "auth.command: give one token source: command, file, microsoft or google"),
        ({"file": "/t", "command": ["x"]}, "(got command, file)"),
        ({"file": "/t", "max_age": "5m"}, "auth.max_age: only for a command"),
        ({"command": "unbalanced 'quote"}, "cannot split into words"),
        ({"command": []}, "the command is empty"),
        ({"file": "/t", "mechanism": "plain"}, "auth.mechanism:"),
        ({"token": "eyJ..."}, "auth.token: secrets are never written inline: give the token's file"),
        ({"microsoft": {"tenant": "t", "client_id": "c"}}, "auth.microsoft.client_secret_file: give client_secret_env/_file, or certificate_file"),
        ({"microsoft": {**MS, "certificate_file": "/c.pem"}}, "auth.microsoft.certificate_file: give a client secret or a certificate, not both"),
        ({"microsoft": {**MS, "authority": "http://login.example"}}, "is not an https:// URL"),
        ({"google": {"client_id": "c", "client_secret_env": "X"}}, "auth.google.refresh_token_file: give service_account_file"),
        ({"google": {"service_account_file": "/k.json", "client_id": "c"}}, "auth.google.client_id: give a service account or an installed app"),
    ],
)  # fmt: skip
def test_auth_mistakes_name_their_key(auth: dict[str, Any], problem: str) -> None:
    """Each mistake is one line with its key path."""
    problems = _problems(_data(imap={"auth": auth}), check_secrets=False)
    assert any(problem in p and p.startswith("accounts.p.imap.") for p in problems), problems


def test_a_password_and_an_auth_section_are_not_both_given() -> None:
    """One way to sign in per endpoint."""
    problems = _problems(
        _data(imap={"password_env": "MP_X", "auth": {"file": "/t"}}), check_secrets=False
    )
    assert "accounts.p.imap.auth: give a password or an auth section, not both" in problems


def test_a_username_without_password_or_auth_says_all_three() -> None:
    """The message names every way to sign in."""
    problems = _problems(_data(imap={}), check_secrets=False)
    assert (
        "accounts.p.imap.password_env: username needs password_env, password_file or auth"
        in problems
    )


def test_secret_problems_of_a_flow_are_reported_with_the_others(tmp_path: Path) -> None:
    """check-config reads the flow's secrets: an unset variable and a missing file are named."""
    data = _data(imap={"auth": {"microsoft": {**MS, "client_secret_env": "MP_UNSET_SECRET"}}},
                 smtp={"auth": {"command": ["/nonexistent/get-token"]}})  # fmt: skip
    os.environ.pop("MP_UNSET_SECRET", None)
    problems = _problems(data)
    assert (
        "accounts.p.imap.auth.microsoft: environment variable MP_UNSET_SECRET is not set"
        in problems
    )
    assert "accounts.p.smtp.auth.command: program '/nonexistent/get-token' not found" in problems


def test_a_missing_extra_is_named_with_its_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without msal installed, check-config says which extra installs it."""
    monkeypatch.setattr(config_auth, "installed", lambda module: module != "msal")
    problems = _problems(_data())
    assert (
        "accounts.p.imap.auth.microsoft: needs msal, not installed: "
        "pip install 'mailprobe[microsoft]'"
    ) in problems


def test_flow_secrets_are_scrubbed_from_logs(tmp_path: Path) -> None:
    """The client secret, a refresh token and each line of a private key become ***."""
    key = tmp_path / "app.key"
    key.write_text(
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
        "-----END PRIVATE KEY-----\n"
    )
    cert = tmp_path / "app.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    os.environ["MP_G_SECRET"], os.environ["MP_G_REFRESH"] = "google-client-secret", "1//refresh-xyz"
    google = {
        "client_id": "c",
        "client_secret_env": "MP_G_SECRET",
        "refresh_token_env": "MP_G_REFRESH",
    }
    cert_flow = {"tenant": "t", "client_id": "c", "certificate_file": str(cert),
                 "private_key_file": str(key)}  # fmt: skip
    config = parse_config(
        _data(imap={"auth": {"google": google}}, smtp={"auth": {"microsoft": cert_flow}}),
        check_secrets=False,
    )
    secrets, _ = logs.config_logins(config)
    scrubber = logs.Scrubber(secrets)
    line = (
        "refresh failed for google-client-secret with 1//refresh-xyz, key "
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    )
    assert scrubber.scrub(line) == "refresh failed for *** with ***, key ***"
    record = logging.LogRecord("x", logging.WARNING, "", 0, "%s", ("1//refresh-xyz",), None)
    scrubber.filter(record)
    assert record.getMessage() == "***"
