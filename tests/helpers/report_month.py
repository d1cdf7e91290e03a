"""A whole month in a ledger, for the report documents: outages, maintenance, a restart, delays.

October 2026 in Europe/Berlin (a DST change on the 25th), two routes probed every five minutes,
observed all month but for three hours while the agent was upgraded. On route ``internal`` an SMTP
outage of 51 min 40 s on Wednesday the 7th (the disconnection clause is breached); on route
``partner-inbound`` the mailbox cannot be opened for 45 min inside the agreed Sunday window on the
18th (maintenance) and for 6 min 30 s on the 22nd, the probes sent meanwhile found at reconnect
(found late); one probe delivered after 70 minutes. Delays otherwise 10 to 80 ms.

``write_month`` writes the ledger and a config that `mailprobe report` reads.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from mailprobe.agent.books import LEDGER_FILE
from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe, Status
from mailprobe.probes.errors import Phase, Reason

MONTH = "2026-10"
TZ = ZoneInfo("Europe/Berlin")
ROUTES = ("internal", "partner-inbound")
INTERVAL = 300.0
WINDOW = {"name": "sunday-patching", "weekly": ["sun"], "start": "02:00", "duration": "2h",
          "timezone": "Europe/Berlin"}  # fmt: skip


def at(text: str) -> float:
    """A local wall-clock time in Berlin as Unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


START, END = at("2026-10-01T00:00"), at("2026-11-01T00:00")
GAP = (at("2026-10-15T10:00"), at("2026-10-15T13:00"))  # the agent is upgraded
OUTAGES = (
    ("internal", Check.SEND, at("2026-10-07T09:12:30"), at("2026-10-07T10:04:10")),
    ("partner-inbound", Check.RECEIVE, at("2026-10-18T02:40:00"), at("2026-10-18T03:25:00")),
    ("partner-inbound", Check.RECEIVE, at("2026-10-22T14:00:00"), at("2026-10-22T14:06:30")),
)
SLOW = ("partner-inbound", at("2026-10-27T16:00:00"), 4200.0)  # delivered after 70 minutes


def config_data(state_dir: Path) -> dict[str, Any]:
    """A config for this ledger (the report checks no secret, so none need exist)."""

    def account(address: str) -> dict[str, Any]:
        server = {"host": "mail.example.net", "username": address, "password_env": "MP_DOC_PW"}
        return {"address": address, "smtp": {**server, "port": 587, "security": "starttls"},
                "imap": {**server, "port": 993, "security": "tls"}}  # fmt: skip

    return {
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_DOC_SECRET",
                  "state_dir": str(state_dir)},
        "accounts": {"ops": account("ops@example.com"), "partner": account("probe@partner.example")},
        "routes": [{"name": "internal", "from": "ops", "to": "ops", "interval": "5m"},
                   {"name": "partner-inbound", "from": "partner", "to": "ops", "interval": "5m"}],
        "sla": {"timezone": "Europe/Berlin"},
        "maintenance": [WINDOW],
    }  # fmt: skip


def _down(route: str, t: float) -> tuple[Check, float] | None:
    for r, check, lo, hi in OUTAGES:
        if r == route and lo <= t < hi:
            return check, hi
    return None


def _probes(rng: random.Random) -> list[Probe]:
    out = []
    for index, route in enumerate(ROUTES):
        t = START + 60.0 * (index + 1)
        while t < END:
            if not GAP[0] <= t < GAP[1]:
                out.append(_probe(rng, route, t))
            t += INTERVAL
    return out


def _probe(rng: random.Random, route: str, sent: float) -> Probe:
    pid = f"{route}-{sent:.0f}"
    down = _down(route, sent)
    if down is not None and down[0] is Check.SEND:
        return Probe(pid, route, Status.FAILED, sent, phase=Phase.SMTP_CONNECT,
                     reason=Reason.CONNECT)  # fmt: skip
    delay = min(0.080, max(0.010, rng.lognormvariate(-3.5, 0.35)))
    found_late = False
    if down is not None:  # the mailbox could not be opened: found at reconnect
        delay, found_late = down[1] - sent + 1.5, True
    if route == SLOW[0] and 0 <= sent - SLOW[1] < INTERVAL:
        delay = SLOW[2]
    accepted = sent + 0.004
    probe = Probe(pid, route, Status.SENT, sent, accepted_at=accepted)
    if delay > 3600.0:
        probe = probe.overdue(sent + 3600.0).past_maximum(sent + 3600.0)
    split = None if found_late else delay * rng.uniform(0.3, 0.6)
    # Seen in the inbox, the junk folder watched too; a measured arrival has its bound.
    bound = None if found_late else max(0.022, 0.019 * delay)
    arrived = probe.arrive(sent + delay, found_late=found_late, error=bound, junked=False)
    return replace(arrived, send_delay_seconds=split,
                   receive_delay_seconds=None if split is None else delay - split)  # fmt: skip


def fill_month(path: Path, seed: int = 1) -> None:
    """Write the month's runs, transitions and probes into the ledger at ``path``."""
    with Ledger.open(path) as ledger:
        # Test data, not an agent's records: an fsync per probe would take minutes.
        ledger._conn.execute("PRAGMA synchronous=OFF")
        for lo, hi in ((START, GAP[0]), (GAP[1], END)):
            ledger.started(lo)
            ledger.stopped(hi)
        for route, check, lo, hi in OUTAGES:
            ledger.record_transition(Transition(route, check, False, lo))
            ledger.record_transition(Transition(route, check, True, hi))
        for probe in _probes(random.Random(seed)):
            ledger.record(probe)


def write_month(directory: Path) -> Path:
    """The ledger and its config under ``directory``; returns the config's path."""
    state = directory / "state"
    fill_month(state / LEDGER_FILE)
    config = directory / "mailprobe.yaml"
    config.write_text(yaml.safe_dump(config_data(state), sort_keys=False))
    return config
