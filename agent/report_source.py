"""What the report reads of a ledger: ``mailprobe.agent.ledger.Ledger`` is one, and the fleet's
vantages merged by the quorum (``mailprobe.agent.fleet_report``) are another."""

from __future__ import annotations

from typing import Protocol

from mailprobe.agent.antivirus_test import AntivirusTest
from mailprobe.agent.checks import Transition
from mailprobe.agent.probe import Probe
from mailprobe.agent.webmail_sample import WebmailSample
from mailprobe.agent.windows import Span


class ServiceSource(Protocol):
    """What the webmail and anti-virus figures read of a ledger."""

    def webmail_transitions(self, until: float = ...) -> list[Transition]:
        """Transitions of the webmail checks before ``until``, in time order."""
        ...

    def webmail(self, start: float, end: float) -> list[WebmailSample]:
        """Webmail loads started in ``[start, end)``, in time order."""
        ...

    def antivirus(self, start: float = ..., end: float = ...) -> list[AntivirusTest]:
        """Anti-virus tests sent in ``[start, end)``, in order."""
        ...


class MonthSource(ServiceSource, Protocol):
    """What the report reads of a ledger (``mailprobe.agent.ledger.Ledger`` is one)."""

    def routes(self) -> list[str]:
        """Every route seen."""
        ...

    def runs(self) -> list[Span]:
        """Observed spans, normalized."""
        ...

    def transitions(self, until: float = ...) -> list[Transition]:
        """Base-check transitions before ``until``, in time order."""
        ...

    def probes(self, start: float, end: float, route: str | None = None) -> list[Probe]:
        """Probes sent in ``[start, end)``, in send order."""
        ...
