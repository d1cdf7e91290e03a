"""Configs for tests: accounts pointed at a mail service, validated the way `mailprobe run` does."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mailprobe.agent.config import Config, parse_config
from mailprobe.agent.demo.service import EmbeddedMailService

SECRET = "test-probe-secret"


def account(
    address: str,
    password: str,
    *,
    host: str,
    smtp_port: int,
    imap_port: int,
    ca_file: Path,
    smtp_security: str = "starttls",
    imap_security: str = "starttls",
    timeout: str = "5s",
) -> dict[str, Any]:
    """An account section whose password comes from an environment variable set here."""
    env = "MP_PW_" + "".join(c if c.isalnum() else "_" for c in address).upper()
    os.environ[env] = password
    common = {"host": host, "username": address, "password_env": env, "ca_file": str(ca_file),
              "timeout": timeout}  # fmt: skip
    return {
        "address": address,
        "smtp": {**common, "port": smtp_port, "security": smtp_security},
        "imap": {**common, "port": imap_port, "security": imap_security},
    }


def make_config(
    accounts: Mapping[str, dict[str, Any]],
    routes: Iterable[dict[str, Any]],
    *,
    state_dir: Path | None = None,
    sla: dict[str, Any] | None = None,
    **agent: Any,
) -> Config:
    """A validated Config with a test secret and an ephemeral HTTP port."""
    os.environ["MP_TEST_SECRET"] = SECRET
    if state_dir is None:  # a fresh ledger per config, never a shared one
        state_dir = Path(tempfile.mkdtemp(prefix="mailprobe-test-state-"))
    data = {
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(state_dir), **agent},
        "accounts": dict(accounts),
        "routes": list(routes),
    }  # fmt: skip
    if sla is not None:
        data["sla"] = sla
    return parse_config(data)


# The embedded service's users in every test that runs it (logins are the addresses).
USERS = {
    "alice@demo.test": "alice-pw",
    "bob@demo.test": "bob-pw",
    "carol@demo.test": "carol-pw",
}


def config_data(
    svc: EmbeddedMailService,
    state_dir: Path,
    *,
    sla: dict[str, Any] | None = None,
    maintenance: list[dict[str, Any]] | None = None,
    **route: Any,
) -> dict[str, Any]:
    """YAML-ready config: route a2b from bob to alice on the embedded service, state in state_dir."""
    os.environ["MP_TEST_SECRET"] = SECRET
    common = {"host": svc.host, "ca_file": svc.ca_file, "smtp_port": svc.smtp_port,
              "imap_port": svc.imap_port}  # fmt: skip
    data: dict[str, Any] = {
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_TEST_SECRET",
                  "state_dir": str(state_dir), "log_level": "debug"},
        "accounts": {
            "alice": account("alice@demo.test", USERS["alice@demo.test"], **common),
            "bob": account("bob@demo.test", USERS["bob@demo.test"], **common),
        },
        "routes": [{"name": "a2b", "from": "bob", "to": "alice", "interval": "1m",
                    "jitter": "0s", **route}],
    }  # fmt: skip
    for section in ("smtp", "imap"):
        for acc in data["accounts"].values():
            acc[section]["ca_file"] = str(acc[section]["ca_file"])
    if sla is not None:
        data["sla"] = sla
    if maintenance is not None:
        data["maintenance"] = maintenance
    return data


def write_config(data: dict[str, Any], path: Path) -> Config:
    """Write the config where a subprocess can read it, and validate it the same way."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return parse_config(data)
