"""The grid: each probe of a route lands in its own slot, one interval after the one before
(within the jitter), whichever way the jitter moved it."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from mailprobe.agent.config import parse_config
from mailprobe.agent.scheduler import Scheduler
from tests.helpers.clock import FakeClock


def scheduler(tmp_path: Path, routes: int) -> Scheduler:
    os.environ["MP_SCHED_SECRET"] = "s"
    os.environ["MP_SCHED_PW"] = "pw"
    endpoint = {"host": "mail.example.test", "username": "p@example.test",
                "password_env": "MP_SCHED_PW"}  # fmt: skip
    config = parse_config({
        "agent": {"secret_env": "MP_SCHED_SECRET", "state_dir": str(tmp_path)},
        "accounts": {"p": {"address": "p@example.test", "smtp": {**endpoint, "port": 587},
                           "imap": {**endpoint, "port": 993}}},
        "routes": [{"name": f"r{i}", "from": "p", "to": "p", "interval": "1m", "jitter": "6s"}
                   for i in range(routes)],
    })  # fmt: skip

    async def probe(route: object) -> bool:
        return True

    sched = Scheduler(config, FakeClock(), probe, lambda route: False, asyncio.Event(),
                      random.Random(7))  # fmt: skip
    sched._anchor = 1_000.0
    return sched


def test_probes_moved_early_or_late_by_the_jitter_keep_one_a_slot(tmp_path: Path) -> None:
    """Each next probe is one interval (+- twice the jitter) after the last, never a second
    probe in the same slot, and never drifting off the grid."""
    sched = scheduler(tmp_path, 10)
    for route in sched._slots.values():
        start = sched.first_due(route.route, 1_000.0)
        at, grid = start, start
        for k in range(1, 500):
            grid, nxt = sched.next_slot(route.route, at, grid)
            assert 60 - 12 <= nxt - at <= 60 + 12, (k, nxt - at)
            assert grid == start + k * 60
            assert abs(nxt - grid) <= 6  # on the grid, within the jitter
            at = nxt


def test_after_a_retry_off_the_grid_the_next_probe_is_the_next_grid_point(tmp_path: Path) -> None:
    """A quick retry at 3.75 intervals is followed by the probe of the grid point at 4, not 5."""
    sched = scheduler(tmp_path, 1)
    route = sched._slots["r0"].route
    start = sched.first_due(route, 1_000.0)
    for fraction in (3.05, 3.5, 3.75, 3.85):  # further than the jitter from the grid point
        grid, due = sched.next_slot(route, start + fraction * 60)
        assert grid == start + 4 * 60, fraction
        assert abs(due - grid) <= 6
