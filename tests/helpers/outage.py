"""What a mailbox outage leaves in the ledger, asserted the same way in virtual and real time."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from mailprobe.agent.probe import Probe


def assert_retried_and_found_late(
    probes: Sequence[Probe], t_out: float, t_back: float, minutes: int, retry: float
) -> None:
    """Probes sent while the mailbox was away: one every ``retry`` (give or take a second), each
    found late at the reconnect, never arriving before the mailbox was back, and no delay
    measured for them."""
    during = [p for p in probes if t_out < p.sent_at < t_back]
    gaps = [b.sent_at - a.sent_at for a, b in itertools.pairwise(during)]
    assert len(during) >= minutes * 60 / retry - 2, len(during)
    assert all(g <= retry + 1.0 for g in gaps), gaps
    for probe in during:
        assert probe.found_late, probe
        assert probe.arrived_at is not None
        assert probe.arrived_at >= max(probe.sent_at, t_back)
        assert probe.measured_delay is None
