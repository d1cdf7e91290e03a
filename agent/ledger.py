"""The probe ledger: every probe, up/down transition, mailbox state and agent run, durable in SQLite.

One file in the state dir, WAL journal. Decisions:

- ``synchronous=FULL``: each commit fsyncs the WAL, so a write that returned survives power loss,
  not only a killed process. The ledger is the evidence a provider is billed on.
- Calls are synchronous, each one small transaction; a lock serializes them, so a caller may also
  run them in a thread.
- A probe is one row keyed by its id, with one column per field of ``mailprobe.agent.probe.Probe``
  (``ledger_schema`` maps them by name). A record replaces the row only when it is news
  (``Probe.supersedes``): a record seen twice, or replayed after a restart, changes nothing.
- Only base-check transitions (send, receive) are the record; derived ones are kept for reading.
- Agent runs are observed spans; ``heartbeat`` extends the open run, so a SIGKILL loses at most one
  heartbeat interval of observed time. An open run found at startup ends at its last heartbeat.
- Webmail samples and anti-virus tests have tables of their own (``ledger_services``); a webmail
  check's transitions (check ``webmail``) share the transitions table but never count as mail.
- ``compact`` deletes rows before a cut and adds what the caller computed of them to the
  ``baseline`` table (seconds and counts per route, check and kind), so totals continue unchanged.
  The ledger does no accounting of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mailprobe.agent.accounting import History, MailboxEvent
from mailprobe.agent.checks import BASE_CHECKS, Check, Transition
from mailprobe.agent.ledger_schema import (
    COUNT_KINDS,
    PROBE_FIELDS,
    SCHEMA_VERSION,
    UPSERT,
    probe_row,
    row_probe,
)
from mailprobe.agent.ledger_services import ServiceRecords
from mailprobe.agent.probe import Probe

__all__ = ["COUNT_KINDS", "PROBE_FIELDS", "SCHEMA_VERSION", "Ledger"]


class Ledger(ServiceRecords):
    """The SQLite probe ledger; open with ``Ledger.open(path)``."""

    _run_id: int | None = None

    # -- runs

    def started(self, at: float) -> None:
        """The agent starts observing at ``at``."""
        with self._tx() as cur:
            cur.execute("UPDATE runs SET stopped_at = last_seen WHERE stopped_at IS NULL")
            cur.execute("INSERT INTO runs (started_at, last_seen) VALUES (?, ?)", (at, at))
            self._run_id = cur.lastrowid

    def heartbeat(self, at: float) -> None:
        """Extend the current run to ``at``."""
        if self._run_id is not None:
            with self._tx() as cur:
                cur.execute(
                    "UPDATE runs SET last_seen = MAX(last_seen, ?) WHERE id = ?", (at, self._run_id)
                )

    def stopped(self, at: float) -> None:
        """The agent stops observing at ``at`` (clean shutdown)."""
        if self._run_id is not None:
            with self._tx() as cur:
                cur.execute(
                    "UPDATE runs SET last_seen = MAX(last_seen, ?), stopped_at = MAX(last_seen, ?) "
                    "WHERE id = ?",
                    (at, at, self._run_id),
                )
            self._run_id = None

    # -- probes

    def record(self, probe: Probe) -> bool:
        """Store a probe's record; False when it is not news (a duplicate or an older status)."""
        values = probe_row(probe)
        values["updated_at"] = max(
            t for t in (probe.sent_at, probe.accepted_at, probe.arrived_at, probe.lost_at,
                        probe.overdue_at, probe.over_max_at) if t is not None
        )  # fmt: skip
        with self._tx() as cur:
            row = cur.execute(
                "SELECT * FROM probes WHERE probe_id = ?", (probe.probe_id,)
            ).fetchone()
            if row is not None and not probe.supersedes(row_probe(row)):
                return False
            cur.execute(UPSERT, values)
            return True

    def probe(self, probe_id: str) -> Probe | None:
        """One probe by id."""
        rows = self._query("SELECT * FROM probes WHERE probe_id = ?", (probe_id,))
        return row_probe(rows[0]) if rows else None

    def in_flight(self, *, include_lost: bool = False) -> list[Probe]:
        """Accepted probes not yet seen (and lost ones too, which may still turn up)."""
        lost = "lost" if include_lost else "sent"
        rows = self._query(
            "SELECT * FROM probes WHERE status IN ('sent', 'overdue', ?) "
            "AND accepted_at IS NOT NULL ORDER BY sent_at",
            (lost,),
        )
        return [row_probe(r) for r in rows]

    def probes(self, start: float, end: float, route: str | None = None) -> list[Probe]:
        """Probes sent in ``[start, end)``, optionally of one route, in send order."""
        sql = "SELECT * FROM probes WHERE sent_at >= ? AND sent_at < ?"
        args: list[Any] = [start, end]
        if route is not None:
            sql += " AND route = ?"
            args.append(route)
        return [row_probe(r) for r in self._query(sql + " ORDER BY sent_at", args)]

    def routes(self) -> list[str]:
        """Every route the ledger has seen."""
        rows = self._query(
            "SELECT route FROM probes UNION SELECT route FROM transitions "
            "WHERE route != 'all' AND check_name != 'webmail'"
        )
        return sorted(r["route"] for r in rows)

    def counts(
        self, before: float = math.inf, *, compacted: bool = True
    ) -> dict[tuple[str, str], float]:
        """Probe counts per (route, kind) of probes sent before ``before``: what the counters say.

        Kinds: ``sent`` (every attempt), ``received``, ``overdue``, ``late``, ``lost``,
        ``over_max``, ``junked``, and ``failed:PHASE:REASON`` per failure. With ``compacted``, the counts
        folded into the baseline are included.
        """
        until = (before if math.isfinite(before) else 1e300,)
        out: dict[tuple[str, str], float] = {}
        for row in self._query(
            "SELECT route, COUNT(*) AS sent, COUNT(arrived_at) AS received, "
            "COUNT(overdue_at) AS overdue, COUNT(lost_at) AS lost, COUNT(over_max_at) AS over_max, "
            "SUM(status = 'late') AS late, SUM(junked) AS junked "
            "FROM probes WHERE sent_at < ? GROUP BY route",
            until,
        ):
            for kind in COUNT_KINDS:
                out[(row["route"], kind)] = float(row[kind] or 0)
        for row in self._query(
            "SELECT route, phase, reason, COUNT(*) AS n FROM probes WHERE status = 'failed' "
            "AND sent_at < ? GROUP BY route, phase, reason",
            until,
        ):
            key = (row["route"], f"failed:{row['phase'] or ''}:{row['reason'] or ''}")
            out[key] = float(row["n"])
        if compacted:
            for (route, check, kind), value in self.baseline().items():
                if check == "":
                    out[(route, kind)] = out.get((route, kind), 0.0) + value
        return out

    # -- transitions and mailbox states

    def record_transition(self, transition: Transition) -> bool:
        """Store a transition; False when it is already there."""
        with self._tx() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO transitions (route, check_name, state, at) "
                "VALUES (?, ?, ?, ?)",
                (transition.route, str(transition.check), transition.state, transition.at),
            )
            return cur.rowcount > 0

    def transitions(self, until: float = math.inf, *, base_only: bool = True) -> list[Transition]:
        """Transitions before ``until`` in time order (base checks only unless asked)."""
        rows = self._query(
            "SELECT route, check_name, state, at FROM transitions WHERE at < ? ORDER BY at, id",
            (until if math.isfinite(until) else 1e300,),
        )
        out = [
            Transition(r["route"], Check(r["check_name"]), r["state"] == "up", r["at"])
            for r in rows
        ]
        return [t for t in out if t.check in BASE_CHECKS] if base_only else out

    def record_mailbox(self, event: MailboxEvent) -> bool:
        """Store a mailbox state change of a route; False when it is already there."""
        with self._tx() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO mailbox (route, state, at, reason) VALUES (?, ?, ?, ?)",
                (event.route, "up" if event.up else "down", event.at, event.reason),
            )
            return cur.rowcount > 0

    def mailbox_events(self, since: float = -math.inf) -> list[MailboxEvent]:
        """Mailbox state changes from ``since`` on, in time order."""
        rows = self._query(
            "SELECT route, state, at, reason FROM mailbox WHERE at >= ? ORDER BY at, id",
            (since if math.isfinite(since) else -1e300,),
        )
        return [MailboxEvent(r["route"], r["state"] == "up", r["at"], r["reason"]) for r in rows]

    # -- restart and compaction

    def baseline(self) -> dict[tuple[str, str, str], float]:
        """Seconds and counts folded away by compaction, per (route, check, kind)."""
        rows = self._query("SELECT route, check_name, kind, value FROM baseline")
        return {(r["route"], r["check_name"], r["kind"]): r["value"] for r in rows}

    def history(self, *, replay_seconds: float) -> History:
        """What ``Accounting.restore`` needs to continue where the last run stopped."""
        runs = self.runs()
        last_seen = runs[-1][1] if runs else -math.inf
        replay_from = last_seen - replay_seconds
        since = replay_from if math.isfinite(replay_from) else -1e300
        rows = self._query(
            "SELECT * FROM probes WHERE sent_at >= ? OR (accepted_at IS NOT NULL "
            "AND status IN ('sent', 'overdue', 'lost')) ORDER BY sent_at",
            (since,),
        )
        over = self._query(
            "SELECT probe_id, route, over_max_at FROM probes WHERE over_max_at IS NOT NULL"
        )
        return History(
            runs=tuple(runs),
            transitions=tuple(self.transitions()),
            probes=tuple(row_probe(r) for r in rows),
            mailbox=tuple(self.mailbox_events(replay_from)),
            over_max={r["probe_id"]: (r["route"], r["over_max_at"]) for r in over},
            baseline=self.baseline(),
            replay_from=replay_from,
        )

    def compact(
        self,
        cut: float,
        carried: Mapping[tuple[str, str, str], float],
        still_down: Iterable[tuple[str, Check]],
    ) -> None:
        """Delete rows before ``cut``, adding ``carried`` (what they amounted to) to the baseline.

        ``still_down``: base checks down at the cut, whose down transition is kept at the cut.
        """
        with self._tx() as cur:
            for key, value in carried.items():
                cur.execute(
                    "INSERT INTO baseline (route, check_name, kind, value) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (route, check_name, kind) DO UPDATE SET value = value + ?",
                    (*key, value, value),
                )
            cur.execute("DELETE FROM probes WHERE sent_at < ?", (cut,))
            cur.execute("DELETE FROM transitions WHERE at < ?", (cut,))
            cur.execute("DELETE FROM mailbox WHERE at < ?", (cut,))
            cur.execute("DELETE FROM webmail WHERE at < ?", (cut,))
            cur.execute("DELETE FROM antivirus WHERE sent_at < ?", (cut,))
            for route, check in still_down:
                cur.execute(
                    "INSERT OR IGNORE INTO transitions (route, check_name, state, at) "
                    "VALUES (?, ?, 'down', ?)",
                    (route, str(check), cut),
                )
            cur.execute("DELETE FROM runs WHERE COALESCE(stopped_at, last_seen) <= ?", (cut,))
            cur.execute("UPDATE runs SET started_at = ? WHERE started_at < ?", (cut, cut))
