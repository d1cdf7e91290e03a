"""The contract limits the dashboards mark, read from the clause registry (mailprobe.agent.clauses).

They are the defaults of ``SlaConfig()``, the seed contract, so the dashboards, the exported
targets, the recording rules' fallbacks and the report agree on one set of figures. Colour
thresholds and the wording of panels use these; the budget panels read the limits an agent
actually exports (clause:mailprobe_sla_target_*:effective), so a stricter contract in the
agent's config shows there.
"""

from __future__ import annotations

from mailprobe.agent.clauses import by_id, sla_targets
from mailprobe.agent.sla import SlaConfig

SLA = SlaConfig()
_MONTH = 30 * 86400.0  # a month's length matters only with sla.ratio_mode, off by default
_TARGETS = sla_targets(SLA, _MONTH)


def whole(value: float) -> float | int:
    """``44`` rather than ``44.0``, so the JSON and the panel texts read as the contract does."""
    return int(value) if float(value).is_integer() else value


DISCONNECTION_MINUTES = whole(_TARGETS["disconnection"] / 60)
FAILURE_MINUTES = whole(_TARGETS["failure"] / 60)
MAINTENANCE_MINUTES = whole(_TARGETS["maintenance"] / 60)
DELAY_AVERAGE_SECONDS = whole(_TARGETS["delivery_delay_average"])
AVAILABILITY_PERCENT = whole(by_id("availability").limit(SLA, _MONTH))
OVER_MAXIMUM_ALLOWED = int(by_id("delivery_over_maximum").limit(SLA, _MONTH))
TROUBLE_FREE_DAYS = int(by_id("trouble_free_days").limit(SLA, _MONTH))
# The disconnection clause states minutes; the percentage is what its burn-rate alerts protect.
CONNECTIVITY_PERCENT = whole(SLA.connectivity_percent)
DELAY_MAXIMUM_SECONDS = whole(SLA.delay_maximum)
COVERAGE_FLOOR = SLA.coverage_floor_percent / 100  # as a ratio, like the coverage rules

DELAY_AVERAGE_TEXT = f"{DELAY_AVERAGE_SECONDS / 60:g} min"
DELAY_MAXIMUM_TEXT = f"{DELAY_MAXIMUM_SECONDS / 3600:g} h"
OVER_MAXIMUM_TEXT = {1: "once", 2: "twice"}.get(OVER_MAXIMUM_ALLOWED, f"{OVER_MAXIMUM_ALLOWED} times")

WEBMAIL_LIMIT_SECONDS = whole(SLA.webmail.limit)
WEBMAIL_OVER_ALLOWED = int(by_id("webmail").limit(SLA, _MONTH))
ANTIVIRUS_DELAY_SECONDS = whole(_TARGETS["anti_virus_delay"])
