"""Split each arrived probe's delay into send, transit and receive parts from its Received chain.

Which hosts belong to which service comes from each account's `service_hosts` (host or domain
patterns, IP addresses or networks); by default the account's mail domain, its subdomains and its
SMTP and IMAP hosts.
"""

from __future__ import annotations

from dataclasses import replace

from mailprobe.agent.config import Config
from mailprobe.agent.results import ProbeResult
from mailprobe.probes.delaysplit import ServicePatterns, split_delay
from mailprobe.probes.received import parse_chain


def patterns_for(config: Config) -> dict[str, ServicePatterns]:
    """Service patterns per account name."""
    out: dict[str, ServicePatterns] = {}
    for name, acc in config.accounts.items():
        if acc.service_hosts:
            out[name] = ServicePatterns.parse(acc.service_hosts)
        else:
            hosts = [ep.host for ep in (acc.smtp, acc.imap) if ep is not None]
            out[name] = ServicePatterns.default_for(acc.address.rpartition("@")[2], hosts)
    return out


class DelaySplitter:
    """Adds send and receive delay to arrived probes, and reports clock skew."""

    def __init__(self, config: Config) -> None:
        self._patterns = patterns_for(config)
        self._ends = {r.name: (r.from_, r.to) for r in config.routes}

    def apply(self, result: ProbeResult) -> tuple[ProbeResult, float | None]:
        """The result with send/receive delay filled in where the chain allows, and the skew."""
        if result.arrived_at is None or not result.received or result.route not in self._ends:
            return result, None
        sender, recipient = self._ends[result.route]
        split = split_delay(
            parse_chain(result.received),
            sent_at=result.sent_at,
            accepted_at=result.accepted_at,
            arrived_at=result.arrived_at,
            sender=self._patterns[sender],
            recipient=self._patterns[recipient],
        )
        updated = replace(
            result,
            send_delay_seconds=split.send_delay,
            receive_delay_seconds=split.receive_delay,
        )
        return updated, split.skew
