"""Writes to the ledger that survive a ledger that cannot be written for a while.

Every record goes through ``Journal.write``: straight into the ledger while it works. When a write
fails (disk full, a read-only file, a locked database) the record is kept in memory, in order, and
the journal says so (``error``, counted in ``failures``); each later write and each ``flush`` tries
the oldest kept record first, so once the ledger works again it receives everything, in the order it
happened. Every write is idempotent in the ledger (a probe record only when it is news, transitions
and mailbox states unique, heartbeats monotonic), so a record written twice is stored once and
nothing is counted twice: counting happens when the record is made, never when it is written.

What is kept in memory is lost if the process dies before the ledger works again; /healthz and
``mailprobe_ledger_pending_writes`` show how much is at stake.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from collections.abc import Callable

from mailprobe.agent.accounting import MailboxEvent
from mailprobe.agent.antivirus_test import AntivirusTest
from mailprobe.agent.checks import Transition
from mailprobe.agent.ledger import Ledger
from mailprobe.agent.probe import Probe
from mailprobe.agent.webmail_sample import WebmailSample

log = logging.getLogger(__name__)

Record = Probe | Transition | MailboxEvent | WebmailSample | AntivirusTest
MAX_KEPT = 1_000_000  # far beyond days of any config; past it the oldest records go, counted


class Journal:
    """An ordered write-behind queue in front of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._kept: deque[Record] = deque()
        self._heartbeat: float | None = None
        self.error: str | None = None
        self.failures = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Records waiting for the ledger."""
        return len(self._kept) + (self._heartbeat is not None)

    def kept_probe(self, probe_id: str) -> Probe | None:
        """The newest record of a probe still waiting to be written."""
        for record in reversed(self._kept):
            if isinstance(record, Probe) and record.probe_id == probe_id:
                return record
        return None

    def write(self, record: Record) -> None:
        """Store ``record`` now, or keep it until the ledger works."""
        if len(self._kept) >= MAX_KEPT:
            self._kept.popleft()
            self.dropped += 1
        self._kept.append(record)
        self.flush()

    def heartbeat(self, at: float) -> None:
        """Extend the current run to ``at`` (only the latest heartbeat is kept)."""
        self._heartbeat = at
        self.flush()

    def flush(self) -> bool:
        """Write what is kept, oldest first; True when nothing is left."""
        try:
            while self._kept:
                self._store(self._kept[0])
                self._kept.popleft()
            if self._heartbeat is not None:
                self._ledger.heartbeat(self._heartbeat)
                self._heartbeat = None
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return False
        if self.error is not None:
            log.warning("ledger writable again: %s", self.error)
            self.error = None
        return True

    def _store(self, record: Record) -> None:
        if isinstance(record, Probe):
            self._ledger.record(record)
        elif isinstance(record, Transition):
            self._ledger.record_transition(record)
        elif isinstance(record, WebmailSample):
            self._ledger.record_webmail(record)
        elif isinstance(record, AntivirusTest):
            self._ledger.record_antivirus(record)
        else:
            self._ledger.record_mailbox(record)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        text = f"{type(exc).__name__}: {exc}"
        if self.error is None:
            log.error("ledger write failed, keeping %d record(s) in memory: %s", self.pending, text)
        self.error = text

    def read(self, what: str, read: Callable[[Ledger], Probe | None]) -> Probe | None:
        """A read of the ledger that never raises (a failing disk must not stop an arrival)."""
        try:
            return read(self._ledger)
        except (sqlite3.Error, OSError) as exc:
            log.warning("ledger read (%s) failed: %s", what, exc)
            return None
