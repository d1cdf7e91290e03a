"""Split a probe's end-to-end delay into send, transit and receive parts using its Received chain.

What the contract's delay clauses mean for one probe:

- send delay: `accepted_at` (the submission server's 250 after DATA) -> the message leaves the
  sender's service. The host that writes a Received header dates it when it takes the message in,
  so the moment of leaving is the date on the first hop, after the sender's own hops, that the
  sender's service did not write: the next service already had the message then.
- receive delay: the date on the first hop the recipient's service wrote (it had the message)
  -> `arrived_at`, when the watcher saw it in the mailbox.
- transit: between the two, e.g. a third-party filtering relay. It is 0 when the sender hands
  straight to the recipient's MX, whose hop then both leaves one service and reaches the other.
- same service (the chain never leaves the sender's service and the recipient's service wrote
  hops too, e.g. an account probing itself): the split point is the hop that hands to the
  mailbox store (the last LMTP or local-delivery hop, else the recipient's last hop). send =
  accepted -> that hop, transit = 0, receive = that hop -> arrived.

Hop ownership: a hop belongs to the service whose host wrote it (by). A hop that does not name
its writer ("by localhost", a bare host label, no by at all as in qmail's "(qmail 1234 invoked
from network)") is judged by the next hop's sender, which is the same host, and failing that by
its own sender, since such hops are hand-offs inside one service; when nothing tells, the hop is
skipped. Names that a pattern matches explicitly always count.

Time: `accepted_at` and `arrived_at` are the agent's sub-second clock; Received dates are whole
seconds, so a hop dated d happened within [d, d + 1). A split point is the middle of that second
after clipping it to [accepted_at, arrived_at], and never earlier than the point before it. The
parts are therefore >= 0 and add up to end_to_end = arrived_at - accepted_at; a message seen in
the mailbox before the 250 reached the client counts as end_to_end 0, not as a negative delay.

Skew is the largest backwards step, in seconds, among the readings in chain order: sent_at,
every hop date, and arrived_at, with accepted_at placed just before the hop where the send delay
ends. The submission server dates its own hop at MAIL FROM, before it answers 250, and pre-queue
filters write theirs before the reply too, so hops before that point are only held to sent_at.
The agent's times are compared as the whole second a server would have written, so a delivery
within the same second is no skew; a step of one second or more between dates is (a later hop
cannot have happened a whole second before an earlier one). Out-of-order points are clipped.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from mailprobe.probes.received import Hop

__all__ = ["DelaySplit", "ServicePatterns", "split_delay"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names a host calls itself when it does not say who it is.
_ANONYMOUS: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "unknown"})


@dataclass(frozen=True, slots=True)
class ServicePatterns:
    """The hosts of one mail service: case-insensitive name globs and IP networks."""

    hosts: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> ServicePatterns:
        """Read "*.example.com", "mx?.example.com", "mail.example.com", "192.0.2.0/24", "::1"."""
        hosts: list[str] = []
        networks: list[Network] = []
        for pattern in patterns:
            text = pattern.strip().strip("[]").rstrip(".").lower()
            if not text:
                raise ValueError(f"empty service pattern {pattern!r}")
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                hosts.append(text)
        return cls(tuple(dict.fromkeys(hosts)), tuple(dict.fromkeys(networks)))

    @classmethod
    def default_for(cls, domain: str, hosts: Iterable[str] = ()) -> ServicePatterns:
        """Patterns for an account when config names none: its mail domain and its server hosts.

        The domain and its subdomains, each SMTP/IMAP host, and the subdomains of each host's
        parent ("smtp.mail.example.net" adds "*.mail.example.net", "mail.test" adds nothing, so a
        bare TLD is never claimed). Providers whose relays live under other names (Outlook's
        *.prod.outlook.com, Gmail's mx.google.com for a Workspace domain) need explicit patterns.
        """
        patterns: list[str] = []
        domain = domain.rpartition("@")[2].strip().rstrip(".").lower()
        if domain:
            patterns += [domain, f"*.{domain}"]
        for host in hosts:
            name = host.strip().strip("[]").rstrip(".").lower()
            if not name:
                continue
            patterns.append(name)
            parent = name.partition(".")[2]
            if _ip(name) is None and "." in parent:
                patterns.append(f"*.{parent}")
        return cls.parse(patterns)

    def matches_host(self, name: str) -> bool:
        """True when a host name or IP address belongs to the service."""
        ip = _ip(name)
        if ip is not None and any(ip in network for network in self.networks):
            return True
        name = name.rstrip(".").lower()
        return any(fnmatchcase(name, pattern.lower()) for pattern in self.hosts)

    def matches(self, hop: Hop) -> bool:
        """True when the service wrote the hop: by its by_host, or its sender when by is anonymous."""
        return _owner(self, hop, None) is True


@dataclass(frozen=True, slots=True)
class DelaySplit:
    """One probe's delay in seconds: send + transit + receive == end_to_end when all are known."""

    send_delay: float | None
    transit: float | None
    receive_delay: float | None
    skew: float
    end_to_end: float


def split_delay(
    hops: Sequence[Hop],
    *,
    sent_at: float,
    accepted_at: float | None,
    arrived_at: float,
    sender: ServicePatterns,
    recipient: ServicePatterns,
) -> DelaySplit:
    """Split accepted_at -> arrived_at at the hops where the message left and reached a service.

    `hops` are oldest first (parse_chain). Without accepted_at (the 250 never reached the client)
    the split starts at sent_at. Parts the headers cannot place are None.
    """
    start = sent_at if accepted_at is None else accepted_at
    end = max(arrived_at, start)
    leave, reach = _split_points(hops, sender, recipient)
    leave_at = _point(hops, leave, start, end, start)
    reach_at = _point(hops, reach, start, end, start if leave_at is None else leave_at)
    return DelaySplit(
        send_delay=None if leave_at is None else leave_at - start,
        transit=None if leave_at is None or reach_at is None else reach_at - leave_at,
        receive_delay=None if reach_at is None else end - reach_at,
        skew=_skew(hops, min(sent_at, start), start, end, leave if leave is not None else reach),
        end_to_end=end - start,
    )


def _split_points(
    hops: Sequence[Hop], sender: ServicePatterns, recipient: ServicePatterns
) -> tuple[int | None, int | None]:
    """Indexes of the hop that marks leaving the sender's service and reaching the recipient's."""
    by_sender, by_recipient = _owners(sender, hops), _owners(recipient, hops)
    first_sent = next((i for i, owned in enumerate(by_sender) if owned), None)
    if first_sent is None:
        return None, next((i for i, owned in enumerate(by_recipient) if owned), None)
    leave = next((i for i in range(first_sent + 1, len(hops)) if by_sender[i] is False), None)
    if leave is not None:
        return leave, next((i for i in range(leave, len(hops)) if by_recipient[i]), None)
    # Same service: the split point is the hand-off to the mailbox store.
    stored = [i for i in range(first_sent, len(hops)) if by_recipient[i]]
    if not stored:
        return None, None
    handoff = next((i for i in reversed(stored) if _delivers(hops[i])), stored[-1])
    return handoff, handoff


def _delivers(hop: Hop) -> bool:
    proto = (hop.with_proto or "").lower()
    return proto.startswith("lmtp") or proto == "local"


def _point(
    hops: Sequence[Hop], index: int | None, start: float, end: float, not_before: float
) -> float | None:
    """Where a hop falls in [start, end]: the middle of its whole second, clipped, >= not_before."""
    if index is None:
        return None
    date = hops[index].date
    if date is None:
        return None
    low = min(max(date, start), end)
    high = min(max(date + 1, start), end)
    return max(not_before, (low + high) / 2)


def _skew(
    hops: Sequence[Hop], first: float, start: float, end: float, post_queue: int | None
) -> float:
    """Largest backwards step between readings, at whole-second resolution for the agent's times."""
    latest: float = math.floor(first)
    worst = 0.0
    for i, hop in enumerate(hops):
        if i == post_queue:
            latest = max(latest, math.floor(start))
        if hop.date is None:
            continue
        worst = max(worst, latest - hop.date)
        latest = max(latest, hop.date)
    return float(max(worst, latest - math.floor(end)))


def _owners(service: ServicePatterns, hops: Sequence[Hop]) -> list[bool | None]:
    following: list[Hop | None] = [*hops[1:], None]
    return [_owner(service, hop, after) for hop, after in zip(hops, following, strict=False)]


def _owner(service: ServicePatterns, hop: Hop, after: Hop | None) -> bool | None:
    """Whether the service wrote the hop; None when the hop does not say who wrote it."""
    by = hop.by_host
    if by is not None and service.matches_host(by):
        return True
    if _names_someone(by):
        return False
    # The host that wrote this hop is the one that sent the next.
    for side in (after, hop):
        verdict = None if side is None else _sender_owner(service, side)
        if verdict is not None:
            return verdict
    return None


def _sender_owner(service: ServicePatterns, hop: Hop) -> bool | None:
    names = [name for name in (hop.from_host, hop.from_ip) if name is not None]
    if any(service.matches_host(name) for name in names):
        return True
    if any(_names_someone(name) for name in names):
        return False
    return None


def _names_someone(name: str | None) -> bool:
    """False for names that identify no service: none, localhost, loopback, a bare host label.

    RFC 5321 asks for a fully qualified name after "by"; a single label is a host that was never
    given one (Dovecot's default is the machine's own hostname), so it says nothing about whose
    it is.
    """
    if name is None or name.rstrip(".").lower() in _ANONYMOUS:
        return False
    ip = _ip(name)
    if ip is None:
        return "." in name.strip(".")
    return not (ip.is_loopback or ip.is_unspecified)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
