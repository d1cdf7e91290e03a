"""The vantage point an agent probes from: its name, how /metrics says it, how the ledger keeps it.

Prometheus' way for an exporter to say what it is: an info series,
``mailprobe_vantage_info{vantage,site,region} 1`` (like ``node_uname_info`` or ``*_build_info``),
joined where a name is wanted (``* on (job, instance) group_left (vantage) mailprobe_vantage_info``).
The agent does not put a ``vantage`` label on every series: a label every series of a target
carries is a target label, and setting those is the scrape config's job (``labels:`` of a static
config, relabelling, ``external_labels``), not the exporter's; it would also collide with a target
label of the same name. So the rules count vantage points by target (``job``, ``instance``) and
take the names from the info series.

``mailprobe_quorum`` is the fleet's quorum as this agent's config says it (``fleet.quorum``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from mailprobe.agent.config_fleet import VantageSettings

META_KEY = "vantage"
"""The ledger's meta row that names the vantage its agent last ran as."""


@dataclass(frozen=True, slots=True)
class Vantage:
    """A vantage point: a name (a token), and optionally where it is."""

    name: str
    site: str = ""
    region: str = ""

    def labels(self) -> dict[str, str]:
        """The labels of ``mailprobe_vantage_info``."""
        return {"vantage": self.name, "site": self.site, "region": self.region}

    def describe(self) -> str:
        """``name (site, region)`` for logs and reports."""
        where = ", ".join(part for part in (self.site, self.region) if part)
        return f"{self.name} ({where})" if where else self.name


def of_config(settings: VantageSettings, identity: str) -> Vantage:
    """The configured vantage; named by the agent's identity when the config names none."""
    return Vantage(settings.name or identity, settings.site or "", settings.region or "")


def to_meta(vantage: Vantage) -> str:
    """The ledger's meta value for a vantage."""
    return json.dumps(asdict(vantage), sort_keys=True)


def from_meta(value: str | None) -> Vantage | None:
    """A vantage read back from the ledger's meta value; None when there is none or it is bad."""
    if value is None:
        return None
    try:
        data = json.loads(value)
        return Vantage(str(data["name"]), str(data.get("site", "")), str(data.get("region", "")))
    except (ValueError, TypeError, KeyError):
        return None


class VantageCollector(Collector):
    """``mailprobe_vantage_info`` and ``mailprobe_quorum``, read at each scrape."""

    def __init__(self, vantage: Vantage, quorum: Callable[[], int]) -> None:
        self._vantage = vantage
        self._quorum = quorum

    def collect(self) -> Iterator[Metric]:
        """The two series."""
        info = InfoMetricFamily(
            "mailprobe_vantage",
            "The vantage point this agent probes from (agent.vantage); join on job and instance.",
        )
        info.add_metric([], self._vantage.labels())
        yield info
        quorum = GaugeMetricFamily(
            "mailprobe_quorum",
            "Vantage points that must see a fault at once for it to count as the provider's "
            "(fleet.quorum).",
        )
        quorum.add_metric([], float(self._quorum()))
        yield quorum


def register(registry: CollectorRegistry, vantage: Vantage, quorum: Callable[[], int]) -> None:
    """Export the vantage and the quorum from ``registry``."""
    registry.register(VantageCollector(vantage, quorum))
