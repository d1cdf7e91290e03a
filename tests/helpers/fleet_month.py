"""A fleet of three vantage points through one day of a month, as ledgers and as Prometheus data.

Vantages a (Berlin), b (Frankfurt) and c (a branch office) probe routes ``internal`` and
``outbound`` every five minutes on the 7th, 08:00 to 14:30 Berlin time; b restarts 12:00-12:20.
What they see (Berlin time):

- 09:00-09:50 internal send, seen by all three with staggered edges: the provider's (with the
  default quorum of two, from b's start 09:00:05.5 to a's end 09:50:00.75).
- 10:30-11:15 internal receive at c only: local, excluded.
- 11:55-12:10 outbound receive at a and b; b stops observing at 12:00: the provider's until
  12:00, then a's alone (local).
- 13:00-13:05:30 outbound send at a only: local.
- 13:40-13:50 outbound send at a and b, inside the agreed window 13:30-14:00: maintenance.

Delivery takes about 0.1 s from a, 0.2 s from b and 80 s from c (its line is slow): with two of
three the fleet's average is b's, and no delay clause is breached.

``write_ledger`` writes a vantage's ledger as its agent would have; ``openmetrics`` the counters
the agents would have exported, scraped every 15 s (each vantage at its own phase, none while it
is not running), with the agent's 5 s tick and a confirmation 15 s after an outage began.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.metrics import DELAY_BUCKETS
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.vantage import META_KEY, Vantage, to_meta
from mailprobe.agent.windows import Span, clip, intersect, month_bounds, normalize, subtract, total
from mailprobe.probes.errors import Phase, Reason

TZ = ZoneInfo("Europe/Berlin")
ROUTES = ("internal", "outbound")
INTERVAL = 300.0
SCRAPE = 15.0
TICK = 5.0
CONFIRM = 15.0
JOB = "mailprobe"


def day_of(month: str) -> str:
    """The scenario's day: the 7th of the month."""
    return f"{month}-07"


def at(month: str, clock: str) -> float:
    """Berlin wall-clock time on the scenario's day, as Unix seconds."""
    return datetime.fromisoformat(f"{day_of(month)}T{clock}").replace(tzinfo=TZ).timestamp()


def window(month: str) -> dict[str, Any]:
    """The agreed maintenance window of the day (13:30-14:00 Berlin)."""
    return {"name": "change-window", "start": f"{day_of(month)}T13:30:00",
            "end": f"{day_of(month)}T14:00:00", "timezone": "Europe/Berlin"}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """One vantage's day."""

    vantage: Vantage
    runs: tuple[Span, ...]
    outages: tuple[tuple[str, Check, float, float], ...]
    delay: float
    phase: float  # seconds after the minute its scrapes fall on


def plans(month: str) -> list[Plan]:
    """The three vantages of the scenario."""

    def t(clock: str) -> float:
        return at(month, clock)

    day = (t("08:00:00"), t("14:30:00"))
    provider = {"a": ("09:00:00.250", "09:50:00.750"), "b": ("09:00:05.500", "09:50:03.000"),
                "c": ("09:00:12.000", "09:49:58.000")}  # fmt: skip
    maintenance = ("outbound", Check.SEND, t("13:40:00"), t("13:50:00"))
    return [
        Plan(Vantage("a", "berlin-hq", "eu-central"), (day,), (
            ("internal", Check.SEND, t(provider["a"][0]), t(provider["a"][1])),
            ("outbound", Check.RECEIVE, t("11:55:00"), t("12:10:00")),
            ("outbound", Check.SEND, t("13:00:00"), t("13:05:30")),
            maintenance,
        ), 0.1, 0.0),
        Plan(Vantage("b", "frankfurt-dc", "eu-central"),
             ((day[0], t("12:00:00")), (t("12:20:00"), day[1])), (
            ("internal", Check.SEND, t(provider["b"][0]), t(provider["b"][1])),
            ("outbound", Check.RECEIVE, t("11:55:00"), t("12:10:00")),
            maintenance,
        ), 0.2, 5.0),
        Plan(Vantage("c", "branch", "eu-west"), (day,), (
            ("internal", Check.SEND, t(provider["c"][0]), t(provider["c"][1])),
            ("internal", Check.RECEIVE, t("10:30:00"), t("11:15:00")),
        ), 80.0, 10.0),
    ]  # fmt: skip


def config_data(month: str, state_dir: Path, **fleet: Any) -> dict[str, Any]:
    """A config for the scenario (the report checks no secret, so none need exist)."""

    def account(address: str) -> dict[str, Any]:
        server = {"host": "mail.example.net", "username": address, "password_env": "MP_FLEET_PW"}
        return {"address": address, "smtp": {**server, "port": 587, "security": "starttls"},
                "imap": {**server, "port": 993, "security": "tls"}}  # fmt: skip

    data: dict[str, Any] = {
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_FLEET_SECRET",
                  "state_dir": str(state_dir)},
        "accounts": {"ops": account("ops@example.com"), "out": account("probe@partner.example")},
        "routes": [{"name": "internal", "from": "ops", "to": "ops", "interval": "5m"},
                   {"name": "outbound", "from": "ops", "to": "out", "interval": "5m"}],
        "sla": {"timezone": "Europe/Berlin"},
        "maintenance": [window(month)],
    }  # fmt: skip
    if fleet:
        data["fleet"] = fleet
    return data


def _down_at(plan: Plan, route: str, check: Check, sent: float) -> Span | None:
    for r, c, lo, hi in plan.outages:
        if r == route and c is check and lo <= sent < hi:
            return lo, hi
    return None


def probes(plan: Plan) -> list[Probe]:
    """The vantage's probes: every five minutes a route while it runs."""
    out = []
    for index, route in enumerate(ROUTES):
        for lo, hi in plan.runs:
            sent = lo + 30.0 * (index + 1)
            n = 0
            while sent < hi:
                n += 1
                pid = f"{plan.vantage.name}-{route}-{sent:.0f}"
                if _down_at(plan, route, Check.SEND, sent) is not None:
                    out.append(Probe(pid, route, Status.FAILED, sent, phase=Phase.SMTP_CONNECT,
                                     reason=Reason.CONNECT))  # fmt: skip
                else:
                    receive = _down_at(plan, route, Check.RECEIVE, sent)
                    delay = plan.delay * (1 + 0.01 * (n % 7))
                    if receive is not None:
                        delay = receive[1] + 1.0 - sent
                    probe = Probe(pid, route, Status.SENT, sent, accepted_at=sent + 0.004)
                    out.append(probe.arrive(sent + delay))
                sent += INTERVAL
    return out


def write_ledger(plan: Plan, path: Path) -> Path:
    """The ledger the vantage's agent would have written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Ledger.open(path) as ledger:
        # Test data, not an agent's records: an fsync per probe would take long.
        ledger._conn.execute("PRAGMA synchronous=OFF")
        ledger.set_meta(META_KEY, to_meta(plan.vantage))
        for lo, hi in plan.runs:
            ledger.started(lo)
            ledger.stopped(hi)
        for route, check, lo, hi in plan.outages:
            ledger.record_transition(Transition(route, check, False, lo))
            ledger.record_transition(Transition(route, check, True, hi))
        for probe in probes(plan):
            ledger.record(probe)
    return path


# ------------------------------------------------------------------- Prometheus's view


def _scrapes(plan: Plan) -> list[float]:
    out = []
    for lo, hi in plan.runs:
        t = math.ceil((lo - plan.phase) / SCRAPE) * SCRAPE + plan.phase
        while t < hi:
            out.append(t)
            t += SCRAPE
    return out


def _seconds(plan: Plan, month: str, tau: float) -> dict[tuple[str, str, str], float]:
    """The seconds counters at ``tau``: observed, and down / maintenance per base check."""
    runs = normalize(plan.runs)
    maint = [(at(month, "13:30:00"), at(month, "14:00:00"))]
    out = {("all", "any", "observed"): total(clip(runs, -1e12, tau))}
    for route in ROUTES:
        for check in (Check.SEND, Check.RECEIVE):
            spans = [(lo, min(hi, tau)) for r, c, lo, hi in plan.outages
                     if r == route and c is check and tau >= lo + CONFIRM]  # fmt: skip
            seen = intersect(normalize(spans), runs)
            out[(route, str(check), "down")] = total(subtract(seen, maint))
            out[(route, str(check), "maintenance")] = total(intersect(seen, maint))
    return out


def openmetrics(fleet: list[Plan], month: str) -> str:
    """OpenMetrics text of what Prometheus would hold of the fleet's agents (backfill input)."""
    families: dict[str, tuple[str, list[str]]] = {}

    def add(family: str, kind: str, line: str) -> None:
        families.setdefault(family, (kind, []))[1].append(line)

    for plan in fleet:
        base = f'job="{JOB}",instance="{plan.vantage.name}.example:9478"'
        v = plan.vantage
        sent = probes(plan)
        for t in _scrapes(plan):
            tau = math.floor(t / TICK) * TICK  # seconds move at the agent's tick
            add("mailprobe_vantage", "info",
                f'mailprobe_vantage_info{{{base},vantage="{v.name}",site="{v.site}",'
                f'region="{v.region}"}} 1 {t}')  # fmt: skip
            for (route, check, kind), value in _seconds(plan, month, tau).items():
                add(f"mailprobe_{kind}_seconds", "counter",
                    f'mailprobe_{kind}_seconds_total{{{base},route="{route}",check="{check}"}} '
                    f"{value} {t}")  # fmt: skip
            for route in ROUTES:
                mine = [p for p in sent if p.route == route and p.sent_at <= t]
                arrived = [p for p in mine if p.arrived_at is not None and p.arrived_at <= t]
                failed = [p for p in mine if p.status is Status.FAILED]
                label = f'{base},route="{route}"'
                add("mailprobe_probes_sent", "counter",
                    f"mailprobe_probes_sent_total{{{label}}} {len(mine)} {t}")
                add("mailprobe_probes_received", "counter",
                    f"mailprobe_probes_received_total{{{label}}} {len(arrived)} {t}")
                add("mailprobe_probes_lost", "counter", f"mailprobe_probes_lost_total{{{label}}} 0 {t}")
                add("mailprobe_probes_over_max", "counter",
                    f"mailprobe_probes_over_max_total{{{label}}} 0 {t}")
                add("mailprobe_probes_failed", "counter",
                    f'mailprobe_probes_failed_total{{{label},phase="smtp_connect",reason="connect"}}'
                    f" {len(failed)} {t}")  # fmt: skip
                delays = [p.measured_delay or 0.0 for p in arrived]
                name = "mailprobe_delivery_delay_seconds"
                for le in (*DELAY_BUCKETS, math.inf):
                    bound = "+Inf" if le == math.inf else repr(float(le))
                    add(name, "histogram", f'{name}_bucket{{{label},le="{bound}"}} '
                        f"{sum(d <= le for d in delays)} {t}")  # fmt: skip
                add(name, "histogram", f"{name}_sum{{{label}}} {sum(delays)} {t}")
                add(name, "histogram", f"{name}_count{{{label}}} {len(delays)} {t}")
    lines = []
    for family, (kind, samples) in families.items():
        lines.append(f"# TYPE {family} {kind}")
        lines += samples
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def month_span(month: str) -> Span:
    """The month's bounds in Berlin."""
    return month_bounds(month, TZ)
