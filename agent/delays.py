"""Split each arrived probe's delay into send, transit and receive parts from its Received chain.

Which hosts belong to which service comes from each account's `service_hosts` (host or domain
patterns, IP addresses or networks); by default the account's mail domain, its subdomains and its
SMTP and IMAP hosts.
"""

from __future__ import annotations

from dataclasses import replace

from mailprobe.agent.config import Config
from mailprobe.agent.probe import Probe
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
    """Adds send and receive delay, and the clock skew of its hops, to an arrived probe's record."""

    def __init__(self, config: Config) -> None:
        self._patterns = patterns_for(config)
        self._ends = {r.name: (r.from_, r.to) for r in config.routes}

    def apply(self, probe: Probe) -> Probe:
        """The record with send/receive delay and skew filled in where the chain allows.

        A probe only found late has no measured arrival, so no receive delay either; its send
        delay, read from the servers' own hops, stands.
        """
        if probe.arrived_at is None or not probe.received or probe.route not in self._ends:
            return probe
        sender, recipient = self._ends[probe.route]
        split = split_delay(
            parse_chain(probe.received),
            sent_at=probe.sent_at,
            accepted_at=probe.accepted_at,
            arrived_at=probe.arrived_at,
            sender=self._patterns[sender],
            recipient=self._patterns[recipient],
        )
        return replace(
            probe,
            send_delay_seconds=split.send_delay,
            receive_delay_seconds=None if probe.found_late else split.receive_delay,
            clock_skew_seconds=split.skew,
        )
