"""`mailprobe run --vantage NAME`: checked as the config key is, before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.unit.test_config_fleet import data


def test_run_refuses_a_bad_vantage_on_the_command_line(tmp_path: Path) -> None:
    """`run --vantage` is checked like the key: exit 2, one line, no traceback."""
    path = tmp_path / "mailprobe.yaml"
    path.write_text(yaml.safe_dump(data(tmp_path)))
    done = subprocess.run(
        [sys.executable, "-m", "mailprobe.agent.cli", "run", "--config", str(path),
         "--vantage", "not a name"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "mailprobe: --vantage: 'not a name': a vantage name uses letters, digits, '_', '-', '.' "
        "(at most 64)"
    ]
