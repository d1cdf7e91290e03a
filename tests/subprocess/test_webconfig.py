"""The web config (exporter-toolkit format): loading and its errors, and the HTTP endpoint
serving over real TLS with basic auth against bcrypt hashes."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bcrypt
import pytest
import trustme
import yaml
from prometheus_client import CollectorRegistry, Counter

from mailprobe.agent import basicauth
from mailprobe.agent.basicauth import Authenticator, parse_basic
from mailprobe.agent.http import MetricsServer
from mailprobe.agent.webconfig import WebConfig, WebConfigError, load_web_config, parse_web_config
from tests.helpers.configs import config_data, write_config

PASSWORD = "scrape-pw"
# Cost 4, bcrypt's least: the checks stay quick; the cost is the hash's, not the code's.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, on disk."""

    dir: Path
    ca: trustme.CA
    client: trustme.LeafCert

    def client_context(self, *, with_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        if with_cert:
            self.client.configure_cert(ctx)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return Pki(tmp_path, ca, ca.issue_cert("prometheus@clients.test"))


def web_file(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


TLS = {"cert_file": "server.crt", "key_file": "server.key"}


def problems_of(data: Any, directory: Path) -> list[str]:
    with pytest.raises(WebConfigError) as err:
        load_web_config(web_file(directory, data))
    return err.value.problems


# ----------------------------------------------------------------------------- loading


def test_a_full_web_config_loads_with_paths_relative_to_its_file(pki: Pki) -> None:
    """cert_file and key_file resolve against the web config's folder; users keep their hash."""
    web = load_web_config(web_file(pki.dir, {
        "tls_server_config": {**TLS, "client_auth_type": "RequireAndVerifyClientCert",
                              "client_ca_file": "ca.pem", "min_version": "TLS13"},
        "http_server_config": {"headers": {"Strict-Transport-Security": "max-age=31536000"}},
        "basic_auth_users": {"prometheus": HASH},
    }))  # fmt: skip
    assert web.tls is not None
    assert web.tls.cert_file == pki.dir / "server.crt"
    assert web.scheme == "https"
    assert web.users == {"prometheus": HASH.encode()}
    assert web.headers == (("Strict-Transport-Security", "max-age=31536000"),)
    ctx = web.server_context()
    assert ctx is not None
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3


def test_an_empty_web_config_means_plain_http_without_auth(tmp_path: Path) -> None:
    """As with exporter-toolkit, an empty file changes nothing."""
    path = tmp_path / "web.yml"
    path.write_text("")
    web = load_web_config(path)
    assert (web.scheme, web.server_context(), dict(web.users)) == ("http", None, {})


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"tls_server_config": {"cert_file": "server.crt"}},
         "tls_server_config.key_file: required key is missing"),
        ({"tls_server_config": {**TLS, "certfile": "x"}},
         "tls_server_config.certfile: unknown key"),
        ({"tls_server_config": {**TLS, "key_file": "nope.key"}},
         "tls_server_config.key_file: cannot read "),
        ({"tls_server_config": {**TLS, "key_file": "ca.pem"}},
         "tls_server_config.key_file: "),
        ({"tls_server_config": {**TLS, "cipher_suites": ["TLS_AES_128_GCM_SHA256"]}},
         "tls_server_config.cipher_suites: not supported by mailprobe"),
        ({"tls_server_config": {**TLS, "client_auth_type": "RequireAnyClientCert"}},
         "tls_server_config.client_auth_type: RequireAnyClientCert is not supported"),
        ({"tls_server_config": {**TLS, "client_auth_type": "RequireAndVerifyClientCert"}},
         "tls_server_config.client_ca_file: RequireAndVerifyClientCert needs client_ca_file"),
        ({"tls_server_config": {**TLS, "client_ca_file": "ca.pem"}},
         "tls_server_config.client_auth_type: client_ca_file is set but"),
        ({"tls_server_config": {**TLS, "min_version": "TLS13", "max_version": "TLS12"}},
         "tls_server_config.min_version: is above max_version"),
        ({"tls_server_config": {**TLS, "min_version": "SSL3"}},
         "tls_server_config.min_version: Input should be"),
        ({"basic_auth_users": {"prometheus": "secret"}},
         "basic_auth_users: prometheus: not a bcrypt hash"),
        ({"http_server_config": {"headers": {"Server": "x"}}},
         "http_server_config.headers: 'Server': may be one of"),
        ({"basic_auth": {"prometheus": HASH}}, "basic_auth: unknown key"),
    ],
)  # fmt: skip
def test_each_problem_names_its_key(pki: Pki, data: dict[str, Any], problem: str) -> None:
    """A broken web config is refused with the key path of what is wrong, and only that."""
    problems = problems_of(data, pki.dir)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems


def test_a_key_that_is_not_the_certificates_is_named(pki: Pki) -> None:
    """key_file holding another certificate's key: refused at load, not at the first scrape."""
    other = pki.ca.issue_cert("other.test")
    other.private_key_pem.write_to_path(str(pki.dir / "other.key"))
    problems = problems_of({"tls_server_config": {**TLS, "key_file": "other.key"}}, pki.dir)
    assert problems == ["tls_server_config.key_file: is not the key of cert_file"]


def test_several_problems_are_reported_at_once(pki: Pki) -> None:
    """Every problem, each with its key."""
    problems = problems_of({"tls_server_config": {"cert_file": "a", "curve_preferences": []},
                            "basic_auth_users": {"u": "x"}}, pki.dir)  # fmt: skip
    assert {p.split(":")[0] for p in problems} == {
        "tls_server_config.curve_preferences", "tls_server_config.key_file", "basic_auth_users",
    }  # fmt: skip


def test_not_a_mapping_and_not_yaml_are_refused(tmp_path: Path) -> None:
    """A list, or text that is not YAML: one problem each."""
    assert problems_of(["tls_server_config"], tmp_path) == ["(top level): expected a mapping"]
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config: [\n")
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    assert err.value.problems[0].startswith("not valid YAML at line")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailprobe.agent.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


@pytest.fixture
def agent_config(tmp_path: Path) -> Path:
    """A usable agent config on disk; nothing needs to answer, the agent stops before."""
    folder = tmp_path / "agent"
    folder.mkdir()
    trustme.CA().cert_pem.write_to_path(str(folder / "ca.pem"))  # check-config reads it
    svc = SimpleNamespace(host="127.0.0.1", smtp_port=1, imap_port=2, ca_file=folder / "ca.pem")
    write_config(config_data(svc, folder / "state"), folder / "c.yaml")  # type: ignore[arg-type]
    return folder / "c.yaml"


def test_run_with_a_bad_web_config_exits_2_with_one_line(
    pki: Pki, agent_config: Path
) -> None:
    """`mailprobe run --web.config.file` naming a missing key file: exit 2, one line on stderr
    naming the file and the key, no traceback, nothing started."""
    bad = web_file(pki.dir, {"tls_server_config": {**TLS, "key_file": "missing.key"}})
    done = run_cli("run", "--config", str(agent_config), "--web.config.file", str(bad),
                   cwd=pki.dir)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"mailprobe: web config {bad}: tls_server_config.key_file: ")
    assert not (agent_config.parent / "state").exists()


def test_check_config_checks_the_web_config_it_names(pki: Pki, agent_config: Path) -> None:
    """agent.web_config_file is loaded by check-config too: a bad one exits 2."""
    data = yaml.safe_load(agent_config.read_text())
    data["agent"]["web_config_file"] = str(web_file(pki.dir, {"basic_auth_users": {"u": "pw"}}))
    agent_config.write_text(yaml.safe_dump(data))
    os.environ["MP_TEST_SECRET"] = "x"
    done = run_cli("check-config", str(agent_config), cwd=pki.dir)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"mailprobe: web config {data['agent']['web_config_file']}: basic_auth_users: u: not a"
        " bcrypt hash ($2y$10$ followed by 53 characters)"
    ]


# ----------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


async def get(port: int, path: str = "/metrics", *, ctx: ssl.SSLContext | None = None,
              user: str | None = None, password: str = "") -> Reply:  # fmt: skip
    """One HTTP/1.1 GET over a fresh connection (TLS with `ctx`)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None), 5)  # fmt: skip
    auth = ""
    if user is not None:
        auth = "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        auth += "\r\n"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return Reply(int(status_line.split()[1]), headers, body)


@pytest.fixture
async def serve(pki: Pki) -> AsyncIterator[Any]:
    """Start a MetricsServer with the given web config; stopped after the test."""
    servers: list[MetricsServer] = []
    registry = CollectorRegistry()
    Counter("mailprobe_test_scrapes", "a series to find", registry=registry).inc()

    async def start(data: dict[str, Any]) -> MetricsServer:
        web = load_web_config(web_file(pki.dir, data))
        server = MetricsServer(registry, "127.0.0.1", 0, lambda: {"status": "ok"}, web)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


TLS_AND_AUTH = {"tls_server_config": TLS, "basic_auth_users": {"prometheus": HASH}}


async def test_tls_with_the_right_credentials_serves_metrics(pki: Pki, serve: Any) -> None:
    """HTTPS, verified against the CA, with the right user and password: 200 and the series."""
    server = await serve(TLS_AND_AUTH)
    assert server.url == f"https://127.0.0.1:{server.port}"
    reply = await get(server.port, ctx=pki.client_context(), user="prometheus", password=PASSWORD)
    assert reply.status == 200
    assert b"mailprobe_test_scrapes_total 1.0" in reply.body


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, ""), ("prometheus", "wrong"), ("nobody", PASSWORD), ("prometheus", "x" * 100)],
    ids=["no credentials", "wrong password", "unknown user", "over bcrypt's 72 bytes"],
)
async def test_without_the_right_credentials_every_path_is_401_with_a_challenge(
    pki: Pki, serve: Any, user: str | None, password: str
) -> None:
    """401, WWW-Authenticate: Basic realm=..., and nothing of the metrics or the health."""
    server = await serve(TLS_AND_AUTH)
    for path in ("/metrics", "/healthz", "/-/healthy"):
        reply = await get(server.port, path, ctx=pki.client_context(), user=user,
                          password=password)  # fmt: skip
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="mailprobe", charset="UTF-8"'
        assert b"mailprobe" not in reply.body


async def test_plain_http_to_a_tls_endpoint_gets_no_answer(pki: Pki, serve: Any) -> None:
    """A request without TLS never reaches the handler: the connection closes unanswered."""
    server = await serve(TLS_AND_AUTH)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert data == b""


async def test_a_client_that_does_not_trust_the_server_certificate_fails(serve: Any) -> None:
    """The certificate is what the config names: a client with another CA refuses it."""
    server = await serve(TLS_AND_AUTH)
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    with pytest.raises(ssl.SSLCertVerificationError):
        await get(server.port, ctx=other, user="prometheus", password=PASSWORD)


async def test_required_client_certificates_are_verified(pki: Pki, serve: Any) -> None:
    """RequireAndVerifyClientCert: a client with a certificate from the client CA is served;
    one without is refused in the handshake."""
    server = await serve({"tls_server_config": {
        **TLS, "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "ca.pem"}})
    assert (await get(server.port, ctx=pki.client_context(with_cert=True))).status == 200
    # TLS 1.3 reports the missing certificate after the client's handshake, at its first read.
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port,
                                                       ssl=pki.client_context())  # fmt: skip
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    except (ssl.SSLError, ConnectionError):
        data = b""
    assert data == b""


async def test_basic_auth_without_tls_and_the_configured_headers(serve: Any) -> None:
    """basic_auth_users alone protects plain HTTP; http_server_config.headers are sent."""
    server = await serve({"basic_auth_users": {"prometheus": HASH},
                          "http_server_config": {"headers": {"X-Frame-Options": "deny"}}})
    assert server.url.startswith("http://")
    assert (await get(server.port)).status == 401
    reply = await get(server.port, "/healthz", user="prometheus", password=PASSWORD)
    assert (reply.status, reply.headers["X-Frame-Options"]) == (200, "deny")


async def test_a_renewed_certificate_is_served_without_a_restart(pki: Pki, serve: Any) -> None:
    """New cert and key files in place: the next connection gets the new certificate."""
    server = await serve({"tls_server_config": TLS})
    renewed = pki.ca.issue_cert("127.0.0.1", "renewed.test")
    renewed.private_key_pem.write_to_path(str(pki.dir / "server.key"))
    renewed.cert_chain_pems[0].write_to_path(str(pki.dir / "server.crt"))
    _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=pki.client_context())
    names = writer.get_extra_info("peercert")["subjectAltName"]
    writer.close()
    assert ("DNS", "renewed.test") in names


# ----------------------------------------------------------------------------- the check


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every bcrypt comparison the authenticator makes, by hash."""
    calls: list[bytes] = []
    real = basicauth._matches

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(basicauth, "_matches", counting)
    return calls


async def test_verdicts_are_cached_so_repeated_scrapes_cost_one_bcrypt(
    bcrypt_calls: list[bytes],
) -> None:
    """The same right or wrong credentials are checked with bcrypt once, then from the cache."""
    auth = Authenticator({"prometheus": HASH.encode()})
    try:
        for _ in range(3):
            assert await auth.check(header("prometheus", PASSWORD))
            assert not await auth.check(header("prometheus", "wrong"))
    finally:
        auth.close()
    assert len(bcrypt_calls) == 2


async def test_an_unknown_user_costs_a_bcrypt_check_too(bcrypt_calls: list[bytes]) -> None:
    """A user who does not exist is compared against a dummy hash of the users' cost, so the
    time taken does not tell which users exist; the answer is no even for the dummy."""
    auth = Authenticator({"prometheus": HASH.encode()})
    try:
        assert not await auth.check(header("nobody", PASSWORD))
    finally:
        auth.close()
    assert len(bcrypt_calls) == 1
    assert bcrypt_calls[0] != HASH.encode()
    assert bcrypt_calls[0].split(b"$")[2] == HASH.encode().split(b"$")[2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (header("u", "p:w"), ("u", "p:w")),
        (header("u", ""), ("u", "")),
        ("basic " + base64.b64encode(b"u:p").decode(), ("u", "p")),
        ("Bearer abc", None),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
        (None, None),
    ],
)
def test_parse_basic(value: str | None, expected: tuple[str, str] | None) -> None:
    """user:password from the header; the password may hold ':'; anything else is no login."""
    assert parse_basic(value) == expected


def test_parse_web_config_takes_loaded_data(pki: Pki) -> None:
    """The same checks on data already loaded (paths relative to the given file's folder)."""
    web = parse_web_config({"tls_server_config": dict(TLS)}, pki.dir / "web.yml")
    assert isinstance(web, WebConfig)
    assert web.tls is not None
    assert web.tls.key_file == pki.dir / "server.key"
