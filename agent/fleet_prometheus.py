"""Each vantage's record from Prometheus: the agents' seconds counters, over the HTTP query API.

Only ``/api/v1/query`` and ``/api/v1/query_range`` are used, so Prometheus, Thanos Query, Mimir
(``http://mimir/prometheus``) and VictoriaMetrics answer the same. A vantage point is one scraped
agent (``job``, ``instance``), named by its ``mailprobe_vantage_info`` where it exports one.

- When it observed: ``mailprobe_observed_seconds_total{route="all",check="any"}``; when each base
  check was down: ``mailprobe_down_seconds_total`` plus ``mailprobe_maintenance_seconds_total``
  (down inside a window; the report applies the windows itself). Rebuilt into spans by
  ``mailprobe.agent.fleet_counters``: for the report month from the raw samples (a range selector,
  a day a query), for the rolling year before it from 5-minute steps (they only decide
  trouble-free days).
- The month's probe figures: ``increase()`` over the month of the probe counters, the delay
  histograms' sums and counts (their averages) and buckets (a bound of the maximum).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from mailprobe.agent.checks import ALL_ROUTES, BASE_CHECKS, Check
from mailprobe.agent.clauses import DelayStats
from mailprobe.agent.fleet import ScopeStats, VantageRecord
from mailprobe.agent.fleet_access import PrometheusAccess
from mailprobe.agent.fleet_counters import spans_from_counter
from mailprobe.agent.sla import SlaConfig
from mailprobe.agent.vantage import Vantage
from mailprobe.agent.windows import Span, month_bounds, shift_month

DEFAULT_TIMEOUT = 30.0
RAW_CHUNK = 86400
"""Seconds of raw samples asked for at once (a day: some 6000 samples a series at 15 s)."""
COARSE_STEP = 300
"""Step of the months before the report month, in seconds."""
MAX_POINTS = 10_000
"""Points a series of one range query (Prometheus refuses more than 11,000)."""
_KINDS = ("delivery", "send", "receive")
Key = tuple[str, str]  # (job, instance): one vantage point
Labels = tuple[tuple[str, str], ...]  # a series' labels, sorted
Samples = list[tuple[float, float]]


class PrometheusError(Exception):
    """Prometheus cannot be asked, or refused a query; the message says which, in one line."""


@dataclass(frozen=True, slots=True)
class _Series:
    labels: Mapping[str, str]
    samples: Samples


class PrometheusSource:
    """The agents' series in a Prometheus-compatible query API."""

    def __init__(
        self,
        url: str,
        *,
        match: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        access: PrometheusAccess | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._match = match.strip().strip(",")
        access = access or PrometheusAccess()
        self._client = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport, headers=access.headers,
            auth=access.basic, verify=access.tls_context(),
        )  # fmt: skip

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    # -- the API

    def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"--prometheus {self.url}: cannot query it: {exc}") from None
        if response.status_code in (401, 403):
            raise PrometheusError(
                f"--prometheus {self.url}: access refused (HTTP {response.status_code}): give "
                "--prometheus-user with --prometheus-password-file, --prometheus-bearer-file or "
                "the header the store wants (--prometheus-header)"
            )
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(
                f"--prometheus {self.url}: {path} answered HTTP {response.status_code}, not the "
                "Prometheus API (is the URL the one the query API is under?)"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "no error given") if isinstance(body, dict) else body
            raise PrometheusError(f"--prometheus {self.url}: query refused: {error}")
        return body.get("data", {})

    def _selector(self, name: str, *extra: str, **labels: str) -> str:
        matchers = [*extra, *(f'{k}=~"{v}"' for k, v in labels.items())]
        if self._match:
            matchers.append(self._match)
        return f"{name}{{{','.join(matchers)}}}"

    def _series(self, data: Any) -> list[_Series]:
        out = []
        for item in data.get("result", []):
            metric = {k: str(v) for k, v in item.get("metric", {}).items()}
            points = item.get("values") or ([item["value"]] if "value" in item else [])
            out.append(_Series(metric, [(float(t), float(v)) for t, v in points]))
        return out

    def instant(self, query: str, at: float) -> list[_Series]:
        """An instant query's series (one sample each; a range selector gives raw samples)."""
        return self._series(self._get("/api/v1/query", {"query": query, "time": f"{at:.3f}"}))

    def raw(self, selector: str, start: float, end: float) -> dict[Labels, _Series]:
        """Every raw sample of the selected series in ``(start, end]``, a day a query."""
        out: dict[Labels, _Series] = {}
        cursor = start
        while cursor < end:
            upto = min(end, cursor + RAW_CHUNK)
            seconds = max(1, math.ceil(upto - cursor))
            for series in self.instant(f"{selector}[{seconds}s]", upto):
                key = tuple(sorted(series.labels.items()))
                kept = out.setdefault(key, _Series(series.labels, []))
                kept.samples.extend(p for p in series.samples if p[0] > cursor)
            cursor = upto
        return out

    def ranged(self, query: str, start: float, end: float, step: int) -> dict[Labels, _Series]:
        """A range query in pieces of at most ``MAX_POINTS`` steps."""
        out: dict[Labels, _Series] = {}
        cursor = start
        while cursor <= end:
            upto = min(end, cursor + step * (MAX_POINTS - 1))
            data = self._get("/api/v1/query_range", {"query": query, "start": f"{cursor:.3f}",
                                                      "end": f"{upto:.3f}", "step": f"{step}s"})  # fmt: skip
            for series in self._series(data):
                key = tuple(sorted(series.labels.items()))
                out.setdefault(key, _Series(series.labels, [])).samples.extend(series.samples)
            cursor = upto + step
        return out

    # -- what the report needs

    def observed_in(self, start: float, end: float) -> bool:
        """Some agent observed in ``[start, end)``."""
        seconds = max(1, math.ceil(end - start))
        query = f"increase({self._selector('mailprobe_observed_seconds_total', route=ALL_ROUTES)}[{seconds}s])"
        return any(p[1] > 0 for s in self.instant(query, end) for p in s.samples)

    def precision(self) -> str:
        """How precise records read from here are, in words."""
        return (
            f"Read from Prometheus at {self.url}: each vantage's down periods rebuilt from its "
            "exported seconds counters (the raw samples of the month; 5-minute steps for the "
            "months before, which decide only trouble-free days). Their seconds are the "
            "counters' own; each start and end is known to within one scrape interval (at "
            "least the agent's 5 s update). Probe counts and delays are the counters' increase "
            "over the month; a delay maximum is the bound of its histogram bucket."
        )

    def records(self, sla: SlaConfig, month: str, *, now: float) -> list[VantageRecord]:
        """One record per agent with series in the rolling year up to the month's end (or now)."""
        start, end = month_bounds(month, sla.timezone)
        until = max(start, min(end, now))
        year_start = month_bounds(shift_month(month, -11), sla.timezone)[0]
        raw_from = start - COARSE_STEP  # a sample before the month: its first interval is known
        observed = self._counter_spans(
            "mailprobe_observed_seconds_total", year_start, raw_from, until, route=ALL_ROUTES,
            check="any",
        )  # fmt: skip
        down = self._counter_spans(
            "mailprobe_down_seconds_total", year_start, raw_from, until,
            also="mailprobe_maintenance_seconds_total", check="send|receive",
        )  # fmt: skip
        names = self._names(until, max(1, math.ceil(until - year_start)))
        stats = self._month_stats(start, until, sla)
        keys = sorted({_key(labels) for labels in observed} | {_key(labels) for labels in down})
        records = []
        for key in keys:
            mine = {labels: spans for labels, spans in down.items() if _key(labels) == key}
            routes = sorted({dict(labels)["route"] for labels in mine})
            record_down: dict[tuple[str, Check], tuple[Span, ...]] = {
                (dict(labels)["route"], Check(dict(labels)["check"])): tuple(spans)
                for labels, spans in mine.items()
                if dict(labels).get("check") in {str(c) for c in BASE_CHECKS}
            }
            seen = next((spans for labels, spans in observed.items() if _key(labels) == key), [])
            records.append(
                VantageRecord(
                    vantage=names.get(key, Vantage(key[1] or key[0])),
                    source=f"{key[0]}/{key[1]}",
                    observed=tuple(seen),
                    down=record_down,
                    routes=tuple(routes),
                    stats=stats.get(key, {}),
                )
            )
        return sorted(_unique(records), key=lambda r: (r.vantage.name, r.source))

    def _counter_spans(
        self, name: str, year_start: float, raw_from: float, until: float, *, also: str = "",
        **labels: str,
    ) -> dict[Labels, list[Span]]:  # fmt: skip
        """Per series (labels without the name): the spans its counter grew in."""
        coarse_query = self._selector(name, **labels)
        if also:
            coarse_query = f"{coarse_query} + {self._selector(also, **labels)}"
        coarse = self.ranged(coarse_query, year_start - COARSE_STEP, raw_from, COARSE_STEP)
        fine = _sum_by_time(
            [self.raw(self._selector(n, **labels), raw_from, until) for n in (name, also) if n]
        )
        out: dict[Labels, list[Span]] = {}
        for key in {*(_without_name(k) for k in coarse), *fine}:
            early = [p for s in coarse.values() if _without_name(tuple(sorted(s.labels.items()))) == key
                     for p in s.samples if p[0] < raw_from]  # fmt: skip
            samples = sorted(early) + fine.get(key, [])
            out[key] = spans_from_counter(samples)
        return out

    def _names(self, at: float, seconds: int) -> dict[Key, Vantage]:
        query = f"last_over_time({self._selector('mailprobe_vantage_info')}[{seconds}s])"
        out = {}
        for series in self.instant(query, at):
            labels = series.labels
            out[_key(tuple(labels.items()))] = Vantage(
                labels.get("vantage", "") or labels.get("instance", ""), labels.get("site", ""),
                labels.get("region", ""),
            )  # fmt: skip
        return out

    def _increase(self, query: str, start: float, until: float) -> list[_Series]:
        seconds = max(1, math.ceil(until - start))
        return self.instant(query.replace("RANGE", f"{seconds}s"), until)

    def _month_stats(
        self, start: float, until: float, sla: SlaConfig
    ) -> dict[Key, dict[str, ScopeStats]]:
        """Per vantage and scope (each route, and ``all``): the month's probe figures."""
        per: dict[Key, dict[str, dict[str, float]]] = {}

        def add(kind: str, series: list[_Series], field: str | None = None) -> None:
            for s in series:
                route = s.labels.get("route", "")
                value = s.samples[0][1] if s.samples else 0.0
                if not route or math.isnan(value):
                    continue
                name = kind if field is None else f"{kind}:{field}:{s.labels.get('le', '')}"
                for scope in (route, ALL_ROUTES):
                    slot = per.setdefault(_key(tuple(s.labels.items())), {}).setdefault(scope, {})
                    slot[name] = slot.get(name, 0.0) + value

        for kind in ("sent", "received", "lost", "over_max"):
            metric = (
                "mailprobe_probes_over_max_total"
                if kind == "over_max"
                else f"mailprobe_probes_{kind}_total"
            )
            add(kind, self._increase(f"increase({self._selector(metric)}[RANGE])", start, until))
        failed = self._selector("mailprobe_probes_failed_total", 'phase!="delivery"')
        add("failed", self._increase(f"sum without (phase, reason) (increase({failed}[RANGE]))",
                                     start, until))  # fmt: skip
        for kind in _KINDS:
            base = f"mailprobe_{kind}_delay_seconds"
            for part in ("sum", "count"):
                add(f"{kind}_{part}", self._increase(
                    f"increase({self._selector(f'{base}_{part}')}[RANGE])", start, until))  # fmt: skip
            add(kind, self._increase(f"increase({self._selector(f'{base}_bucket')}[RANGE])",
                                     start, until), field="le")  # fmt: skip
        return {
            key: {scope: _scope_stats(values, sla) for scope, values in scopes.items()}
            for key, scopes in per.items()
        }


def _key(labels: Labels) -> Key:
    found = dict(labels)
    return found.get("job", ""), found.get("instance", "")


def _without_name(key: Labels) -> Labels:
    return tuple((k, v) for k, v in key if k != "__name__")


def _sum_by_time(
    groups: list[dict[Labels, _Series]],
) -> dict[Labels, Samples]:
    """Per series without its name: the sum of the groups' counters at each sample time (the
    down and the maintenance counters of one target are scraped together)."""
    by: dict[Labels, list[Samples]] = {}
    for group in groups:
        for series in group.values():
            key = _without_name(tuple(sorted(series.labels.items())))
            by.setdefault(key, []).append(sorted(series.samples))
    out: dict[Labels, Samples] = {}
    for key, parts in by.items():
        times = sorted({t for part in parts for t, _ in part})
        out[key] = [(t, sum(_at(part, t) for part in parts)) for t in times]
    return out


def _at(samples: Samples, t: float) -> float:
    """The counter's value at ``t``: its last sample at or before (0 before the first)."""
    value = 0.0
    for at, v in samples:
        if at > t:
            break
        value = v
    return value


def _scope_stats(values: Mapping[str, float], sla: SlaConfig) -> ScopeStats:
    def count(name: str) -> int:
        return round(values.get(name, 0.0))

    delays = {kind: _delay(values, kind, sla) for kind in _KINDS}
    delays["delivery"] = DelayStats(
        delays["delivery"].count, delays["delivery"].average, delays["delivery"].maximum,
        count("over_max"),
    )  # fmt: skip
    return ScopeStats(count("sent"), count("received"), count("lost"), count("failed"),
                      delays["delivery"], delays["send"], delays["receive"])  # fmt: skip


def _delay(values: Mapping[str, float], kind: str, sla: SlaConfig) -> DelayStats:
    n = values.get(f"{kind}_count", 0.0)
    if n < 0.5:
        return DelayStats()
    buckets = sorted(
        (float(name.rpartition(":")[2]), value)
        for name, value in values.items()
        if name.startswith(f"{kind}:le:")
    )
    bound = next((le for le, value in buckets if value >= n - 0.5), None)
    within = next((value for le, value in buckets if le >= sla.delay_maximum), n)
    over = round(n - within) if kind != "delivery" else 0
    maximum = bound if bound is not None and math.isfinite(bound) else None
    return DelayStats(round(n), values.get(f"{kind}_sum", 0.0) / n, maximum, over)


def _unique(records: list[VantageRecord]) -> list[VantageRecord]:
    """Two targets exporting one vantage name are told apart by their target."""
    names = [r.vantage.name for r in records]
    return [
        replace(r, vantage=replace(r.vantage, name=f"{r.vantage.name}@{r.source}"))
        if names.count(r.vantage.name) > 1
        else r
        for r in records
    ]
