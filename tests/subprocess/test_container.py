"""The container image and the compose stack, checked offline (no container engine runs here).

The Containerfile's instructions are read and checked (base, user, volume, health check,
port, entry point), its build stage is replayed with pip on exactly what it copies, and its
health check command is run against a real agent endpoint. The compose file is validated
against the Compose Specification's JSON schema, its bind mounts are laid out as the
containers see them, and promtool and amtool check the Prometheus and Alertmanager configs
in that layout.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from mailprobe.agent.cli import build_parser
from mailprobe.agent.config import load_config
from mailprobe.agent.http import MetricsServer
from tests.helpers.agents import free_port
from tests.subprocess.test_prometheus_e2e import tool

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "config" / "container"
CONTAINERFILE = HERE / "Containerfile"
COMPOSE = HERE / "compose.yaml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction."""
        value = json.loads(self.args)
        assert isinstance(value, list), self
        return value


def instructions(path: Path) -> list[Instruction]:
    """A Containerfile's instructions: comments dropped, continuation lines joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the file ends inside a continued instruction"
    return out


def stages(path: Path = CONTAINERFILE) -> list[list[Instruction]]:
    """The instructions of each build stage, FROM first."""
    out: list[list[Instruction]] = []
    for step in instructions(path):
        if step.keyword == "FROM":
            out.append([])
        out[-1].append(step)
    return out


def final_stage() -> list[Instruction]:
    return stages()[-1]


def one(stage: list[Instruction], keyword: str) -> Instruction:
    found = [s for s in stage if s.keyword == keyword]
    assert len(found) == 1, (keyword, found)
    return found[0]


def test_the_image_is_slim_python_non_root_with_a_state_volume() -> None:
    """Final stage: python:3.11-slim, a numeric non-root USER, VOLUME /var/lib/mailprobe,
    EXPOSE 9478, and the entry point `mailprobe run --config /etc/mailprobe/mailprobe.yaml`."""
    stage = final_stage()
    assert stage[0].args == "docker.io/library/python:3.11-slim"
    user = one(stage, "USER").args.split(":")
    assert user[0] not in ("root", "0")
    assert user[0].isdigit()  # numeric, so runAsNonRoot can check it without /etc/passwd
    assert one(stage, "VOLUME").args == "/var/lib/mailprobe"
    assert one(stage, "EXPOSE").args == "9478"
    entry = one(stage, "ENTRYPOINT").exec_form()
    assert entry == ["mailprobe", "run", "--config", "/etc/mailprobe/mailprobe.yaml"]
    assert build_parser().parse_args([*entry[1:], "--log-format=json"]).log_format == "json"
    # The user is made before it is used, and it owns the volume.
    run = " ".join(s.args for s in stage if s.keyword == "RUN")
    assert f"--uid {user[0]}" in run
    assert "-o mailprobe -g mailprobe -m 0700 /var/lib/mailprobe" in run


def healthcheck_command() -> tuple[list[str], dict[str, str]]:
    """The HEALTHCHECK's exec-form command and the image's ENV it reads."""
    stage = final_stage()
    check = one(stage, "HEALTHCHECK").args
    options, _, command = check.partition(" CMD ")
    assert "--timeout=" in options
    env = dict(part.split("=", 1) for part in shlex.split(one(stage, "ENV").args))
    return json.loads(command), env


def test_the_health_check_is_python_on_healthz() -> None:
    """No curl in a slim image: the check is `python -c` on the agent's /healthz."""
    command, env = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert env["MAILPROBE_HEALTHZ"] == "http://127.0.0.1:9478/healthz"


@pytest.fixture
async def endpoint() -> AsyncIterator[Callable[[str], Any]]:
    """A real agent HTTP endpoint whose /healthz says what the test sets."""
    state = {"status": "ok"}
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, lambda: dict(state))
    await server.start()

    async def health_check(status: str) -> int:
        state["status"] = status
        command, env = healthcheck_command()
        env = {**os.environ, **env, "MAILPROBE_HEALTHZ": f"http://127.0.0.1:{server.port}/healthz"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *command[1:], env=env, stderr=asyncio.subprocess.DEVNULL)
        return await asyncio.wait_for(proc.wait(), 10)

    yield health_check
    await server.stop()


async def test_the_health_check_passes_when_healthy_and_fails_when_degraded(
    endpoint: Callable[[str], Any],
) -> None:
    """The image's command exits 0 on /healthz 200 and non-zero on 503 (a watcher down)."""
    assert await endpoint("ok") == 0
    assert await endpoint("degraded") != 0


def test_the_health_check_fails_when_nothing_answers() -> None:
    """No agent listening: the command fails within its timeout instead of hanging."""
    command, env = healthcheck_command()
    env = {**os.environ, **env, "MAILPROBE_HEALTHZ": f"http://127.0.0.1:{free_port()}/healthz"}
    done = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                          timeout=10, check=False)  # fmt: skip
    assert done.returncode != 0


def copied_sources(steps: list[Instruction]) -> list[str]:
    """What COPY takes from the build context (not from another stage)."""
    out = []
    for step in steps:
        if step.keyword == "COPY" and "--from=" not in step.args:
            out += step.args.split()[:-1]
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the context (last matching pattern wins)."""
    keep = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, glob) for p in prefixes):
            keep = negate
    return not keep


def test_everything_the_build_copies_is_in_the_context() -> None:
    """Each COPY source exists at the repository root and .dockerignore lets it through."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]  # fmt: skip
    sources = copied_sources(instructions(CONTAINERFILE))
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), source
    assert ignored("tests", patterns)
    assert ignored(".venv", patterns)


def test_the_build_stage_makes_a_wheel_from_what_it_copies(tmp_path: Path) -> None:
    """The build stage replayed: only the files it copies, `pip wheel --no-deps .`, one wheel
    holding both packages (offline here: this venv's setuptools, no build isolation)."""
    context = tmp_path / "src"
    context.mkdir()
    build = stages()[0]
    assert build[-1].args == "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ."
    for source in copied_sources(build):
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, context / source)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(tmp_path / "wheels"), "."],
        cwd=context, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list((tmp_path / "wheels").glob("mailprobe-*.whl"))
    assert len(wheels) == 1
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheels[0])],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "mailprobe/agent/cli.py" in names
    assert "mailprobe/probes/smtp.py" in names


# ----------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def compose_validator() -> jsonschema.Draft201909Validator:
    """The Compose Specification's schema. It names draft 2019-09 by an address jsonschema
    does not know (http, trailing '#'), so the draft is given here."""
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft/2019-09/schema#"
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    """jsonschema validation against the Compose Specification's own schema."""
    validator = compose_validator()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose())]  # fmt: skip
    assert errors == []


def test_the_schema_check_refuses_a_broken_compose_file() -> None:
    """The same validation fails on a misspelt service key: passing above means something."""
    broken = compose()
    broken["services"]["mailprobe"]["volume"] = broken["services"]["mailprobe"].pop("volumes")
    assert not compose_validator().is_valid(broken)


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of a service's bind mounts (named volumes left out)."""
    out = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            out.append(((HERE / source).resolve(), target))
    return out


def test_every_mounted_path_and_the_build_context_exist_in_the_repository() -> None:
    """Bind mounts, the build context and its Containerfile all resolve inside the checkout."""
    services = compose()["services"]
    assert set(services) == {"mailprobe", "prometheus", "alertmanager", "grafana"}
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert source.exists(), (name, source)
            assert source.is_relative_to(ROOT), (name, source)
    build = services["mailprobe"]["build"]
    context = (HERE / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == CONTAINERFILE


def test_images_are_pinned_and_ports_published_on_loopback_only() -> None:
    """No `latest` of someone else's image; every published port binds 127.0.0.1."""
    for name, service in compose()["services"].items():
        image = service["image"]
        if "build" not in service:
            assert ":" in image.rsplit("/", 1)[-1], name
            assert not image.endswith(":latest"), name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def lay_out(service: str, root: Path) -> Path:
    """Copy a service's bind mounts into `root` where its container sees them."""
    for source, target in bind_mounts(compose()["services"][service]):
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy(source, dest)
    return root


def test_prometheus_in_compose_loads_every_shipped_rule_file(tmp_path: Path) -> None:
    """`promtool check config` on the Prometheus config as the container sees it: the config
    is valid and finds every shipped rule and alert file through the mounts."""
    promtool = tool("promtool")
    root = lay_out("prometheus", tmp_path)
    done = subprocess.run([promtool, "check", "config", str(root / "etc/prometheus/prometheus.yml")],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = [p for d in ("rules", "alerts") for p in (ROOT / "config/prometheus" / d).glob("*.yml")]
    assert f"SUCCESS: {len(shipped)} rule files found" in done.stdout
    flags = compose()["services"]["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in flags
    assert "--storage.tsdb.retention.time=400d" in flags


def test_compose_prometheus_config_is_the_shipped_one_but_for_service_names() -> None:
    """config/container/prometheus.yml differs from config/prometheus/prometheus.yml only in
    the addresses of the agent and Alertmanager, which are the compose services' ports."""
    shipped = yaml.safe_load((ROOT / "config/prometheus/prometheus.yml").read_text())
    ours = yaml.safe_load((HERE / "prometheus.yml").read_text())
    targets = {"127.0.0.1:9478": "mailprobe:9478", "127.0.0.1:9093": "alertmanager:9093"}
    as_compose = json.loads(json.dumps(shipped), object_hook=lambda d: {
        k: [targets.get(t, t) for t in v] if k == "targets" else v for k, v in d.items()})
    assert ours == as_compose


def test_alertmanager_in_compose_loads_the_shipped_config(tmp_path: Path) -> None:
    """`amtool check-config` on the mounted config/alertmanager/alertmanager.yml."""
    amtool = tool("amtool")
    root = lay_out("alertmanager", tmp_path)
    done = subprocess.run([amtool, "check-config", str(root / "etc/alertmanager/alertmanager.yml")],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_is_provisioned_with_the_shipped_dashboards_and_the_compose_prometheus(
    tmp_path: Path,
) -> None:
    """In Grafana's container: the dashboard provider's path holds every shipped dashboard,
    and the datasource (the shipped one, but for its URL) points at the compose Prometheus."""
    root = lay_out("grafana", tmp_path)
    provider = yaml.safe_load((root / "etc/grafana/provisioning/dashboards/mailprobe.yaml").read_text())
    path = root / provider["providers"][0]["options"]["path"].lstrip("/")
    shipped = sorted(p.name for p in (ROOT / "grafana/dashboards").glob("*.json"))
    assert sorted(p.name for p in path.glob("*.json")) == shipped
    ours = yaml.safe_load((root / "etc/grafana/provisioning/datasources/mailprobe.yaml").read_text())
    base = yaml.safe_load((ROOT / "grafana/provisioning/datasources/mailprobe.yaml").read_text())
    assert ours["datasources"][0].pop("url") == "http://prometheus:9090"
    base["datasources"][0].pop("url")
    assert ours == base


def test_the_agent_config_in_compose_is_usable_and_listens_where_prometheus_scrapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """config/container/mailprobe.yaml passes the agent's own checks with the environment the
    compose file passes; it listens on all interfaces at the port the image exposes."""
    service = compose()["services"]["mailprobe"]
    for name in service["environment"]:
        monkeypatch.setenv(name, "from-the-env-file")
    config = load_config(HERE / "mailprobe.yaml")
    assert (config.agent.listen_host, config.agent.listen_port) == ("0.0.0.0", 9478)  # noqa: S104
    assert str(config.agent.state_dir) == one(final_stage(), "VOLUME").args
    assert dict(bind_mounts(service))[(HERE / "mailprobe.yaml").resolve()] == (
        "/etc/mailprobe/mailprobe.yaml"
    )
