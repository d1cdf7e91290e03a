"""The Kubernetes manifests, validated offline: every object against its JSON schema (the
Kubernetes 1.30 strict schemas kubernetes-validate ships, and the prometheus-operator CRDs'
schemas in tests/data/kubernetes), promtool on the PrometheusRule's groups, the generated
objects identical to the shipped rule files and dashboards, and the Deployment wired to the
image, the config and the agent's health endpoints."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from mailprobe.agent.cli import build_parser
from mailprobe.agent.config import load_config
from mailprobe.agent.http import MetricsServer
from tests.subprocess.test_container import final_stage, one
from tests.subprocess.test_prometheus_e2e import tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "config" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
README = ROOT / "README.md"


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def all_objects() -> list[dict[str, Any]]:
    return [obj for path in manifest_files() for obj in documents(path)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in all_objects() if o["kind"] == kind]


def schema_problems(obj: dict[str, Any]) -> list[str]:
    """Why `obj` does not match its kind's schema (empty when it does)."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    problems = [f"{where}: {key} is missing" for key in ("apiVersion", "kind", "metadata")
                if key not in obj]  # fmt: skip
    crd = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
    if crd is not None:
        schema = json.loads((ROOT / "tests/data/kubernetes" / crd).read_text())
        validator = jsonschema.Draft202012Validator(schema)
        problems += [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                     for e in validator.iter_errors(obj)]  # fmt: skip
        return problems
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problems.append(f"{where}: {exc}")
    return problems


def test_every_object_is_valid_against_its_schema() -> None:
    """Namespace, ConfigMaps, Secret, Service, PVC, Deployment (Kubernetes 1.30, strict: no
    unknown keys) and ServiceMonitor, PrometheusRule (monitoring.coreos.com/v1, strict)."""
    objects = all_objects()
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Namespace", "ConfigMap", "Secret", "Service", "PersistentVolumeClaim",
                     "Deployment", "ServiceMonitor", "PrometheusRule"}  # fmt: skip
    assert [p for o in objects for p in schema_problems(o)] == []


@pytest.mark.parametrize(
    ("kind", "path"),
    [("Deployment", ["spec", "template", "spec", "containers", 0, "readinesProbe"]),
     ("ServiceMonitor", ["spec", "endpoints", 0, "intervall"]),
     ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "exprr"])],
)  # fmt: skip
def test_a_misspelt_key_is_refused(kind: str, path: list[Any]) -> None:
    """The strict schemas catch a typo at any depth, built-in kind or custom resource."""
    obj = json.loads(json.dumps(by_kind(kind)[0]))
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "x"
    assert schema_problems(obj)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    """Each manifest is a resource of kustomization.yaml, except secret.example.yaml (applying
    the manifests must never overwrite the real Secret)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "mailprobe"
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in manifest_files()} - {"secret.example.yaml"}


def test_kustomize_renders_exactly_the_manifests() -> None:
    """`kubectl kustomize` (when kubectl is installed) renders the listed objects, each in the
    mailprobe namespace but the Namespace itself."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the plain manifests are checked above")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    names = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    expected = sorted((o["kind"], o["metadata"]["name"]) for o in all_objects()
                      if o["kind"] != "Secret")  # fmt: skip
    assert names == expected
    assert {o["metadata"].get("namespace") for o in rendered if o["kind"] != "Namespace"} == {
        "mailprobe"
    }


# ----------------------------------------------------------------------------- generated


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_build", K8S / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_current() -> None:
    """README's `python config/kubernetes/build.py --check` passes: the committed
    prometheusrule.yaml and grafana.yaml are what build.py writes from the shipped files."""
    assert "python config/kubernetes/build.py --check" in README.read_text()
    done = subprocess.run([sys.executable, "config/kubernetes/build.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_build_check_notices_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--check exits 1 naming a file that differs from what build.py would write."""
    build = load_build()
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text("# edited by hand\n")
    monkeypatch.setattr(build, "outputs", lambda: {stale: "what it should be\n"})
    monkeypatch.setattr(build, "_rel", lambda p: p.name)
    assert build.main(["--check"]) == 1
    assert stale.read_text() == "# edited by hand\n"
    assert build.main([]) == 0
    assert stale.read_text() == "what it should be\n"


def shipped_groups() -> list[dict[str, Any]]:
    rule_files = [p for d in ("rules", "alerts")
                  for p in sorted((ROOT / "config/prometheus" / d).glob("*.yml"))]  # fmt: skip
    return [g for p in rule_files for g in yaml.safe_load(p.read_text())["groups"]]


def test_prometheus_rule_holds_the_shipped_groups_unchanged() -> None:
    """Group for group, rule for rule, the PrometheusRule is the shipped rules and alerts."""
    (rule,) = by_kind("PrometheusRule")
    assert rule["spec"]["groups"] == shipped_groups()


def test_prometheus_rule_groups_pass_promtool(tmp_path: Path) -> None:
    """`promtool check rules` on the PrometheusRule's spec, as prometheus-operator hands it
    to Prometheus."""
    promtool = tool("promtool")
    (rule,) = by_kind("PrometheusRule")
    path = tmp_path / "mailprobe.rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(g["rules"]) for g in shipped_groups())
    assert f"SUCCESS: {count} rules found" in done.stdout


def test_dashboards_config_map_holds_the_shipped_dashboards_verbatim() -> None:
    """Labelled for the Grafana sidecar; one key per dashboard, byte for byte the JSON file."""
    (board,) = [c for c in by_kind("ConfigMap") if c["metadata"]["name"] == "mailprobe-dashboards"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = {p.name: p.read_text() for p in (ROOT / "grafana/dashboards").glob("*.json")}
    assert board["data"] == shipped


def test_datasource_config_map_is_the_shipped_one_pointed_into_the_cluster() -> None:
    """The uid the dashboards use, every setting of the shipped datasource, an in-cluster URL."""
    (ds,) = [c for c in by_kind("ConfigMap") if c["metadata"]["name"] == "mailprobe-datasource"]
    assert ds["metadata"]["labels"]["grafana_datasource"] == "1"
    ours = yaml.safe_load(ds["data"]["mailprobe.yaml"])
    base = yaml.safe_load((ROOT / "grafana/provisioning/datasources/mailprobe.yaml").read_text())
    assert ours["datasources"][0].pop("url").endswith(".svc:9090")
    base["datasources"][0].pop("url")
    assert ours == base


# ----------------------------------------------------------------------------- the vantage


def deployment() -> dict[str, Any]:
    (dep,) = by_kind("Deployment")
    return dep


def container() -> dict[str, Any]:
    (main,) = deployment()["spec"]["template"]["spec"]["containers"]
    return main  # type: ignore[no-any-return]


def test_one_replica_per_vantage_on_its_own_volume_never_two_writers() -> None:
    """replicas 1, Recreate (no overlap in a rollout), the ledger on the vantage's own PVC."""
    dep = deployment()
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim in {p["metadata"]["name"] for p in by_kind("PersistentVolumeClaim")}
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    assert mounts["state"] == "/var/lib/mailprobe"


def test_the_pod_runs_as_the_images_user_non_root_on_a_read_only_root() -> None:
    """runAsNonRoot with the image's numeric user, no privilege escalation, no capabilities,
    a read-only root file system (writes go to the volume and an emptyDir /tmp)."""
    pod = deployment()["spec"]["template"]["spec"]
    image_user = one(final_stage(), "USER").args.split(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert [str(pod["securityContext"]["runAsUser"]), str(pod["securityContext"]["runAsGroup"])] == image_user
    ctx = container()["securityContext"]
    assert ctx == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                   "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    assert pod["automountServiceAccountToken"] is False


def test_the_config_map_config_is_usable_with_the_secret_mounted_where_it_says(
    tmp_path: Path,
) -> None:
    """The ConfigMap's mailprobe.yaml passes the agent's checks when the Secret's keys sit
    where the pod mounts them; it listens on the container port, mounted where the image's
    entry point reads it."""
    (config_map,) = [c for c in by_kind("ConfigMap") if c["metadata"]["name"] == "mailprobe-config"]
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    assert mounts["config"] == "/etc/mailprobe"
    entry = one(final_stage(), "ENTRYPOINT").exec_form()
    assert entry[entry.index("--config") + 1] == "/etc/mailprobe/mailprobe.yaml"
    (secret,) = by_kind("Secret")
    secrets_dir = mounts["secrets"]
    text = config_map["data"]["mailprobe.yaml"].replace(secrets_dir, str(tmp_path))
    for key, value in secret["stringData"].items():
        (tmp_path / key).write_text(value)
    (tmp_path / "mailprobe.yaml").write_text(text)
    config = load_config(tmp_path / "mailprobe.yaml")
    assert config.agent.secret_file == tmp_path / "secret"
    (port,) = container()["ports"]
    assert config.agent.listen_port == port["containerPort"] == 9478
    assert config.agent.listen_host == "0.0.0.0"  # noqa: S104 - a pod's own interfaces


def test_the_container_arguments_are_mailprobe_run_arguments() -> None:
    """args are appended to the image's entry point: together a valid `mailprobe run`."""
    entry = one(final_stage(), "ENTRYPOINT").exec_form()
    args = build_parser().parse_args([*entry[1:], *container()["args"]])
    assert (args.command, args.log_format, args.vantage) == ("run", "json", "vantage-a")


def test_the_service_and_service_monitor_reach_the_vantages_metrics_port() -> None:
    """Service selects the pods by name and forwards the named port; the ServiceMonitor
    selects the Service and scrapes that port's /metrics."""
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    (service,) = by_kind("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["publishNotReadyAddresses"] is True
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == container()["ports"][0]["name"]
    (monitor,) = by_kind("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == port["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.fixture
async def degraded_agent() -> AsyncIterator[MetricsServer]:
    """A real agent HTTP endpoint reporting a mailbox watcher down."""
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0,
                           lambda: {"status": "degraded", "imap": {"probe": False}})  # fmt: skip
    await server.start()
    yield server
    await server.stop()


async def test_probes_ask_the_agent_paths_that_mean_what_they_should(
    degraded_agent: MetricsServer,
) -> None:
    """Readiness asks /healthz (503 while a watcher is down: not ready); liveness and startup
    ask /-/healthy (200 as long as the agent answers), so a provider outage never restarts it."""
    probes = {k: container()[k]["httpGet"] for k in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert {p["port"] for p in probes.values()} == {container()["ports"][0]["name"]}

    async def status(path: str) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", degraded_agent.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        line = await reader.readline()
        writer.close()
        return int(line.split()[1])

    assert await status(probes["readinessProbe"]["path"]) == 503
    assert await status(probes["livenessProbe"]["path"]) == 200
    assert await status(probes["startupProbe"]["path"]) == 200


def test_readme_command_for_another_vantage_makes_a_valid_distinct_one(tmp_path: Path) -> None:
    """README's `sed` for a second vantage gives valid objects with names, labels and volume
    of their own, so the two never share a ledger or a selector."""
    readme = README.read_text()
    command = "sed 's/vantage-a/vantage-b/g' vantage-a.yaml > vantage-b.yaml"
    assert command in readme
    done = subprocess.run(["sed", "s/vantage-a/vantage-b/g", "vantage-a.yaml"], cwd=K8S,
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    (tmp_path / "vantage-b.yaml").write_text(done.stdout)
    b_objects = documents(tmp_path / "vantage-b.yaml")
    assert [p for o in b_objects for p in schema_problems(o)] == []
    a_objects = documents(K8S / "vantage-a.yaml")
    assert {o["metadata"]["name"] for o in a_objects}.isdisjoint(o["metadata"]["name"] for o in b_objects)
    a_dep, b_dep = (next(o for o in objs if o["kind"] == "Deployment") for objs in (a_objects, b_objects))
    assert a_dep["spec"]["selector"] != b_dep["spec"]["selector"]
    # Each vantage names itself: the copy probes as vantage-b.
    (b_container,) = b_dep["spec"]["template"]["spec"]["containers"]
    assert "--vantage=vantage-b" in b_container["args"]
