"""Start and stop of the embedded service: ports, files, tasks and threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mailprobe.agent.demo.service import EmbeddedMailService
from tests.helpers.clients import imap_login, refuses_connection, smtp_client
from tests.helpers.configs import USERS


def _ports(service: EmbeddedMailService) -> tuple[int, ...]:
    return (service.smtp_port, service.smtps_port, service.imap_port, service.imaps_port)


async def test_start_binds_four_distinct_ports_on_the_given_host() -> None:
    """Every listener gets its own kernel-chosen port, reachable on host."""
    async with EmbeddedMailService(USERS) as service:
        ports = _ports(service)
        assert len(set(ports)) == 4
        assert 0 not in ports
        for port in ports:
            assert not await refuses_connection(service.host, port)


async def test_stop_with_open_sessions_closes_everything_it_started() -> None:
    """stop() drops open sessions, closes every port, removes the CA file, and leaves no
    task or thread behind."""
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    service = EmbeddedMailService(USERS)
    await service.start()
    ports = _ports(service)
    ca_file = service.ca_file
    assert ca_file.is_file()
    smtp = smtp_client(service)
    await smtp.connect()
    await smtp.login("alice@demo.test", service.users["alice@demo.test"])
    lost = asyncio.Event()
    await imap_login(service, "bob@demo.test", on_lost=lambda _exc: lost.set())

    await service.stop()

    await asyncio.wait_for(lost.wait(), 5)
    assert not smtp.is_connected
    for port in ports:
        assert await refuses_connection(service.host, port)
    assert not ca_file.exists()
    assert asyncio.all_tasks() - tasks_before == set()
    assert set(threading.enumerate()) == threads_before


async def test_stop_twice_and_stop_unstarted_are_harmless() -> None:
    """stop() is a no-op before start() (the service still starts and serves after it), and a
    second stop() neither raises nor reopens anything: the ports stay closed."""
    service = EmbeddedMailService(USERS)
    await service.stop()
    await service.start()
    ports = (service.smtp_port, service.smtps_port, service.imap_port, service.imaps_port)
    client = await imap_login(service, "alice@demo.test")  # the early stop() broke nothing
    await client.logout()
    await service.stop()
    await service.stop()
    for port in ports:
        assert await refuses_connection(service.host, port), port


async def test_service_starts_once() -> None:
    """A stopped service cannot be started again: its ports and CA are gone."""
    service = EmbeddedMailService(USERS)
    async with service:
        pass
    with pytest.raises(RuntimeError):
        await service.start()


def test_ports_before_start_raise() -> None:
    """Reading a port before start() is an error, not port 0."""
    service = EmbeddedMailService(USERS)
    with pytest.raises(RuntimeError):
        _ = service.smtp_port


@pytest.mark.parametrize(
    ("setting", "value"),
    [("fail_rate", 1.5), ("fail_rate", -0.1), ("delay", -1.0), ("delay_fraction", 2.0)],
)
def test_out_of_range_trouble_settings_are_rejected(setting: str, value: float) -> None:
    """fail_rate and delay_fraction are probabilities; delay is not negative."""
    settings = {"fail_rate": 0.0, "delay": 0.0, "delay_fraction": 1.0, setting: value}
    with pytest.raises(ValueError, match=setting):
        EmbeddedMailService(
            USERS,
            fail_rate=settings["fail_rate"],
            delay=settings["delay"],
            delay_fraction=settings["delay_fraction"],
        )


async def test_outage_of_unknown_side_is_rejected(mail: EmbeddedMailService) -> None:
    """set_outage() names a side, smtp or imap."""
    with pytest.raises(ValueError, match="side"):
        await mail.set_outage("pop3", True)  # type: ignore[arg-type]
