"""Exported values that must never go down, within a run and across restarts.

A counter that decreases reads to Prometheus as a reset, and ``increase()`` would count the whole
total again. Raw totals can shrink: a down period closed by a sample sent before the previous
scrape, or a restart whose ledger lacks the writes of a failing disk. So every exported counter
passes through ``Floors.apply`` exactly once, which returns the largest value exported so far, and
the floors are written to ``exported.json`` in the state dir before the values are exported.

Keys are the series as the exposition writes them (``name{label="value",...}``, labels sorted),
one format for every series. Month-to-date gauges are floored under a key that names the month, so
they may start again from zero when the contract month turns; old months are dropped on write.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

FILE_VERSION = 2
# Version 1 keyed "route\tcheck\tkind"; these are the series they meant.
_V1_KINDS = {
    "observed": "mailprobe_observed_seconds_total",
    "down": "mailprobe_down_seconds_total",
    "maintenance": "mailprobe_maintenance_seconds_total",
}


def series_key(name: str, labels: Mapping[str, str]) -> str:
    """``name{a="x",b="y"}`` with labels in name order (the key of a floor)."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _from_v1(data: Mapping[str, object]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        route, check, kind = [*key.split("\t"), "", "", ""][:3]
        if kind == "over_max":
            out[series_key("mailprobe_probes_over_max_total", {"route": route})] = float(value)  # type: ignore[arg-type]
        elif kind in _V1_KINDS:
            labels = {"route": route, "check": check}
            out[series_key(_V1_KINDS[kind], labels)] = float(value)  # type: ignore[arg-type]
    return out


class Floors:
    """The largest value exported per series, persisted in ``path`` (None: in memory only)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._values: dict[str, float] = {}
        self._dirty = False

    def load(self) -> None:
        """Read the floors a previous run wrote; a missing or unreadable file starts from zero."""
        if self._path is None:
            return
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self._path, exc)
            return
        if not isinstance(data, dict):
            return
        if data.get("version") == FILE_VERSION and isinstance(data.get("series"), dict):
            series = data["series"]
            values = {str(k): float(v) for k, v in series.items() if isinstance(v, int | float)}
        else:
            values = _from_v1(data)
        for key, value in values.items():
            self._values[key] = max(value, self._values.get(key, 0.0))

    def apply(self, name: str, labels: Mapping[str, str], value: float) -> float:
        """``value``, or the largest one exported before for this series if that is larger."""
        key = series_key(name, labels)
        best = self._values.get(key)
        if best is not None and best >= value:
            return best
        self._values[key] = value
        self._dirty = True
        return value

    def get(self, name: str, labels: Mapping[str, str]) -> float | None:
        """The floor of a series, if it has one."""
        return self._values.get(series_key(name, labels))

    def attach(self, path: Path) -> None:
        """Keep the floors in ``path`` from now on (a run with a ledger; probe-once has none)."""
        self._path = path

    def commit(self, keep_month: str | None = None) -> None:
        """Write the floors (atomically, fsynced) if any rose; raises OSError when it cannot.

        ``keep_month``: month-keyed floors of other months are dropped.
        """
        if not self._dirty or self._path is None:
            return
        if keep_month is not None:
            self._values = {
                k: v for k, v in self._values.items()
                if 'month="' not in k or f'month="{keep_month}"' in k
            }  # fmt: skip
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump({"version": FILE_VERSION, "series": self._values}, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self._path)
        self._dirty = False
