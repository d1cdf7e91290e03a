"""The pieces a config reload moves, each on its own: the plan of what changes, the in-flight
registry's marks, a route's accounting retired, supervised tasks stopped and replaced."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mailprobe.agent.accounting_routes import RouteAccounting
from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.config import Config, parse_config
from mailprobe.agent.http import MetricsServer, _loopback
from mailprobe.agent.inflight import InFlight, Marks
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.reload import plan
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.supervisor import Supervisor
from tests.helpers.sim import Sim


def data(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s3cret\n")

    def account(address: str) -> dict[str, Any]:
        return {"address": address, "smtp": {"host": "127.0.0.1", "port": 25, "security": "plain"},
                "imap": {"host": "127.0.0.1", "port": 143, "security": "plain"}}  # fmt: skip

    return {
        "agent": {"listen": "127.0.0.1:9478", "state_dir": str(tmp_path / "state"),
                  "secret_file": str(tmp_path / "secret")},
        "accounts": {"a": account("a@example.com"), "b": account("b@example.com")},
        "routes": [{"name": "r1", "from": "a", "to": "b"}, {"name": "r2", "from": "b", "to": "a"},
                   {"name": "r3", "from": "a", "to": "a"}],
    }  # fmt: skip


def edited(base: dict[str, Any], change: Any) -> Config:
    new = copy.deepcopy(base)
    change(new)
    return parse_config(new)


def test_routes_added_removed_changed_and_moved(tmp_path: Path) -> None:
    """Names tell routes apart: new ones, gone ones, new settings, other accounts."""
    base = data(tmp_path)

    def change(d: dict[str, Any]) -> None:
        d["routes"] = [{"name": "r1", "from": "a", "to": "b", "interval": "30s"},
                       {"name": "r3", "from": "b", "to": "a"},
                       {"name": "r4", "from": "b", "to": "b"}]  # fmt: skip

    steps = plan(parse_config(base), edited(base, change))
    assert (steps.added, steps.removed, steps.changed, steps.moved) == (("r4",), ("r2",), ("r1",), ("r3",))
    assert steps.retired == ("r2", "r3")
    assert steps.restart == ()
    assert steps.describe() == "routes added: r4; removed: r2; changed: r1, r3"


def test_the_same_config_changes_nothing(tmp_path: Path) -> None:
    """Reloading an unchanged file is a reload that applies nothing."""
    base = data(tmp_path)
    steps = plan(parse_config(base), parse_config(base))
    assert steps == type(steps)()
    assert steps.describe() == "no route or account changed"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["agent"].update(listen="127.0.0.1:9479"),
         "agent.listen: changed ('127.0.0.1:9478' -> '127.0.0.1:9479'); a restart is needed"),
        (lambda d: d["agent"].update(state_dir="/tmp/elsewhere"), "agent.state_dir: changed ("),
        (lambda d: d["agent"].update(vantage={"name": "paris"}), "agent.vantage: changed; a restart"),
        (lambda d: d["agent"].update(log_format="json"), "agent.log_format: changed ('text' -> 'json')"),
        (lambda d: d.update(sla={"confirm_retry": "20s"}), "sla: changed; a restart is needed"),
        (lambda d: d.update(maintenance=[{"name": "w", "daily": True, "start": "02:00",
                                          "duration": "1h"}]), "maintenance: changed"),
    ],
)  # fmt: skip
def test_what_only_a_restart_can_apply_is_named(tmp_path: Path, change: Any, expected: str) -> None:
    """Each key that needs a restart is one line saying so."""
    base = data(tmp_path)
    steps = plan(parse_config(base), edited(base, change))
    assert len(steps.restart) == 1
    assert steps.restart[0].startswith(expected), steps.restart


def test_a_new_secret_needs_a_restart_and_is_not_shown(tmp_path: Path) -> None:
    """Probes in flight are signed with the old one; the value is never written out."""
    base = data(tmp_path)
    steps = plan(parse_config(base), parse_config(base), secret_changed=True)
    assert steps.restart == ("agent.secret: the probe-signing secret changed; a restart is "
                             "needed to apply it",)  # fmt: skip


def test_quorum_headers_and_grace_are_applied_live(tmp_path: Path) -> None:
    """fleet.quorum, agent.extra_headers and agent.shutdown_grace need no restart."""
    base = data(tmp_path)

    def change(d: dict[str, Any]) -> None:
        d["fleet"] = {"quorum": 3}
        d["agent"]["extra_headers"] = {"X-Filter": "bypass"}
        d["agent"]["shutdown_grace"] = "9s"

    assert plan(parse_config(base), edited(base, change)).restart == ()


def test_changed_accounts_are_those_whose_settings_or_passwords_changed(tmp_path: Path) -> None:
    """A new server for b is a changed account; a password read anew is said by the caller."""
    base = data(tmp_path)
    steps = plan(parse_config(base), edited(base, lambda d: d["accounts"]["b"]["imap"].update(port=993)),
                 changed_accounts=frozenset({"a"}))  # fmt: skip
    assert steps.accounts == frozenset({"a", "b"})
    assert steps.describe() == "accounts changed: a, b"


def held(pid: str, route: str, at: float) -> Probe:
    return Probe(pid, route, Status.SENT, at, accepted_at=at + 0.1)


def test_in_flight_probes_of_a_removed_route_keep_its_marks() -> None:
    """After a reload drops route s, its held probe is still swept with s's marks; no new probe
    of s is taken; r's probes get r's new marks."""
    flight = InFlight({"r": Marks(100, 1000), "s": Marks(50, 500)}, 3600)
    flight.add(held("p1", "s", 0.0))
    flight.add(held("p2", "r", 0.0))
    flight.set_marks({"r": Marks(10, 1000)})
    assert not flight.tracks("s")
    with pytest.raises(ValueError, match="known route"):
        flight.add(held("p3", "s", 1.0))
    swept = {new.probe_id: new.status for _, new in flight.sweep(60.0)}
    assert swept == {"p1": Status.OVERDUE, "p2": Status.OVERDUE}
    assert flight.get("p1") is not None


def test_a_retired_route_ends_its_outage_at_the_reload_and_ignores_later_samples() -> None:
    """Its history stays; its open down period ends when it stops being observed; a probe of
    before that turns up lost afterwards makes no new outage."""
    acc = RouteAccounting(("a", "b"), SlaConfig(), clock=lambda: 0.0)
    sim = Sim(acc)
    sim.start(0.0)
    sim.steady("a", 0, 1000)
    sim.steady("b", 0, 2000)
    for sent in (1000, 1060):
        sim.probe("a", sent, delay=None)  # never delivered: receive goes down from 1000
    pending = sim.probe("a", 1120, delay=None)  # still awaited when the reload comes
    sim.run(1400)
    assert not acc.is_up("a", Check.RECEIVE)
    transitions = acc.retire("a", 1400.0)
    assert Transition("a", Check.RECEIVE, True, 1400.0) in transitions
    lost = held(pending, "a", 1120).lost(1120 + 3600)
    assert acc.record(lost) == []
    sim.run(2000)
    snap = acc.snapshot(2000)
    assert snap.totals[("a", Check.RECEIVE)].down == pytest.approx(400.0)
    assert snap.totals[("a", Check.SEND)].down == 0.0
    assert acc.is_up("a", Check.RECEIVE)
    acc.add_route("a")  # added back: its samples count again
    assert acc.record(Probe("x", "a", Status.FAILED, 2100.0, phase="smtp_connect",  # type: ignore[arg-type]
                            reason="connect")) == []  # type: ignore[arg-type]  # a suspicion, not yet down
    assert acc.unsettled("a")


async def test_a_stopped_task_is_not_restarted_and_a_replaced_one_is_cancelled_at_shutdown() -> None:
    """stop() ends one task by name; a task started under a name still in use is cancelled with
    the others when the agent stops."""
    ran: list[str] = []
    async with asyncio.TaskGroup() as group:
        sup = Supervisor(group)

        async def forever(name: str) -> None:
            ran.append(name)
            await asyncio.Event().wait()

        first = sup.start("route:r", lambda: forever("first"))
        second = sup.start("route:r", lambda: forever("second"))
        other = sup.start("watcher:w", lambda: forever("w"))
        await asyncio.sleep(0)
        stopped = sup.stop("watcher:w")
        assert stopped is other
        await asyncio.sleep(0)
        assert other.cancelled()
        assert sup.stop("watcher:w") is None
        sup.cancel()
    assert first.cancelled()
    assert second.cancelled()
    assert ran == ["first", "second", "w"]


@pytest.mark.parametrize(("peer", "allowed"), [
    (("127.0.0.1", 5000), True), (("127.0.0.2", 5000), True), (("::1", 5000, 0, 0), True),
    (("::ffff:127.0.0.1", 5000, 0, 0), True), (("192.0.2.7", 5000), False),
    (("2001:db8::1", 5000, 0, 0), False), (("::ffff:192.0.2.7", 5000, 0, 0), False),
    (None, False), ("", False), (("not an address", 1), False),
])  # fmt: skip
def test_reload_over_http_is_for_loopback_peers_only(peer: object, allowed: bool) -> None:
    """Only a peer on the machine itself may reload; a Unix socket or no address may not."""
    assert _loopback(peer) is allowed


async def test_a_reload_asked_from_elsewhere_is_forbidden_and_not_run() -> None:
    """403 for a peer that is not loopback, and the reload is never called."""
    called: list[bool] = []

    async def reload() -> tuple[bool, str]:
        called.append(True)
        return True, "reloaded"

    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, lambda: {})
    server.reload = reload

    class Peer:
        def __init__(self, address: object) -> None:
            self.address = address

        def get_extra_info(self, name: str) -> object:
            return self.address if name == "peername" else None

    status, _, body = await server._reload(Peer(("192.0.2.7", 4000)))  # type: ignore[arg-type]
    assert (status, body, called) == ("403 Forbidden", b"reload only from the machine itself\n", [])
    status, _, body = await server._reload(Peer(("127.0.0.1", 4000)))  # type: ignore[arg-type]
    assert (status, body, called) == ("200 OK", b"reloaded\n", [True])
