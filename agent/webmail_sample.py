"""One webmail load as the agent keeps it: the record the ledger stores and the clause reads.

A sample is a down-sample of its check's ``webmail`` confirmation (``mailprobe.agent.confirm``)
when the load failed or took longer than the contract's limit (``sla.webmail.limit``); a load
slower than the limit that still opened counts as over the limit, and so does a failed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mailprobe.probes.webmail import WebmailResult


@dataclass(frozen=True, slots=True)
class WebmailSample:
    """A webmail load: when it started, how long it took, and whether (or why not) it worked."""

    check: str
    at: float  # Unix seconds, when the load started
    mode: str
    ok: bool
    seconds: float
    reason: str | None = None  # one of WEBMAIL_REASONS when not ok
    phase: str | None = None
    status_code: int | None = None
    redirects: int = 0
    cert_not_after: float | None = None
    phases: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", MappingProxyType(dict(self.phases)))

    @classmethod
    def of(cls, check: str, at: float, result: WebmailResult) -> WebmailSample:
        """The sample of a probe's result."""
        return cls(
            check, at, result.mode, result.ok, result.total_seconds, result.reason, result.phase,
            result.status_code, result.redirects, result.cert_not_after, result.phases,
        )  # fmt: skip

    def over(self, limit: float) -> bool:
        """Not opened within ``limit``: slower than it, or failed."""
        return not self.ok or self.seconds > limit

    def describe(self) -> str:
        """One log line (logfmt)."""
        text = f"webmail check={self.check} ok={str(self.ok).lower()} seconds={self.seconds:.3f}"
        if self.reason is not None:
            text += f" phase={self.phase} reason={self.reason}"
        if self.status_code is not None:
            text += f" status={self.status_code}"
        return text
