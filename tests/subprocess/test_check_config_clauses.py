"""`mailprobe check-config` on webmail entries, anti-virus tests and route kinds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


def _check(path: Path, data: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "MP_CHK_PW": "pw", "MP_CHK_SECRET": "s"}
    return subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "check-config", str(path)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip


def _data(tmp_path: Path) -> dict[str, object]:
    endpoint = {
        "host": "mail.example.com",
        "port": 465,
        "username": "u",
        "password_env": "MP_CHK_PW",
    }
    return {
        "agent": {"secret_env": "MP_CHK_SECRET", "state_dir": str(tmp_path / "state")},
        "accounts": {
            "a": {"address": "a@example.com", "smtp": endpoint, "imap": {**endpoint, "port": 993}},
            "x": {"address": "x@other.net", "smtp": endpoint, "imap": {**endpoint, "port": 993}},
        },
        "routes": [{"name": "in", "from": "a", "to": "a"},
                   {"name": "out", "from": "a", "to": "x", "antivirus": {"every": "12h"}}],
        "webmail": [{"name": "portal", "url": "https://webmail.example.com/", "interval": "5m"}],
    }  # fmt: skip


def test_the_summary_names_kinds_antivirus_tests_and_webmail_checks(tmp_path: Path) -> None:
    """A good file: each route with its kind (and its tests), each webmail check."""
    proc = _check(tmp_path / "c.yaml", _data(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "in a->a every 60s, internal" in proc.stdout
    assert "out a->x every 60s, external, anti-virus test every 43200s" in proc.stdout
    assert "webmail portal (http) every 300s" in proc.stdout


def test_a_bad_webmail_entry_exits_2_naming_its_key(tmp_path: Path) -> None:
    """Every problem at once, with its key path, no traceback."""
    data = _data(tmp_path)
    data["webmail"] = [{"name": "portal", "url": "https://w/", "mode": "browser",
                        "max_redirects": 3}, {"name": "portal", "url": "gopher://w"}]  # fmt: skip
    data["routes"][1]["antivirus"] = {"every": "5s"}  # type: ignore[index]
    proc = _check(tmp_path / "c.yaml", data)
    assert proc.returncode == 2
    assert "webmail[0].max_redirects: only for mode http" in proc.stderr
    assert "webmail[1].url:" in proc.stderr
    assert "webmail[1].name: duplicate webmail name 'portal'" in proc.stderr
    assert "routes[1].antivirus.every: must be at least 1m" in proc.stderr
    assert "Traceback" not in proc.stderr
