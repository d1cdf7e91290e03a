"""`mailprobe report` over a fleet, the real CLI: from the vantages' ledgers, and from a real
Prometheus holding what the agents exported (backfilled with promtool from the same day,
tests/helpers/fleet_month.py). The two must agree: the same verdicts and remedies, provider
minutes within a scrape interval per outage edge, the same local faults."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailprobe.agent.windows import month_of, shift_month
from tests.helpers import fleet_month as fm
from tests.helpers import readme

MONTH = shift_month(month_of(time.time(), "Europe/Berlin"), -1)


def mailprobe(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailprobe.agent.cli", *map(str, args)],
                          capture_output=True, text=True, check=False, timeout=timeout)  # fmt: skip


def one_line(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert needle in lines[0], lines


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The scenario's config and the three vantages' ledgers."""
    tmp = tmp_path_factory.mktemp("fleet-cli")
    ledgers = [fm.write_ledger(p, tmp / p.vantage.name / "ledger.sqlite3") for p in fm.plans(MONTH)]
    config = tmp / "mailprobe.yaml"
    config.write_text(yaml.safe_dump(fm.config_data(MONTH, tmp / "unused")))
    return config, ledgers


def report_json(*args: str | Path) -> dict[str, Any]:
    proc = mailprobe("report", *args, "--month", MONTH, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_the_fleet_report_from_ledgers(day: tuple[Path, list[Path]]) -> None:
    """--ledger once per vantage: the vantages named by their ledgers, the provider's minutes,
    the local faults excluded; the text names them all."""
    config, ledgers = day
    proc = mailprobe("report", "--config", config, *(a for p in ledgers for a in ("--ledger", p)),
                     "--month", MONTH)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Vantage points" in proc.stdout
    assert "Local faults (excluded)" in proc.stdout
    data = report_json("--config", config, *(a for p in ledgers for a in ("--ledger", p)))
    assert [v["name"] for v in data["fleet"]["vantages"]] == ["a", "b", "c"]
    assert data["scopes"][0]["figures"]["down_seconds"] == pytest.approx(2995.25 + 300.0)
    assert data["verdict"] == "breached"


def test_the_quorum_comes_from_the_config_or_the_command_line(
    day: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """fleet.quorum of --config, and --quorum over it."""
    _config, ledgers = day
    three = tmp_path / "three.yaml"
    three.write_text(yaml.safe_dump(fm.config_data(MONTH, tmp_path, quorum=3)))
    args = [a for p in ledgers for a in ("--ledger", p)]
    assert report_json("--config", three, *args)["fleet"]["quorum"] == 3
    assert report_json("--config", three, *args, "--quorum", "1")["fleet"]["quorum"] == 1


def test_fleet_report_mistakes_are_one_line(day: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """Both sources at once, a ledger twice, a quorum of 0, a Prometheus that is not there."""
    config, ledgers = day
    one_line(mailprobe("report", "--config", config, "--ledger", ledgers[0], "--prometheus",
                       "http://127.0.0.1:9"), "not both")  # fmt: skip
    one_line(mailprobe("report", "--config", config, "--month", MONTH, "--ledger", ledgers[0],
                       "--ledger", ledgers[0]), "are both vantage 'a'")  # fmt: skip
    one_line(mailprobe("report", "--config", config, "--ledger", ledgers[0], "--quorum", "0"),
             "--quorum: 0 is not between 1 and 64")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    one_line(mailprobe("report", "--config", config, "--month", MONTH, "--prometheus",
                       f"http://127.0.0.1:{closed}"), "cannot query it")  # fmt: skip


# ----------------------------------------------------------------- from Prometheus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tsdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TSDB holding the fleet's day, as the agents would have exported it."""
    tmp = tmp_path_factory.mktemp("fleet-tsdb")
    source = tmp / "day.om"
    source.write_text(fm.openmetrics(fm.plans(MONTH), MONTH))
    done = subprocess.run([tool("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                           str(source), str(tmp / "data")], capture_output=True, text=True,
                          check=False, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / "data"


@contextlib.contextmanager
def serving(
    tmp: Path, data: Path, web_config: dict[str, Any] | None = None, ca: Path | None = None
) -> Iterator[str]:
    """A real Prometheus on a copy of ``data``; its URL once ready (https with a web config)."""
    shutil.copytree(data, tmp / "data")
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    args = [tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}", "--storage.tsdb.retention.time=400d",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    scheme, context = "http", None
    if web_config is not None:
        (tmp / "web.yml").write_text(yaml.safe_dump(web_config))
        args.append(f"--web.config.file={tmp / 'web.yml'}")
        scheme, context = "https", ssl.create_default_context(cafile=str(ca))
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2, context=context) as resp:  # noqa: S310
                    if resp.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and asking who we are
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, tsdb: Path) -> Iterator[str]:
    """A real Prometheus whose TSDB holds the fleet's day."""
    with serving(tmp_path_factory.mktemp("fleet-prometheus"), tsdb) as url:
        yield url


def test_ledgers_and_prometheus_give_the_same_month(
    day: tuple[Path, list[Path]], prometheus: str
) -> None:
    """Same verdicts and remedies; each provider outage and each local fault within one scrape
    interval per edge; the same probe counts and delays."""
    config, ledgers = day
    from_ledgers = report_json("--config", config, *(a for p in ledgers for a in ("--ledger", p)))
    from_prom = report_json("--config", config, "--prometheus", prometheus,
                            "--prometheus-match", f'job="{fm.JOB}"')  # fmt: skip
    assert from_prom["fleet"]["source"] == "prometheus"
    assert [v["name"] for v in from_prom["fleet"]["vantages"]] == ["a", "b", "c"]
    assert from_prom["verdict"] == from_ledgers["verdict"] == "breached"
    assert from_prom["remedy"] == from_ledgers["remedy"]
    edge = fm.SCRAPE
    for mine, theirs in zip(from_prom["scopes"], from_ledgers["scopes"], strict=True):
        assert mine["route"] == theirs["route"]
        assert [(c["clause"], c["verdict"]) for c in mine["clauses"]] == [
            (c["clause"], c["verdict"]) for c in theirs["clauses"]]  # fmt: skip
        outages = sum(o["route"] in (mine["route"], "all") or mine["route"] == "all"
                      for o in from_ledgers["outages"])  # fmt: skip
        for key in ("down_seconds", "maintenance_seconds", "observed_seconds"):
            assert mine["figures"][key] == pytest.approx(
                theirs["figures"][key], abs=2 * edge * max(outages, 1)), (mine["route"], key)
        assert mine["probes_sent"] == theirs["probes_sent"]
        assert mine["probes_failed"] == theirs["probes_failed"]
        assert mine["figures"]["delivery"]["average"] == pytest.approx(
            theirs["figures"]["delivery"]["average"], rel=1e-6)  # fmt: skip
    for name in ("outages",):
        assert len(from_prom[name]) == len(from_ledgers[name])
        for mine, theirs in zip(from_prom[name], from_ledgers[name], strict=True):
            assert (mine["route"], mine["check"]) == (theirs["route"], theirs["check"])
            assert mine["start"] == pytest.approx(theirs["start"], abs=edge)
            assert mine["end"] == pytest.approx(theirs["end"], abs=edge)
    local_prom, local_ledgers = from_prom["fleet"]["local"], from_ledgers["fleet"]["local"]
    assert [(o["vantages"], o["route"], o["check"]) for o in local_prom] == [
        (o["vantages"], o["route"], o["check"]) for o in local_ledgers]  # fmt: skip
    for mine, theirs in zip(local_prom, local_ledgers, strict=True):
        assert mine["start"] == pytest.approx(theirs["start"], abs=edge)
        assert mine["end"] == pytest.approx(theirs["end"], abs=edge)


def readme_command(words: list[str], swap: dict[str, str]) -> list[str]:
    """A README command with its example paths, month and URL swapped for the test's."""
    words = [swap.get(w, w) for w in words]
    if words[0] == "mailprobe":
        return [sys.executable, "-m", "mailprobe.agent.cli", *words[1:]]
    if words[0] == "python3":
        return [sys.executable, *words[1:]]
    return words


def test_the_readme_fleet_commands_run_as_shown(
    day: tuple[Path, list[Path]], prometheus: str, guarded: tuple[str, Path], tmp_path: Path
) -> None:
    """"Running several agents": the ledger copy, the reports (from ledgers, an open and a
    guarded Prometheus) and `run --vantage`, word for word but for the example paths, month and
    URLs."""
    from mailprobe.agent.cli import build_parser

    config, ledgers = day
    shown = readme.commands("Running several agents")
    run_words = next(c for c in shown if c[:2] == ["mailprobe", "run"])
    assert build_parser().parse_args(run_words[1:]).vantage == "berlin-office"
    copy = next(c for c in shown if c[0] == "python3")
    for ledger, copied in zip(ledgers, ("berlin-office", "frankfurt-dc", "branch"), strict=True):
        paths = {"/var/lib/mailprobe/ledger.sqlite3": str(ledger),
                 "berlin-office.sqlite3": f"{copied}.sqlite3"}  # fmt: skip
        done = subprocess.run(readme_command(copy, paths),
                              cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (tmp_path / f"{copied}.sqlite3").is_file()
    swap = {"/etc/mailprobe/mailprobe.yaml": str(config), "2026-10": MONTH,
            "http://127.0.0.1:9090": prometheus, 'job="mailprobe"': f'job="{fm.JOB}"',
            "https://mimir.example.net/prometheus": guarded[0],
            "/etc/ssl/corp-ca.pem": str(guarded[1] / "ca.pem"),
            "/etc/mailprobe/mimir.pw": str(guarded[1] / "password")}  # fmt: skip
    reports = [c for c in shown if c[:2] == ["mailprobe", "report"]]
    assert {"--ledger" in c for c in reports} == {True, False}
    assert any("--prometheus-password-file" in c for c in reports)
    for words in reports:
        done = subprocess.run(readme_command(words, swap), cwd=tmp_path, capture_output=True,
                              text=True, check=False, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Local faults (excluded)" in done.stdout
        assert "berlin-hq" in done.stdout  # the vantages, by their ledgers or their info series


def test_without_a_month_both_ways_report_the_previous_one(
    day: tuple[Path, list[Path]], prometheus: str
) -> None:
    """No --month: the previous month when some vantage has data of it, and stderr says so."""
    config, ledgers = day
    for source in ([a for p in ledgers for a in ("--ledger", str(p))],
                   ["--prometheus", prometheus]):  # fmt: skip
        proc = mailprobe("report", "--config", config, *source, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        assert f"mailprobe: reporting {MONTH} (the previous month)" in proc.stderr
        assert json.loads(proc.stdout)["month"] == MONTH


# ----------------------------------------------------------------- a guarded query API


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, tsdb: Path) -> Iterator[tuple[str, Path]]:
    """The same Prometheus behind its own web config: TLS from a throwaway CA, one bcrypt user.
    Its URL and the directory with ca.pem and the password file."""
    import bcrypt
    import trustme

    tmp = tmp_path_factory.mktemp("fleet-guarded")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "prom.crt"))
    cert.private_key_pem.write_to_path(str(tmp / "prom.key"))
    (tmp / "password").write_text("s3cret \"pass\"\n")
    hashed = bcrypt.hashpw(b's3cret "pass"', bcrypt.gensalt(10)).decode()
    web = {"tls_server_config": {"cert_file": str(tmp / "prom.crt"),
                                 "key_file": str(tmp / "prom.key")},
           "basic_auth_users": {"auditor": hashed}}  # fmt: skip
    with serving(tmp, tsdb, web, tmp / "ca.pem") as url:
        yield url, tmp


def test_a_guarded_query_api_is_read_with_the_credentials_given_in_files(
    day: tuple[Path, list[Path]], prometheus: str, guarded: tuple[str, Path]
) -> None:
    """TLS with a private CA and basic auth: the same month as the open Prometheus; a header
    such as Mimir's tenant goes along; the password appears nowhere in the output."""
    config, _ = day
    url, files = guarded
    opened = report_json("--config", config, "--prometheus", prometheus,
                         "--prometheus-match", f'job="{fm.JOB}"')  # fmt: skip
    proc = mailprobe("report", "--config", config, "--month", MONTH, "--format", "json",
                     "--prometheus", url, "--prometheus-match", f'job="{fm.JOB}"',
                     "--prometheus-ca-file", files / "ca.pem", "--prometheus-user", "auditor",
                     "--prometheus-password-file", files / "password",
                     "--prometheus-header", "X-Scope-OrgID: customer-1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr
    guarded_report = json.loads(proc.stdout)
    assert guarded_report["verdict"] == opened["verdict"]
    assert guarded_report["scopes"] == opened["scopes"]
    assert guarded_report["outages"] == opened["outages"]


def test_a_guarded_query_api_refuses_in_one_line(
    day: tuple[Path, list[Path]], guarded: tuple[str, Path], tmp_path: Path
) -> None:
    """No credentials, a wrong password, an untrusted certificate, and unusable options: exit 2,
    one line that says which."""
    config, _ = day
    url, files = guarded
    base = ["report", "--config", config, "--month", MONTH, "--prometheus", url]
    trusted = ["--prometheus-ca-file", files / "ca.pem"]
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    one_line(mailprobe(*base, *trusted), "access refused (HTTP 401)")
    one_line(mailprobe(*base, *trusted, "--prometheus-user", "auditor",
                       "--prometheus-password-file", wrong), "access refused (HTTP 401)")  # fmt: skip
    one_line(mailprobe(*base, "--prometheus-user", "auditor", "--prometheus-password-file",
                       files / "password"), "CERTIFICATE_VERIFY_FAILED")  # fmt: skip
    one_line(mailprobe(*base, "--prometheus-user", "auditor"),
             "--prometheus-user and --prometheus-password-file go together")
    one_line(mailprobe(*base, "--prometheus-header", "Authorization: Bearer x"),
             "use --prometheus-bearer-file or --prometheus-user")
    one_line(mailprobe(*base, "--prometheus-header", "no colon"), "give it as 'Name: value'")
    one_line(mailprobe(*base, "--prometheus-bearer-file", tmp_path / "absent"),
             "--prometheus-bearer-file")
