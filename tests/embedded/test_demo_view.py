"""The demo's route view (issue 10 item 5): `waiting` before a route's first probe, `failing
(unconfirmed)` after one failure, `down` only once the accounting confirms it (mailprobe_check_up),
and `up` again after the recovery; driven by a real Agent on the embedded service, virtual time."""

from __future__ import annotations

import random
from pathlib import Path

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.demo.view import RouteView, SideState, samples, summary, table
from mailprobe.agent.probe import Probe, Status
from mailprobe.agent.runtime import Agent
from mailprobe.probes.errors import Phase, Reason
from tests.helpers.agents import run_for, start, stop
from tests.helpers.clock import FakeClock
from tests.helpers.configs import USERS, config_data, write_config


def states(agent: Agent, view: RouteView) -> tuple[SideState, SideState]:
    """(send, receive) as the demo shows them, from the agent's own registry."""
    data = samples(agent.registry)
    return (
        view.state("send", data.get(("mailprobe_check_up", "a2b", "send"))),
        view.state("receive", data.get(("mailprobe_check_up", "a2b", "receive"))),
    )


async def test_send_side_waiting_then_failing_then_down_then_up(tmp_path: Path) -> None:
    """SMTP refused from the start: one failure is unconfirmed, the retry after confirm_retry
    confirms it; the first good probe after the outage brings it back."""
    clock = FakeClock()
    view = RouteView()
    async with EmbeddedMailService(USERS) as mail:
        config = write_config(config_data(mail, tmp_path / "state"), tmp_path / "c.yaml")
        agent = Agent(config, clock=clock, rng=random.Random(3), serve_http=False,
                      sinks=[view.add])  # fmt: skip
        await mail.set_outage("smtp", down=True)
        assert states(agent, view) == (SideState.WAITING, SideState.WAITING)  # nothing sent yet
        task = await start(agent)  # the only route's grid phase is 0: its first probe goes at once
        try:
            await run_for(clock, agent, 3)  # that first probe: refused
            assert view.failed == 1
            assert states(agent, view) == (SideState.FAILING, SideState.WAITING)
            assert "send failing (unconfirmed), receive waiting" in summary(
                {"a2b": view}, samples(agent.registry)
            )
            await run_for(clock, agent, 16)  # the retry, confirm_retry (15 s) later
            assert view.failed == 2
            assert states(agent, view) == (SideState.DOWN, SideState.WAITING)
            await mail.set_outage("smtp", down=False)
            await run_for(clock, agent, 16)
            assert view.ok >= 1
            assert states(agent, view) == (SideState.UP, SideState.UP)
        finally:
            await stop(agent, task)


def result(status: Status, phase: str | None = None, delay: float | None = None) -> Probe:
    return Probe("p" * 32, "a2b", status, 0.0, phase=Phase(phase) if phase else None,
                 reason=Reason.CONNECT if phase else None, delay_seconds=delay)  # fmt: skip


def test_each_side_follows_its_own_results() -> None:
    """A refused submission marks send, an overdue or lost probe marks receive; a confirmed down
    from the accounting wins over any result."""
    view = RouteView()
    assert view.state("send", None) is SideState.WAITING
    view.add(result(Status.OVERDUE))
    assert (view.state("send", 1.0), view.state("receive", 1.0)) == (
        SideState.UP, SideState.FAILING,
    )  # fmt: skip
    view.add(result(Status.OK, delay=0.02))
    assert view.state("receive", 1.0) is SideState.UP
    view.add(result(Status.FAILED, phase="smtp_connect"))
    assert (view.state("send", 1.0), view.state("receive", 1.0)) == (
        SideState.FAILING, SideState.UP,
    )  # fmt: skip
    view.add(result(Status.LOST, phase="delivery"))
    assert view.state("receive", 1.0) is SideState.FAILING
    assert view.state("receive", 0.0) is SideState.DOWN
    assert view.state("send", 0.0) is SideState.DOWN


def test_live_table_renders_every_state() -> None:
    """The rich table shows the state words, one row per route."""
    from rich.console import Console

    views = {"fresh": RouteView(), "broken": RouteView()}
    views["broken"].add(result(Status.FAILED, phase="smtp_auth"))
    console = Console(width=200, record=True)
    console.print(table(views, {("mailprobe_check_up", "broken", "send"): 0.0}))
    text = console.export_text()
    assert "waiting" in text
    assert "down" in text
    assert "smtp_auth/connect" in text
