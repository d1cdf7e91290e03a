"""OAuth2 sign-in through the real `mailprobe` CLI: config mistakes in an auth section are one
line and exit 2, and a token command that fails makes probe-once fail as auth, saying why."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.webserver import closed_port
from tests.hostile.test_sasl import OAuthImap

from .test_cli_startup import mailprobe, one_line_failure


def _config(tmp_path: Path, imap: dict[str, Any]) -> Path:
    secret = tmp_path / "secret"
    secret.write_text("signing-secret\n")
    (tmp_path / "state").mkdir(exist_ok=True)
    data = {
        "agent": {"listen": "127.0.0.1:0", "state_dir": str(tmp_path / "state"),
                  "secret_file": str(secret)},
        "accounts": {"probe": {
            "address": "probe@hostile.test",
            "smtp": {"host": "127.0.0.1", "port": closed_port(), "security": "plain",
                     "username": "probe@hostile.test", "auth": {"command": ["true"]}},
            "imap": {"host": "127.0.0.1", "security": "plain", "username": "probe@hostile.test",
                     "timeout": "2s", **imap},
        }},
        "routes": [{"name": "internal", "from": "probe", "to": "probe"}],
    }  # fmt: skip
    path = tmp_path / "mailprobe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_inline_client_secret_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """check-config names the key and says where the secret goes."""
    flow = {"tenant": "t", "client_id": "c", "client_secret": "s3cret-value"}
    path = _config(tmp_path, {"port": 993, "auth": {"microsoft": flow}})
    line = one_line_failure(mailprobe("check-config", str(path)), "accounts.probe.imap.auth")
    assert "microsoft.client_secret: secrets are never written inline" in line
    assert "s3cret-value" not in line


def test_an_unset_client_secret_variable_is_named(tmp_path: Path) -> None:
    """The flow's secret is read at check time: an unset variable is a config problem."""
    flow = {"tenant": "t", "client_id": "c", "client_secret_env": "MP_CLI_UNSET_SECRET"}
    path = _config(tmp_path, {"port": 993, "auth": {"microsoft": flow}})
    os.environ.pop("MP_CLI_UNSET_SECRET", None)
    one_line_failure(
        mailprobe("check-config", str(path)),
        "accounts.probe.imap.auth.microsoft: environment variable MP_CLI_UNSET_SECRET is not set",
    )


async def test_a_failing_token_command_fails_probe_once_as_auth(tmp_path: Path) -> None:
    """The server offers OAUTHBEARER; the token command exits 1: probe-once says failed in imap,
    reason auth, exit 2, and the log carries the command's status and stderr, no traceback."""
    script = tmp_path / "get_token.py"
    script.write_text(
        "import sys\nprint('refresh token expired: run mytool login', file=sys.stderr)\nsys.exit(1)\n"
    )
    async with OAuthImap() as server:
        path = _config(tmp_path, {"port": server.port,
                                  "auth": {"command": [sys.executable, str(script)]}})  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mailprobe.agent.cli", "probe-once", "--config", str(path),
            "--route", "internal", "--timeout", "20", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    result = json.loads(out)
    assert proc.returncode == 2, err
    assert (result["status"], result["phase"], result["reason"]) == ("failed", "imap", "auth")
    log = err.decode()
    assert "get_token.py for probe@hostile.test: exited with status 1" in log
    assert "refresh token expired: run mytool login" in log
    assert "Traceback" not in log
    assert server.initial == []  # no token: nothing was sent
