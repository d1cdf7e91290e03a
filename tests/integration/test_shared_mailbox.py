"""Two `mailprobe run` agents and `probe-once` on one mailbox of the real Postfix + Dovecot.

Half a minute of the scenario bench/shared_mailbox.py runs for ten minutes (tests/helpers/shared_mailbox.py):
none of the sharing agents' probes is lost, late, failed or taken by another; a killed agent's
probes stay until `foreign_probe_max_age` after they were sent and are then removed;
the ordinary mail in the mailbox keeps its flags and is all still there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.shared_mailbox import run_shared_mailbox
from tests.mailstack import MailStack

pytestmark = pytest.mark.integration


async def test_two_agents_and_probe_once_share_a_mailbox_for_half_a_minute(
    mailstack: MailStack, tmp_path: Path
) -> None:
    """Zero lost, overdue or stolen probes; the dead agent's probes cleaned after max age."""
    result = await run_shared_mailbox(mailstack, tmp_path, 30.0, max_age=10.0, log=lambda _: None)
    assert result.problems == []
    for agent in result.agents.values():
        assert agent.sent >= 8, agent
        assert agent.ok == agent.sent, agent
    assert result.probe_once_runs >= 3
    assert result.probe_once_ok == result.probe_once_runs
    assert set(result.stale_gone_at) == set(result.stale_sent_at)
    assert len(result.ordinary_after) == 3
    assert result.probes_left == []
