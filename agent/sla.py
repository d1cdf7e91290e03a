"""The written guarantee as config: the ``sla:`` section's targets, accounting parameters, remedies.

Defaults are the seed contract: disconnection < 44 min a month, failure <= 100 min, maintenance
<= 100 min, availability >= 99.99 %, >= 360 trouble-free days a year, delivery delay average <= 1 min
and maximum <= 1 h with at most two probes over it, webmail open within 10 s (more than two loads
over it is a breach), no legitimate mail filed as spam; connectivity, delay, operations and webmail
breaches owe double service time, anti-spam and anti-virus breaches the monthly fee.

How each clause is judged is in ``mailprobe.agent.clauses``; what a breach owes, in
``mailprobe.agent.remedies``.
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from mailprobe.agent.config_types import Count, Flag, Number, Text
from mailprobe.agent.durations import Duration, positive
from mailprobe.agent.windows import TimeZoneName

PositiveDuration = Annotated[Duration, AfterValidator(positive)]


class RemedyKind(enum.StrEnum):
    """What a breached clause owes."""

    DOUBLE_SERVICE_TIME = "double_service_time"
    FEE_WAIVED = "fee_waived"
    PERCENTAGE = "percentage"


class Remedy(BaseModel):
    """The remedy for one clause group."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: RemedyKind = RemedyKind.DOUBLE_SERVICE_TIME
    coefficient: Number = Field(default=1.0, gt=0)
    rate_percent_per_hour: Number | None = Field(default=None, gt=0)


class Remedies(BaseModel):
    """Remedy per clause group."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connectivity: Remedy = Remedy()
    delay: Remedy = Remedy()
    operations: Remedy = Remedy()
    anti_spam: Remedy = Remedy(kind=RemedyKind.FEE_WAIVED)
    webmail: Remedy = Remedy()
    anti_virus: Remedy = Remedy(kind=RemedyKind.FEE_WAIVED)


class WebmailPolicy(enum.StrEnum):
    """When loads over the limit breach the webmail clause."""

    ANY = "any"  # a single load over the limit
    COUNT = "count"  # more than `allowed` loads over the limit
    PERCENTILE = "percentile"  # the `percentile`th load time over the limit


class WebmailSla(BaseModel):
    """The webmail clause: webmail opens within ``limit``, judged by ``policy``.

    The default reads the promise as the contract reads its delay maximum: more than two loads
    over the limit in a month is a breach (``any`` is the strictest reading, ``percentile`` the
    most lenient).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: PositiveDuration = 10.0
    policy: WebmailPolicy = WebmailPolicy.COUNT
    allowed: Count = Field(default=2, ge=0)
    percentile: Number = Field(default=95.0, gt=0, lt=100)


class AntivirusSla(BaseModel):
    """The anti-virus clause: a test virus never delivered intact, clean mail not delayed by it.

    ``delay_allowed``: how much longer than the route's median a clean probe sent right after
    a test virus may take on average (the contract's one-minute average delay by default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    delay_allowed: PositiveDuration = 60.0


class Compensation(BaseModel):
    """Money terms for the percentage formula and the waived fee."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contract_total: Number | None = Field(default=None, gt=0)
    monthly_fee: Number | None = Field(default=None, gt=0)
    currency: Annotated[Text, Field(max_length=16)] = ""
    minimum_per_event: Number = Field(default=1000.0, ge=0)
    cap_percent: Number = Field(default=15.0, gt=0, le=100)


class SlaConfig(BaseModel):
    """The ``sla:`` section: targets, accounting parameters and remedies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: TimeZoneName = "UTC"
    disconnection_minutes: Number = Field(default=44.0, ge=0)
    connectivity_percent: Number = Field(default=99.9, gt=0, lt=100)
    ratio_mode: Flag = False
    failure_minutes: Number = Field(default=100.0, ge=0)
    maintenance_minutes: Number = Field(default=100.0, ge=0)
    availability_percent: Number = Field(default=99.99, gt=0, lt=100)
    trouble_free_days: Count = Field(default=360, ge=0, le=365)
    delay_average: PositiveDuration = 60.0
    delay_maximum: PositiveDuration = 3600.0
    over_maximum_allowed: Count = Field(default=2, ge=0)
    # Probes filed as spam (into the junk folder) a month before anti-spam is breached.
    junked_allowed: Count = Field(default=0, ge=0)
    receive_deadline: PositiveDuration = 300.0
    confirm_retry: PositiveDuration = 15.0
    confirm_within: PositiveDuration = 120.0
    coverage_floor_percent: Number = Field(default=90.0, ge=0, le=100)
    webmail: WebmailSla = WebmailSla()
    antivirus: AntivirusSla = AntivirusSla()
    remedies: Remedies = Remedies()
    compensation: Compensation = Compensation()

    @model_validator(mode="after")
    def _consistent(self) -> SlaConfig:
        problems = []
        if self.confirm_within < self.confirm_retry:
            problems.append("confirm_within must be at least confirm_retry")
        if self.delay_maximum < self.delay_average:
            problems.append("delay_maximum must be at least delay_average")
        uses_percentage = any(
            getattr(self.remedies, group).kind is RemedyKind.PERCENTAGE
            for group in Remedies.model_fields
        )
        if uses_percentage and self.compensation.contract_total is None:
            problems.append("a percentage remedy needs compensation.contract_total")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def disconnection_limit_minutes(self, month_seconds: float) -> float:
        """The connectivity limit: stated minutes, or the ratio of this month's length."""
        if self.ratio_mode:
            return (100.0 - self.connectivity_percent) / 100.0 * month_seconds / 60.0
        return self.disconnection_minutes
