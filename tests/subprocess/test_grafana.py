"""The Grafana files: generated JSON is current, panels are wired to the provisioned datasource,
queries use only known series and variables and parse, and SLA panels mark the contract limits.

Whether every query returns data is proven against a real Prometheus in test_prometheus_e2e.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from mailprobe.agent.clauses import sla_targets
from mailprobe.agent.sla import SlaConfig

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "mailprobe.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "mailprobe.yaml"
RULE_FILES = sorted((ROOT / "config" / "prometheus" / "rules").glob("*.yml"))
# The generator's modules besides generate.py (plain modules of the grafana/ folder).
GENERATOR_MODULES = ("contract_limits", "panels", "sla_dashboard", "route_dashboard")

GRAFANA_VARIABLES = {"__range", "__rate_interval", "__interval"}
# Values the template variables take in the offline parse check (a regex, as Grafana sends it).
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "30d",
                 "$route": "(a2b|b2a)", "$account": "(alice|bob)"}  # fmt: skip


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def dashboards() -> dict[str, Any]:
    return {p.name: load_json(p) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows excluded), including panels inside collapsed rows."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for name, board in dashboards().items():
        for panel in panels(board):
            for target in panel["targets"]:
                yield name, panel, target


def provisioned_uid() -> str:
    (source,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    return str(source["uid"])


def generator() -> ModuleType:
    """grafana/generate.py as a module (it is a script, not part of a package), loaded afresh
    with its sibling modules, so it reads the clause registry as it is now."""
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("grafana-foundation-sdk is not installed, and CI requires it")
        pytest.skip("grafana-foundation-sdk is not installed")
    if str(GRAFANA) not in sys.path:  # as `python grafana/generate.py` has it
        sys.path.insert(0, str(GRAFANA))
    for name in GENERATOR_MODULES:
        sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location("mailprobe_grafana_generate",
                                                  GRAFANA / "generate.py")  # fmt: skip
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    """Edit grafana/generate.py and rerun it; never hand-edit the JSON."""
    generated = generator().render()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD_DIR.glob("*.json")}
    assert set(committed) == set(generated), "run: python grafana/generate.py"
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale; run: python grafana/generate.py"


def test_generator_output_is_deterministic() -> None:
    """Two runs give byte-identical JSON, so the committed files only change with the code."""
    module = generator()
    assert module.render() == module.render()


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    """One Prometheus datasource with a fixed uid; a file provider reading the dashboards."""
    data = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    assert data["apiVersion"] == 1
    (source,) = data["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "mailprobe-prometheus"
    assert source["url"].startswith("http")
    providers = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def test_every_panel_has_a_title_the_datasource_and_a_query() -> None:
    """A panel without targets or on another datasource shows nothing in a provisioned Grafana."""
    uid = provisioned_uid()
    boards = dashboards()
    assert set(boards) == {"mailprobe-sla.json", "mailprobe-route.json"}
    for name, board in boards.items():
        shown = list(panels(board))
        assert shown, name
        for panel in shown:
            where = f"{name} panel {panel.get('id')} {panel.get('title')!r}"
            assert panel.get("title"), where
            assert panel.get("description"), where
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
            assert panel["targets"], where
            refs = [t["refId"] for t in panel["targets"]]
            assert all(refs), where
            assert len(set(refs)) == len(refs), where
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": uid}, where
                assert target["expr"].strip(), where
        for var in board["templating"]["list"]:
            assert var["datasource"]["uid"] == uid, f"{name} variable {var['name']}"


def test_single_figure_panels_show_the_latest_value_of_instant_queries() -> None:
    """Stats, gauges and bar gauges show a figure now (month to date), not a range's mean."""
    checked = 0
    for name, board in dashboards().items():
        for panel in panels(board):
            if panel["type"] not in {"stat", "gauge", "bargauge"}:
                continue
            assert panel["options"]["reduceOptions"]["calcs"] == ["lastNotNull"], panel["title"]
            assert all(t["instant"] for t in panel["targets"]), (name, panel["title"])
            checked += 1
    assert checked >= 15


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    """Ids are unique per dashboard and no two panels share a grid cell of the 24 columns."""
    for name, board in dashboards().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), name
        cells: dict[tuple[int, int], int] = {}
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0, (name, panel["title"])
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, (
                        f"{name}: {panel['title']!r} overlaps panel {cells[(x, y)]}"
                    )
                    cells[(x, y)] = panel["id"]


def test_queries_use_only_defined_variables() -> None:
    """Each $variable in a query is a dashboard variable or one Grafana itself provides."""
    for name, panel, target in queries():
        board = dashboards()[name]
        defined = {v["name"] for v in board["templating"]["list"]} | GRAFANA_VARIABLES
        used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
        assert used <= defined, f"{name} {panel['title']!r}: {used - defined}"


def agent_series(state_dir: Path) -> set[str]:
    """Names of every sample series the agent can export."""
    from mailprobe.agent.config import parse_config
    from mailprobe.agent.runtime import Agent

    os.environ["MP_GRAFANA_TEST_PW"] = "pw"
    endpoint = {"host": "127.0.0.1", "port": 1, "username": "u@x.test",
                "password_env": "MP_GRAFANA_TEST_PW"}  # fmt: skip
    os.environ["MP_GRAFANA_TEST_SECRET"] = "secret"
    config = parse_config({
        "agent": {"listen": "127.0.0.1:0", "secret_env": "MP_GRAFANA_TEST_SECRET",
                  "state_dir": str(state_dir)},
        "accounts": {"a": {"address": "u@x.test", "smtp": endpoint, "imap": endpoint}},
        "routes": [{"name": "r", "from": "a", "to": "a", "antivirus": {"every": "1d"}}],
        "webmail": [{"name": "w", "url": "https://webmail.x.test/"}],
    })  # fmt: skip
    registry = CollectorRegistry()
    Agent(config, registry=registry, serve_http=False)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "info": ("_info",), "gaugehistogram": ("_bucket", "_gsum", "_gcount")}  # fmt: skip
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def recorded_series() -> set[str]:
    return {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def test_queries_read_only_series_the_agent_or_the_rules_produce(tmp_path: Path) -> None:
    """A misspelt metric or a rule renamed in config/prometheus/rules breaks this, not a panel."""
    known = agent_series(tmp_path) | recorded_series()
    name_re = re.compile(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+|mailprobe_[a-z0-9_]+)\b")
    for name, panel, target in queries():
        used = set(name_re.findall(target["expr"]))
        assert used, f"{name} {panel['title']!r} reads no mailprobe series"
        assert used <= known, f"{name} {panel['title']!r}: unknown {sorted(used - known)}"
    variable_metrics = {
        m
        for board in dashboards().values()
        for var in board["templating"]["list"]
        for m in re.findall(r"label_values\((\w+)", str(var["query"]))
    }
    assert variable_metrics
    assert variable_metrics <= known


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """Each panel query, variables substituted, passes promtool's parser (as a recording rule)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed, and CI requires it")
        pytest.skip("promtool is not installed")
    rules = []
    for i, (_, _, target) in enumerate(queries()):
        expr = target["expr"]
        for var, value in SUBSTITUTIONS.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"grafana:panel_query:q{i}", "expr": expr})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout


def contract_limits(sla: SlaConfig) -> dict[str, float]:
    """The limit each SLA panel must mark with its last threshold step (title -> limit)."""
    targets = sla_targets(sla)
    return {
        "Failure this month": targets["failure"] / 60,
        "Maintenance this month": targets["maintenance"] / 60,
        "Availability this month": sla.availability_percent,
        "Trouble-free days, rolling year": sla.trouble_free_days,
        "Worst route's disconnection": targets["disconnection"] / 60,
        "Probes over 1 h this month": sla.over_maximum_allowed + 1,  # more than allowed breaks it
        "Connectivity this month": sla.connectivity_percent,
        "Disconnection this month": targets["disconnection"] / 60,
        "Coverage this month": sla.coverage_floor_percent / 100,
        "Average delay this month": targets["delivery_delay_average"],
        "Average delay, rolling 30 days": targets["delivery_delay_average"],
        "Longest delay this month": sla.delay_maximum,
        "Connectivity error ratio by window": 1 - sla.connectivity_percent / 100,
        f"Webmail loads over {sla.webmail.limit:g} s this month": sla.webmail.allowed + 1,
        "Webmail load time, p95 of the last hour": sla.webmail.limit,
        "Worst disconnection by kind": targets["disconnection"] / 60,
    }


def marked_limits(board: dict[str, Any]) -> dict[str, list[float]]:
    """Title -> the last threshold step of each panel with that title."""
    out: dict[str, list[float]] = {}
    for panel in panels(board):
        steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
        values = [s["value"] for s in steps if s["value"] is not None]
        if values:
            out.setdefault(panel["title"], []).append(values[-1])
    return out


def test_sla_panels_mark_the_contract_limits() -> None:
    """Colours change exactly at the registry's defaults (44 min, 100 min, 99.9 %, 1 min, ...)."""
    board = dashboards()["mailprobe-sla.json"]
    assert board["time"] == {"from": "now/M", "to": "now"}
    variables = {v["name"]: v for v in board["templating"]["list"]}
    route = variables["route"]
    assert route["multi"]
    assert route["includeAll"]
    marked = marked_limits(board)
    for title, limit in contract_limits(SlaConfig()).items():
        assert marked.get(title), f"no panel {title!r} with thresholds"
        assert marked[title] == [pytest.approx(limit)] * len(marked[title]), title
    exprs = " ".join(t["expr"] for name, _, t in queries() if name == "mailprobe-sla.json")
    assert 'route="all",check="any"' in exprs, "the account-wide figures are missing"


class _Stricter(SlaConfig):
    """A contract other than the seed's in every limit the dashboards mark."""

    disconnection_minutes: float = 30.0
    failure_minutes: float = 60.0
    maintenance_minutes: float = 45.0
    availability_percent: float = 99.95
    connectivity_percent: float = 99.5
    trouble_free_days: int = 350
    delay_average: float = 20.0
    over_maximum_allowed: int = 1
    coverage_floor_percent: float = 80.0


def test_the_generator_takes_every_limit_from_the_clause_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With other defaults in SlaConfig, every marked limit moves with them: none is the
    generator's own."""
    monkeypatch.setattr("mailprobe.agent.sla.SlaConfig", _Stricter)
    board = json.loads(generator().render()["mailprobe-sla.json"])
    marked = marked_limits(board)
    for title, limit in contract_limits(_Stricter()).items():
        assert marked[title] == [pytest.approx(limit)] * len(marked[title]), title
    descriptions = " ".join(p["description"] for p in panels(board))
    assert "the contract allows 60, any failure counted once" in descriptions
    assert " 44" not in descriptions


def test_the_sla_overview_names_the_contract_month_and_its_zone() -> None:
    """Month figures are the agent's contract month; the rows say so with the zone the agent
    exports, and no panel claims UTC months for them."""
    board = dashboards()["mailprobe-sla.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    zone = variables["timezone"]
    assert zone["query"] == (
        "label_values(mailprobe_contract_month_start_timestamp_seconds, timezone)"
    )
    assert zone["hide"] == 2  # shown in the titles, not as a selector
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert sum("contract month ($timezone)" in r for r in rows) == 3  # account, routes, webmail
    for panel in panels(board):
        reads_month = any("month_to_date" in t["expr"] for t in panel["targets"])
        if reads_month:
            assert "UTC" not in panel["description"], panel["title"]
            assert "contract month" in panel["description"], panel["title"]
