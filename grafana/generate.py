"""Generate the Grafana dashboards (grafana/dashboards/*.json) from code.

Run `python grafana/generate.py` after changing the dashboards' code (this folder) and commit
the JSON it writes; tests/subprocess/test_grafana.py fails while the committed JSON differs from
what this produces. Built with grafana-foundation-sdk for Grafana 11.6 (the `!11.6.0` build of
the SDK); the limits come from the clause registry, so mailprobe must be importable.

- panels.py: the datasource, queries, thresholds, panel kinds, the board that lays them out;
- contract_limits.py: the contract's limits, from mailprobe.agent.clauses;
- sla_dashboard.py: the SLA overview, on the recording rules (the agent's contract month);
- route_dashboard.py: one route's detail, on the agent's raw series.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from panels import Board
from route_dashboard import route_detail
from sla_dashboard import sla_overview

OUT = Path(__file__).resolve().parent / "dashboards"
DASHBOARDS: dict[str, Callable[[], Board]] = {
    "mailprobe-sla.json": sla_overview,
    "mailprobe-route.json": route_detail,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: build().render() for name, build in DASHBOARDS.items()}


def main() -> int:
    """Rewrite grafana/dashboards/*.json."""
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
