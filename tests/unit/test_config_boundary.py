"""The config boundary: each input that once crashed or misread the loader is a ConfigError naming
its key (issue 11: deep YAML, non-UTF-8 files, huge time zones and durations, `port: true`,
control characters in values that reach a protocol)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.config import ConfigError, load_config, parse_config
from mailprobe.agent.endpoints import smtp_endpoint


@pytest.fixture
def base(tmp_path: Path) -> dict[str, Any]:
    """A valid config as data, its secret and password in files under tmp_path."""
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "pw").write_text("hunter2\n")
    endpoint = {"security": "tls", "username": "probe@example.com",
                "password_file": str(tmp_path / "pw")}  # fmt: skip
    return {
        "agent": {"listen": "127.0.0.1:9478", "state_dir": str(tmp_path / "state"),
                  "secret_file": str(tmp_path / "secret")},
        "accounts": {
            "probe": {
                "address": "probe@example.com",
                "smtp": {"host": "smtp.example.com", "port": 465, **endpoint},
                "imap": {"host": "imap.example.com", "port": 993, **endpoint},
            }
        },
        "routes": [{"name": "internal", "from": "probe", "to": "probe", "interval": "1m"}],
    }


def problems_of(data: dict[str, Any], tmp_path: Path, text: str | None = None) -> list[str]:
    """Load `data` (or raw `text`) through a file, as the CLI does; the problems it reports."""
    path = tmp_path / "mailprobe.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == path
    return caught.value.problems


def with_value(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with the dotted key `path` (list index as a number) set to `value`."""
    out = copy.deepcopy(data)
    node: Any = out
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return out


def test_the_base_config_loads(base: dict[str, Any], tmp_path: Path) -> None:
    """The fixture is valid, so every failure below is the mutation's."""
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(base))
    assert load_config(path).accounts["probe"].smtp is not None


def test_yaml_nested_900_deep_is_refused_with_its_line(tmp_path: Path) -> None:
    """900 nested lists used to end in RecursionError inside the YAML composer."""
    (problem,) = problems_of({}, tmp_path, text="agent: " + "[" * 900 + "]" * 900 + "\n")
    assert problem.startswith("nested more than 32 levels deep at line 1")


def test_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    """`&a [*a]` is infinitely deep once walked."""
    (problem,) = problems_of({}, tmp_path, text="agent: &a [*a]\n")
    assert "aliases nest more than 32 deep" in problem


def test_alias_bomb_is_refused_before_validation(tmp_path: Path) -> None:
    """Nine levels of nine aliases: a few hundred bytes of text, 387 million values walked."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (problem,) = problems_of({}, tmp_path, text="\n".join(lines) + "\n")
    assert "more than 100000 values once aliases are expanded" in problem


def test_config_file_that_is_not_utf8(base: dict[str, Any], tmp_path: Path) -> None:
    """A Latin-1 byte in the config is named with its line, not a UnicodeDecodeError."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(base).encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.startswith("not UTF-8 text (byte 0xe9 on line")


@pytest.mark.parametrize("which", ["secret", "pw"])
def test_secret_or_password_file_that_is_not_utf8(
    base: dict[str, Any], tmp_path: Path, which: str
) -> None:
    """The signing secret and the passwords are read as text: raw bytes are a config error."""
    (tmp_path / which).write_bytes(b"\xff\xfe raw bytes\n")
    found = problems_of(base, tmp_path)
    key = "agent.secret" if which == "secret" else "accounts.probe.smtp.password"
    assert any(p.startswith(f"{key}: ") and "not UTF-8 text" in p for p in found), found


def test_a_huge_secret_file_is_not_read_to_the_end(base: dict[str, Any], tmp_path: Path) -> None:
    """/dev/zero as the secret file: refused after the first MiB."""
    data = with_value(base, "agent.secret_file", "/dev/zero")
    assert any("larger than 1024 KiB" in p for p in problems_of(data, tmp_path))


def test_5000_character_time_zone(base: dict[str, Any], tmp_path: Path) -> None:
    """Used to raise OSError (file name too long) from the tz database; the message stays short."""
    data = {**base, "sla": {"timezone": "A" * 5000}}
    (problem,) = problems_of(data, tmp_path)
    assert problem.startswith("sla.timezone: unknown time zone 'AAAA")
    assert "(5000 characters)" in problem
    assert len(problem) < 200


@pytest.mark.parametrize("zone", ["../../../etc/passwd", "Europe/Berlin\x00", "", " UTC"])
def test_odd_time_zones(base: dict[str, Any], tmp_path: Path, zone: str) -> None:
    """Path tricks, NUL bytes and blanks are unknown time zones, not file lookups."""
    data = {**base, "maintenance": [{"name": "w", "daily": True, "start": "02:00",
                                     "duration": "1h", "timezone": zone}]}  # fmt: skip
    (problem,) = problems_of(data, tmp_path)
    assert problem.startswith("maintenance[0].timezone: unknown time zone")


def test_interval_of_10_to_the_400_seconds(base: dict[str, Any], tmp_path: Path) -> None:
    """Parsed as infinity once, and the route looped hot; now the limit is said in the message."""
    data = with_value(base, "routes.0.interval", "1" + "0" * 400 + "s")
    (problem,) = problems_of(data, tmp_path)
    assert problem.startswith("routes[0].interval: duration")
    assert "durations are finite and at most a year (365d)" in problem


@pytest.mark.parametrize(
    ("key", "value"),
    [("routes.0.interval", "366d"), ("sla.receive_deadline", "53w"),
     ("accounts.probe.smtp.timeout", "9999999d")],
)  # fmt: skip
def test_durations_over_a_year(base: dict[str, Any], tmp_path: Path, key: str, value: str) -> None:
    """Every duration of the config, in every section, is at most a year."""
    data = {**base, "sla": {}}
    (problem,) = problems_of(with_value(data, key, value), tmp_path)
    assert "at most a year" in problem
    assert problem.startswith(key.replace(".0.", "[0]."))


def test_ledger_retention_may_exceed_a_year_but_not_ten(
    base: dict[str, Any], tmp_path: Path
) -> None:
    """Retention must reach past the rolling year (400d is the minimum) and is capped at 10 years."""
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(with_value(base, "agent.ledger_retention", "800d")))
    assert load_config(ok).agent.ledger_retention == 800 * 86400
    (problem,) = problems_of(with_value(base, "agent.ledger_retention", "5000d"), tmp_path)
    assert problem.startswith("agent.ledger_retention: duration '5000d' is too long")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("accounts.probe.smtp.port", True, "valid integer (got true, a YAML boolean"),
        ("accounts.probe.imap.port", "993", "valid integer (got the text '993')"),
        ("accounts.probe.imap.port", 993.0, "valid integer (got the number 993.0)"),
        ("accounts.probe.smtp.verify", 1, "valid boolean (got the number 1)"),
        ("accounts.probe.imap.idle", "yes", "valid boolean (got the text 'yes')"),
        ("agent.max_concurrency", True, "valid integer (got true"),
        ("sla.disconnection_minutes", True, "valid number (got true"),
        ("sla.ratio_mode", 0, "valid boolean (got the number 0)"),
        ("sla.trouble_free_days", 360.5, "valid integer"),
        ("sla.compensation.cap_percent", False, "valid number (got false"),
    ],
)
def test_yaml_booleans_and_lookalikes_do_not_sneak_in(
    base: dict[str, Any], tmp_path: Path, key: str, value: Any, expected: str
) -> None:
    """`port: true` once read as port 1; numbers, flags and text are each exactly their kind."""
    data = {**base, "sla": {"compensation": {}}}
    (problem,) = problems_of(with_value(data, key, value), tmp_path)
    assert problem.startswith(f"{key}: "), problem
    assert expected in problem


@pytest.mark.parametrize(
    ("key", "value"),
    [("sla.disconnection_minutes", float("inf")), ("sla.failure_minutes", float("nan")),
     ("sla.compensation.contract_total", float("-inf"))],
)  # fmt: skip
def test_infinite_and_nan_numbers(
    base: dict[str, Any], tmp_path: Path, key: str, value: float
) -> None:
    """`.inf` and `.nan` are not limits anyone means."""
    data = {**base, "sla": {"compensation": {}}}
    (problem,) = problems_of(with_value(data, key, value), tmp_path)
    assert problem.startswith(f"{key}: ")
    assert "not a finite number" in problem


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("routes.0.interval", "0s", "must be at least 100ms"),
        ("routes.0.interval", "50ms", "must be at least 100ms"),
        ("routes.0.overdue_after", "0s", "must be greater than zero"),
        ("accounts.probe.imap.poll_interval", "1ms", "must be at least 100ms"),
        ("accounts.probe.smtp.timeout", "0s", "must be greater than zero"),
        ("sla.confirm_retry", "10ms", "must be at least 100ms"),
        ("routes.0.jitter", "1m", "must be shorter than interval"),
        ("agent.max_concurrency", 0, "greater than or equal to 1"),
        ("accounts.probe.smtp.port", -25, "greater than or equal to 1"),
        ("sla.over_maximum_allowed", -1, "greater than or equal to 0"),
        ("routes.0.interval", "0.5ms", "shorter than 1ms"),
    ],
)
def test_zero_and_negative_where_they_make_no_sense(
    base: dict[str, Any], tmp_path: Path, key: str, value: Any, expected: str
) -> None:
    """Steps that would make a loop spin, and counts below their floor."""
    data = {**base, "sla": {"confirm_within": "2m"}}
    found = problems_of(with_value(data, key, value), tmp_path)
    assert any(p.startswith(f"{key.replace('.0.', '[0].')}: ") and expected in p for p in found), (
        found
    )


@pytest.mark.parametrize(
    ("key", "value", "found"),
    [
        ("accounts.probe.imap.host", "imap.example.com\x00evil", "NUL at position 17"),
        ("accounts.probe.smtp.host", "smtp example com", "is not a host name"),
        ("accounts.probe.smtp.host", "a" * 64 + ".example.com", "not a valid host name"),
        ("accounts.probe.imap.username", "probe\r\nA1 DELETE INBOX", "CR (carriage return)"),
        ("accounts.probe.imap.mailbox", "INBOX\r\n", "CR (carriage return) at position 6"),
        ("accounts.probe.imap.move_to", "Probes\nA2 LOGOUT", "LF (line feed) at position 7"),
        ("accounts.probe.smtp.helo_name", "probe.example\r\nMAIL FROM:<x>", "CR (carriage"),
        ("accounts.probe.smtp.helo_name", "bad_name!", "not a domain name"),
        ("accounts.probe.address", "probe\x00@example.com", "NUL at position 6"),
        ("accounts.probe.smtp.source_address", "127.0.0.1\x00", "NUL"),
        ("accounts.probe.smtp.password_file", "/etc/\x00pw", "NUL at position 6"),
        ("agent.state_dir", "/var/lib/\nmailprobe", "LF (line feed)"),
        ("agent.extra_headers", {"X-Filter": "yes\r\nBcc: x@y"}, "one printable line"),
        ("agent.listen", "127.0.0.1\x00:9478", "not a host name or IP"),
        ("maintenance", [{"name": "night\r\n", "daily": True, "start": "02:00",
                          "duration": "1h"}], "CR (carriage return)"),
    ],
)  # fmt: skip
def test_control_characters_in_values_that_reach_a_protocol(
    base: dict[str, Any], tmp_path: Path, key: str, value: Any, found: str
) -> None:
    """A NUL in a host or CR/LF in a mailbox passed check-config and crashed `run` (or worse,
    injected a command); each is refused with its key."""
    where = "maintenance[0].name" if key == "maintenance" else key
    (problem,) = problems_of(with_value(base, key, value), tmp_path)
    assert problem.startswith(f"{where}: "), problem
    assert found in problem


def test_a_password_with_a_line_break_is_refused_without_showing_it(
    base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password from the environment ending an IMAP command line early; never printed."""
    monkeypatch.setenv("MP_BOUNDARY_PW", "hunter2\r\nA1 LOGOUT")
    data = with_value(base, "accounts.probe.imap.password_file", None)
    data = with_value(data, "accounts.probe.imap.password_env", "MP_BOUNDARY_PW")
    (problem,) = problems_of(data, tmp_path)
    assert problem == "accounts.probe.imap.password: the password contains a NUL, CR or LF character"


def test_non_text_keys_are_named(base: dict[str, Any], tmp_path: Path) -> None:
    """YAML reads `5:` or `yes:` as a number or a boolean key."""
    text = yaml.safe_dump(base) + "sla: {yes: 1}\n"
    (problem,) = problems_of(base, tmp_path, text=text)
    assert problem == "sla.True: a key must be text, not bool (quote it)"


def test_a_5000_digit_number_is_a_yaml_error_with_its_line(
    base: dict[str, Any], tmp_path: Path
) -> None:
    """Python's int() refuses more than 4300 digits; the loader says where instead of crashing."""
    text = yaml.safe_dump(base).replace("port: 465", "port: " + "9" * 5000)
    (problem,) = problems_of(base, tmp_path, text=text)
    assert problem.startswith("not valid YAML at line")
    assert "4300 digits" in problem


def test_an_impossible_date_is_a_yaml_error(base: dict[str, Any], tmp_path: Path) -> None:
    """`2026-13-45` matches YAML's timestamp pattern but is no date."""
    text = yaml.safe_dump(base) + "maintenance: [{name: w, start: 2026-13-45, end: 2027-01-01}]\n"
    (problem,) = problems_of(base, tmp_path, text=text)
    assert "cannot read this value: month must be in 1..12" in problem


def test_a_ca_file_that_is_not_a_certificate(base: dict[str, Any], tmp_path: Path) -> None:
    """Caught at load (check-config), not when `run` builds its TLS contexts."""
    (tmp_path / "ca.pem").write_bytes(b"not a certificate\n")
    data = with_value(base, "accounts.probe.smtp.ca_file", str(tmp_path / "ca.pem"))
    (problem,) = problems_of(data, tmp_path)
    assert problem.startswith("accounts.probe.smtp.ca_file: ")
    assert "is not a usable PEM certificate file" in problem


def test_helo_name_reaches_the_smtp_endpoint(base: dict[str, Any]) -> None:
    """The EHLO name is configurable (and checked); it is what the SMTP client will say."""
    config = parse_config(with_value(base, "accounts.probe.smtp.helo_name", "probe.example.net"))
    smtp = config.accounts["probe"].smtp
    assert smtp is not None
    assert smtp_endpoint(smtp).helo_name == "probe.example.net"
    literal = parse_config(with_value(base, "accounts.probe.smtp.helo_name", "[192.0.2.7]"))
    assert literal.accounts["probe"].smtp is not None
    assert literal.accounts["probe"].smtp.helo_name == "[192.0.2.7]"
