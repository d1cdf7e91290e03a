"""Config validation: every problem at once, with its key path; the CLI exits 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailprobe.agent.config import ConfigError, load_config
from mailprobe.agent.durations import format_duration, parse_duration

GOOD = """
agent: {listen: "127.0.0.1:9478", state_dir: /tmp/mp-state, secret_file: SECRET}
accounts:
  probe:
    address: probe@example.com
    smtp: {host: smtp.example.com, port: 465, security: tls, username: probe@example.com, password_env: MP_CFG_PW}
    imap: {host: imap.example.com, port: 993, security: tls, username: probe@example.com, password_file: PWFILE}
routes:
  - {name: internal, from: probe, to: probe, interval: 1m}
"""

BAD = """
agent: {listen: "localhost", secret_file: SECRET, bogus: 1}
accounts:
  probe:
    address: not-an-address
    smtp: {host: smtp.example.com, port: 70000, security: ssl}
    imap: {host: imap.example.com, port: 993, username: probe@example.com}
routes:
  - {name: internal, from: probe, to: probe, interval: 60}
  - {name: all, from: nobody, to: probe, interval: 5x}
  - {name: internal, from: probe, to: probe, overdue_after: 2h, lost_after: 1h}
"""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    monkeypatch.setenv("MP_CFG_PW", "pw")
    out = {}
    for name, text in (("good", GOOD), ("bad", BAD)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text.replace("SECRET", str(secret)).replace("PWFILE", str(pw)))
        out[name] = path
    return out


def test_good_config_loads_typed_and_frozen(files: dict[str, Path]) -> None:
    """Durations become seconds, secrets resolve, defaults apply, objects are immutable."""
    config = load_config(files["good"])
    route = config.routes[0]
    assert route.interval == 60.0
    assert route.overdue_after == 3600.0
    assert config.accounts["probe"].imap is not None
    assert config.accounts["probe"].imap.password() == "hunter2"
    assert config.accounts["probe"].smtp is not None
    assert config.accounts["probe"].smtp.verify is True
    assert config.agent.secret() == b"s3cret"
    with pytest.raises(Exception, match="frozen"):
        route.interval = 5.0  # type: ignore[misc]


def test_every_problem_is_reported_with_its_key_path(files: dict[str, Path]) -> None:
    """One run names all mistakes, each with the path of its key."""
    with pytest.raises(ConfigError) as caught:
        load_config(files["bad"])
    text = "\n".join(caught.value.problems)
    for expected in (
        "agent.listen:",
        "agent.bogus: unknown key",
        "accounts.probe.address:",
        "accounts.probe.smtp.port:",
        "accounts.probe.smtp.security:",
        "accounts.probe.imap.password_env: username needs password_env, password_file or auth",
        "routes[0].interval: bare number 60",
        "routes[1].name: 'all' is reserved",
        "routes[1].interval: invalid duration '5x'",
        "routes[2].lost_after: must not be shorter than overdue_after",
        "routes[1].from: no account named 'nobody'",
        "routes[2].name: duplicate route name 'internal'",
    ):
        assert expected in text, f"missing {expected!r} in:\n{text}"


def test_missing_secret_source_is_a_config_error(files: dict[str, Path], tmp_path: Path) -> None:
    """A password variable that is not set is caught at load time, not at the first probe."""
    text = files["good"].read_text().replace("MP_CFG_PW", "MP_CFG_UNSET_VARIABLE")
    path = tmp_path / "unset.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"accounts\.probe\.smtp\.password: environment variable"):
        load_config(path)


def test_broken_yaml_names_line(tmp_path: Path) -> None:
    """A YAML syntax error says where."""
    path = tmp_path / "broken.yaml"
    path.write_text("agent: {listen: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)


def test_check_config_cli_exits_2_without_traceback(files: dict[str, Path]) -> None:
    """`mailprobe check-config` on a bad file: exit 2, problems on stderr, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "check-config", str(files["bad"])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "routes[1].from: no account named 'nobody'" in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "check-config", str(files["good"])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "internal probe->probe every 60s" in ok.stdout


def test_shipped_example_config_is_valid() -> None:
    """config/example.yaml validates (secrets aside: they live on the real host)."""
    load_config(Path(__file__).resolve().parents[2] / "config" / "example.yaml", check_secrets=False)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800), ("1w", 604800)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    """Human-readable durations become seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m5", "5 minutes", "1h-5m", "1.5.2s"])
def test_bad_durations_are_refused(text: str) -> None:
    """Anything but number+unit pairs is an error."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_duration_format_round_trips() -> None:
    """Formatting gives back what the config would say."""
    for seconds in (1, 59, 60, 3600, 5400, 86400 + 61):
        assert parse_duration(format_duration(seconds)) == seconds


def test_the_imap_command_budget_defaults_to_the_self_hosted_one(files: dict[str, Path]) -> None:
    """No budget keys: 150 commands a probe and 300 a minute; the junk folder is looked for."""
    imap = load_config(files["good"]).accounts["probe"].imap
    assert imap is not None
    assert (imap.max_commands_per_probe, imap.max_commands_per_minute) == (150, 300)
    assert (imap.watch_junk, imap.junk_folder) == (True, None)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ("max_commands_per_probe: 5", "accounts.probe.imap.max_commands_per_probe"),
        ("max_commands_per_minute: true", "accounts.probe.imap.max_commands_per_minute"),
        ("junk_folder: INBOX", "junk_folder: must be another folder than mailbox and move_to"),
    ],
)
def test_a_bad_budget_or_junk_folder_names_its_key(
    files: dict[str, Path], tmp_path: Path, keys: str, problem: str
) -> None:
    """Too small a budget, a flag for a number, the inbox as junk folder: refused by key path."""
    # The imap line is the only one with password_file: the keys go into the imap section.
    text = files["good"].read_text().replace("password_file:", f"{keys}, password_file:", 1)
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(problem in line for line in err.value.problems), err.value.problems
