"""The ledger's records beside the probes: webmail loads and anti-virus tests, and the webmail
checks' transitions (check ``webmail`` in the shared transitions table, never counted as mail).

Each write is idempotent like the rest of the ledger: a load is stored once per check and start;
an anti-virus test moves from pending to its outcome once, and may gain its follow-up afterwards.
"""

from __future__ import annotations

import json
import math
import sqlite3

from mailprobe.agent.antivirus_test import AntivirusTest
from mailprobe.agent.checks import Check, Transition
from mailprobe.agent.ledger_schema import Store
from mailprobe.agent.webmail_sample import WebmailSample


class ServiceRecords(Store):
    """Webmail samples, anti-virus tests and webmail transitions in the ledger."""

    def webmail_transitions(self, until: float = math.inf) -> list[Transition]:
        """Transitions of the webmail checks before ``until``, in time order."""
        rows = self._query(
            "SELECT route, state, at FROM transitions WHERE check_name = 'webmail' AND at < ? "
            "ORDER BY at, id",
            (until if math.isfinite(until) else 1e300,),
        )
        return [Transition(r["route"], Check.WEBMAIL, r["state"] == "up", r["at"]) for r in rows]

    def record_webmail(self, sample: WebmailSample) -> bool:
        """Store a webmail load; False when it is already there."""
        with self._tx() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO webmail (check_name, at, mode, ok, seconds, reason, phase, "
                "status_code, redirects, cert_not_after, phases) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sample.check, sample.at, sample.mode, int(sample.ok), sample.seconds,
                 sample.reason, sample.phase, sample.status_code, sample.redirects,
                 sample.cert_not_after, json.dumps(dict(sample.phases), sort_keys=True)),
            )  # fmt: skip
            return cur.rowcount > 0

    def webmail(self, start: float, end: float) -> list[WebmailSample]:
        """Webmail loads started in ``[start, end)``, in time order."""
        rows = self._query(
            "SELECT * FROM webmail WHERE at >= ? AND at < ? ORDER BY at, id",
            (start if math.isfinite(start) else -1e300, end if math.isfinite(end) else 1e300),
        )
        return [_webmail_sample(r) for r in rows]

    def record_antivirus(self, test: AntivirusTest) -> bool:
        """Store an anti-virus test; a decided one is never changed back to pending."""
        with self._tx() as cur:
            row = cur.execute(
                "SELECT outcome, follow_up FROM antivirus WHERE probe_id = ?", (test.probe_id,)
            ).fetchone()
            if (
                row is not None
                and row["outcome"] != "pending"
                and not (test.follow_up is not None and row["follow_up"] is None)
            ):
                return False
            cur.execute(
                "INSERT OR REPLACE INTO antivirus (probe_id, route, sent_at, outcome, decided_at, "
                "reply_code, detail, follow_up) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (test.probe_id, test.route, test.sent_at, str(test.outcome), test.decided_at,
                 test.reply_code, test.detail, test.follow_up),
            )  # fmt: skip
            return True

    def antivirus(
        self, start: float = -math.inf, end: float = math.inf, *, pending: bool = False
    ) -> list[AntivirusTest]:
        """Anti-virus tests sent in ``[start, end)`` (only the pending ones if asked), in order."""
        sql = "SELECT * FROM antivirus WHERE sent_at >= ? AND sent_at < ?"
        if pending:
            sql += " AND outcome = 'pending'"
        rows = self._query(
            sql + " ORDER BY sent_at",
            (start if math.isfinite(start) else -1e300, end if math.isfinite(end) else 1e300),
        )
        return [_antivirus_test(r) for r in rows]


def _webmail_sample(r: sqlite3.Row) -> WebmailSample:
    return WebmailSample(
        r["check_name"], r["at"], r["mode"], bool(r["ok"]), r["seconds"], r["reason"], r["phase"],
        r["status_code"], r["redirects"], r["cert_not_after"], json.loads(r["phases"]),
    )  # fmt: skip


def _antivirus_test(r: sqlite3.Row) -> AntivirusTest:
    return AntivirusTest(
        r["probe_id"], r["route"], r["sent_at"], r["outcome"], r["decided_at"], r["reply_code"],
        r["detail"], r["follow_up"],
    )  # fmt: skip
