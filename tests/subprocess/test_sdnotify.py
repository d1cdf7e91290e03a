"""sd_notify: datagrams on a real AF_UNIX socket the test binds, and `mailprobe run` under a
NOTIFY_SOCKET as systemd would start it with Type=notify and WatchdogSec=."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.sdnotify import Notifier, keep_alive, watchdog_interval
from tests.helpers.agents import AgentProcess, free_port, scrape
from tests.helpers.configs import config_data, write_config


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """The service manager's end: a bound datagram socket at tmp_path/notify."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


async def next_message(sock: socket.socket, timeout: float) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), timeout)


def received(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_each_send_is_one_datagram_of_newline_separated_assignments(
    manager: socket.socket, tmp_path: Path
) -> None:
    """send("READY=1", "STATUS=...") arrives as exactly one datagram, in order."""
    notifier = Notifier(str(tmp_path / "notify"))
    assert notifier.enabled
    assert notifier.send("READY=1", "STATUS=probing 2 route(s)")
    assert notifier.send("STOPPING=1")
    notifier.close()
    assert received(manager) == [b"READY=1\nSTATUS=probing 2 route(s)", b"STOPPING=1"]


def test_an_abstract_socket_name_is_written_with_a_leading_at() -> None:
    """NOTIFY_SOCKET=@name means the Linux abstract namespace (a leading NUL byte)."""
    name = f"mailprobe-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send("READY=1")
        notifier.close()
        assert sock.recv(100) == b"READY=1"


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    """Outside systemd nothing is sent and nothing fails."""
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.send("READY=1")


def test_a_manager_that_is_gone_is_reported_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket path nobody listens on: send returns False, one warning for many sends."""
    with (
        closing(Notifier(str(tmp_path / "nobody"))) as notifier,
        caplog.at_level(logging.WARNING, logger="mailprobe.agent.sdnotify"),
    ):
        assert not notifier.send("WATCHDOG=1")
        assert not notifier.send("WATCHDOG=1")
    assert len(caplog.records) == 1


def test_an_unsupported_socket_kind_disables_notification() -> None:
    """vsock addresses (systemd in a VM) are not spoken: disabled, not an error."""
    assert not Notifier("vsock:2:1234").enabled


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_deadline_and_only_for_this_process(
    environ: dict[str, str], expected: float | None
) -> None:
    """Pings every WATCHDOG_USEC / 2; none when unset, zero, garbage or for another pid."""
    assert watchdog_interval(environ) == expected


async def test_keep_alive_pings_until_cancelled(manager: socket.socket, tmp_path: Path) -> None:
    """WATCHDOG=1 again and again while the loop turns; nothing after cancellation."""
    with closing(Notifier(str(tmp_path / "notify"))) as notifier:
        task = asyncio.ensure_future(keep_alive(notifier, 0.02))
        pings = [await next_message(manager, 5) for _ in range(3)]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert pings == [b"WATCHDOG=1"] * 3
    received(manager)  # any sent before the cancellation landed
    await asyncio.sleep(0.1)
    assert received(manager) == []


async def test_keep_alive_without_a_watchdog_returns_at_once(tmp_path: Path) -> None:
    """No WatchdogSec: nothing to ping, the helper ends by itself."""
    with closing(Notifier(str(tmp_path / "notify"))) as notifier:
        await asyncio.wait_for(keep_alive(notifier, None), 1)


# ----------------------------------------------------------------------------- the daemon



async def test_run_under_systemd_notifies_ready_after_binding_pings_and_says_stopping(
    mail: EmbeddedMailService, manager: socket.socket, tmp_path: Path
) -> None:
    """`mailprobe run` with NOTIFY_SOCKET and WATCHDOG_USEC: READY=1 only once /metrics
    answers, WATCHDOG=1 pings while it runs, STOPPING=1 on SIGTERM, then a clean exit."""
    port = free_port()
    data = config_data(mail, tmp_path / "state", interval="1s")
    data["agent"]["listen"] = f"127.0.0.1:{port}"
    write_config(data, tmp_path / "c.yaml")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"}
    agent = AgentProcess(tmp_path / "c.yaml", tmp_path / "agent.log", env=env)
    try:
        await agent.start()
        messages = []
        while not messages or not messages[-1].startswith(b"READY=1"):
            messages.append(await next_message(manager, 20))
        # Bound before READY=1: a scrape right after it is answered.
        assert "mailprobe_probes_sent_total" in await scrape(port)
        ready = messages[-1].decode().split("\n")
        assert ready[1] == f"STATUS=probing 1 route(s); metrics on http://127.0.0.1:{port}/metrics"
        assert set(messages[:-1]) <= {b"WATCHDOG=1"}
        pings = [await next_message(manager, 2) for _ in range(3)]
        assert pings == [b"WATCHDOG=1"] * 3
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGTERM)
        while (message := await next_message(manager, 10)) == b"WATCHDOG=1":
            pass
        assert message == b"STOPPING=1"
        assert await asyncio.wait_for(agent.proc.wait(), 15) == 0
    finally:
        await agent.ensure_gone()
