"""A watcher cancelled while its connect attempt fails ends, even when the cancellation was lost
on the way (asyncio.wait_for before Python 3.12 can return the attempt's outcome instead)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import pytest

from mailprobe.probes.errors import ConnectError
from mailprobe.probes.imap import MailboxWatcher
from mailprobe.probes.imap_session import PHASE, ImapEndpoint, ImapSession


async def test_a_cancel_swallowed_by_a_failing_connect_still_ends_the_watcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connect fails just as the task is cancelled and the CancelledError is lost: the
    watcher must not sleep and reconnect for ever (a shutdown waited on it)."""
    attempts = 0

    async def open_and_lose_the_cancel(self: ImapSession) -> None:
        nonlocal attempts
        attempts += 1
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        # What wait_for does when its inner call finished at the same moment: the cancel is lost.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        raise ConnectError("cannot connect", phase=PHASE)

    monkeypatch.setattr(ImapSession, "open", open_and_lose_the_cancel)
    endpoint = ImapEndpoint(host="127.0.0.1", port=1, security="plain", username="u",
                            password="p", tls_context=ssl.create_default_context())  # fmt: skip
    watcher = MailboxWatcher(endpoint, b"k", lambda arrival: None, lambda state: None)
    run = asyncio.ensure_future(watcher.run())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    assert attempts == 1
