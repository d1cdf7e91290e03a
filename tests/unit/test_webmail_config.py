"""The `webmail:` section: typed, frozen checks; every problem at once, with its key path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from mailprobe.agent.config import ConfigError
from mailprobe.agent.webmail_config import WebmailCheck, parse_webmail
from mailprobe.probes.webmail import BrowserTarget, HttpTarget

GOOD = """
- name: roundcube
  url: https://webmail.example.com/
  expected_text: Inbox
  login: {username: probe@example.com, password_env: MP_WEBMAIL_PW, username_field: _user,
          password_field: _pass}
- name: inbox-browser
  url: https://webmail.example.com/
  mode: browser
  interval: 10m
  timeout: 45s
  ready_selector: "#messagelist"
  login: {username: probe@example.com, password_file: PWFILE, username_selector: "#rcmloginuser",
          password_selector: "#rcmloginpwd", submit_selector: "#rcmloginsubmit"}
"""

BAD = """
- {name: "bad name", url: "ftp://webmail.example.com/", bogus: 1, expected_status: 99}
- {name: slow, url: "https://w.example.com/", timeout: 10s, limit: 10s}
- {name: mixed, url: "https://w.example.com/", ready_selector: "#list"}
- name: fields
  url: https://w.example.com/
  mode: browser
  ready_selector: "#list"
  login: {username: u, password_env: E, username_field: user, password_field: pass}
- name: noready
  url: https://w.example.com/
  mode: browser
  login: {username: u, password_env: E, username_selector: "#u", password_selector: "#p"}
- {name: slow, url: "https://w.example.com/", mode: browser, max_redirects: 3}
- {name: nopw, url: "https://w.example.com/", login: {username: u}}
- {url: "https://w.example.com/", interval: 60}
"""


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MP_WEBMAIL_PW set, and a password file; returns the file."""
    monkeypatch.setenv("MP_WEBMAIL_PW", "env-secret")
    pwfile = tmp_path / "webmail.pw"
    pwfile.write_text("file-secret\n")
    return pwfile


def good(pwfile: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(GOOD.replace("PWFILE", str(pwfile)))
    assert isinstance(data, list)
    return data


def test_a_good_section_parses_to_frozen_checks_with_the_contract_limit(secrets: Path) -> None:
    """Defaults: mode http, 10 s limit, 30 s timeout, 5 min interval; entries are frozen."""
    http, browser = parse_webmail(good(secrets), check_secrets=False)
    assert (http.mode, http.limit, http.timeout, http.interval) == ("http", 10.0, 30.0, 300.0)
    assert (browser.mode, browser.interval, browser.timeout) == ("browser", 600.0, 45.0)
    with pytest.raises(ValidationError):
        http.url = "https://elsewhere.example.com/"  # type: ignore[misc]


def test_an_http_check_becomes_an_http_target_with_its_password(secrets: Path) -> None:
    """target() reads the password from the environment and keeps the form's field names."""
    http = parse_webmail(good(secrets), check_secrets=False)[0]
    target = http.target()
    assert isinstance(target, HttpTarget)
    assert target.login is not None
    assert (target.login.password, target.login.username_field) == ("env-secret", "_user")
    assert (target.expected_text, target.limit, target.timeout) == ("Inbox", 10.0, 30.0)
    assert http.failure_screenshot(Path("/state")) is None


def test_a_browser_check_becomes_a_browser_target_with_its_selectors(secrets: Path) -> None:
    """target() reads the password file; the screenshot lives in state_dir/webmail/NAME-..."""
    browser = parse_webmail(good(secrets), check_secrets=False)[1]
    target = browser.target()
    assert isinstance(target, BrowserTarget)
    assert target.login is not None
    assert (target.login.password, target.login.submit_selector) == ("file-secret", "#rcmloginsubmit")
    assert (target.ready_selector, target.chromium) == ("#messagelist", "/usr/bin/chromium")
    assert browser.failure_screenshot(Path("/state")) == Path(
        "/state/webmail/inbox-browser-last-failure.png"
    )


def test_http_login_fields_default_to_username_and_password(secrets: Path) -> None:
    """Without field names, http mode posts the fields `username` and `password`."""
    (check,) = parse_webmail(
        [{"name": "w", "url": "https://w.example.com/",
          "login": {"username": "u", "password_env": "MP_WEBMAIL_PW"}}]
    )  # fmt: skip
    target = check.target()
    assert isinstance(target, HttpTarget)
    assert target.login is not None
    assert (target.login.username_field, target.login.password_field) == ("username", "password")


def test_every_problem_is_reported_at_once_with_its_key_path() -> None:
    """One ConfigError lists each bad key, by its path under webmail."""
    with pytest.raises(ConfigError) as caught:
        parse_webmail(yaml.safe_load(BAD), check_secrets=False)
    problems = caught.value.problems
    expected_prefixes = [
        "webmail[0].name: use letters",
        "webmail[0].url: 'ftp://webmail.example.com/' is not an http:// or https:// URL",
        "webmail[0].bogus: unknown key",
        "webmail[1].timeout: must be longer than limit (10s)",
        "webmail[2].ready_selector: only for mode browser",
        "webmail[0].expected_status: Input should be greater than or equal to 100",
        "webmail[3].login: username_field, password_field only for mode http",
        "webmail[4].ready_selector: a browser login needs the selector",
        "webmail[5].max_redirects: only for mode http",
        "webmail[6].login.password_env: give password_env or password_file",
        "webmail[7].name: required key is missing",
        "webmail[7].interval: bare number 60",
        "webmail[5].name: duplicate webmail name 'slow'",
    ]
    for prefix in expected_prefixes:
        assert any(p.startswith(prefix) for p in problems), (prefix, problems)
    assert len(problems) == len(expected_prefixes), problems


def test_a_webmail_section_that_is_not_a_list_is_reported() -> None:
    """`webmail:` must be a list of checks; an absent section means none."""
    assert parse_webmail(None) == ()
    with pytest.raises(ConfigError, match=r"^webmail: "):
        parse_webmail({"name": "w", "url": "https://w.example.com/"})


def test_unreadable_secrets_and_missing_files_are_reported(tmp_path: Path) -> None:
    """With check_secrets, an unset password variable and a missing ca_file are problems."""
    data = [{"name": "w", "url": "https://w.example.com/", "ca_file": str(tmp_path / "no.pem"),
             "login": {"username": "u", "password_env": "MP_WEBMAIL_UNSET"}}]  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_webmail(data)
    assert caught.value.problems == [
        "webmail[0].login.password: environment variable MP_WEBMAIL_UNSET is not set",
        f"webmail[0].ca_file: {tmp_path / 'no.pem'} not found",
    ]


def test_a_browser_check_without_the_browser_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Playwright missing: the problem says to install mailprobe[browser]."""
    monkeypatch.setitem(sys.modules, "playwright", None)
    with pytest.raises(ConfigError) as caught:
        parse_webmail([{"name": "w", "url": "https://w.example.com/", "mode": "browser"}])
    assert caught.value.problems == [
        "webmail[0].mode: the browser mode needs the browser extra: "
        "pip install 'mailprobe[browser]'"
    ]


def test_a_browser_check_needs_an_executable_chromium(tmp_path: Path) -> None:
    """A chromium path that is not an executable file is reported with the package to install."""
    data = [{"name": "w", "url": "https://w.example.com/", "mode": "browser",
             "chromium": str(tmp_path / "chromium")}]  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_webmail(data)
    assert caught.value.problems == [
        f"webmail[0].chromium: {tmp_path / 'chromium'} is not an executable "
        "(Debian: apt-get install chromium)"
    ]


def test_a_check_model_is_what_the_parser_returns() -> None:
    """parse_webmail returns WebmailCheck entries in config order."""
    checks = parse_webmail(
        [{"name": "a", "url": "http://a.example.com/"}, {"name": "b", "url": "https://b.example.com/"}]
    )
    assert [type(c) for c in checks] == [WebmailCheck, WebmailCheck]
    assert [c.name for c in checks] == ["a", "b"]
