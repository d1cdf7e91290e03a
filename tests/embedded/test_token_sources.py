"""Token sources against real things: commands run as processes, files on disk, and msal and
google-auth talking HTTPS to the local token issuer (tests/helpers/issuer.py)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from mailprobe.agent.config_auth import Auth
from mailprobe.agent.token_flows import in_thread
from mailprobe.agent.token_sources import CommandSource, FileToken, oauth2_login
from mailprobe.agent.tokens import Tokens
from mailprobe.probes.sasl import TokenError
from tests.helpers.issuer import TENANT, Issuer
from tests.helpers.webserver import closed_port

KEY = b"k" * 32
ISS = "https://issuer.test"
USER = "probe@example.com"


def _python(tmp_path: Path, code: str) -> tuple[str, ...]:
    script = tmp_path / "token_command.py"
    script.write_text(code)
    return (sys.executable, str(script))


async def test_a_command_prints_a_bare_token(tmp_path: Path) -> None:
    """The command's stdout, stripped, is the token; it learns the login from the environment."""
    argv = _python(tmp_path, "import os; print('tok-' + os.environ['MAILPROBE_USERNAME'])")
    token = await CommandSource(argv, USER, 10.0, 300.0).fetch()
    assert token.value == f"tok-{USER}"
    assert token.expires_at is None  # not a JWT: reused for max_age


async def test_a_command_prints_json_with_its_expiry(tmp_path: Path) -> None:
    """JSON with access_token and expires_in: the expiry is known."""
    argv = _python(
        tmp_path, "import json; print(json.dumps({'access_token': 'abc', 'expires_in': 120}))"
    )
    token = await CommandSource(argv, USER, 10.0, 300.0).fetch()
    assert token.value == "abc"
    assert token.expires_at == pytest.approx(time.time() + 120, abs=5)


async def test_a_bare_jwt_expires_at_its_exp(tmp_path: Path) -> None:
    """A JWT printed bare expires at its exp claim."""
    exp = int(time.time()) + 600
    value = jwt.encode({"exp": exp}, KEY, algorithm="HS256")
    argv = _python(tmp_path, f"print({value!r})")
    assert (await CommandSource(argv, USER, 10.0, 300.0).fetch()).expires_at == exp


async def test_a_failing_command_says_its_status_and_stderr(tmp_path: Path) -> None:
    """Exit status and the end of stderr go into the error (for the log)."""
    argv = _python(
        tmp_path, "import sys; print('refresh token expired', file=sys.stderr); sys.exit(3)"
    )
    with pytest.raises(TokenError, match="exited with status 3: refresh token expired"):
        await CommandSource(argv, USER, 10.0, 300.0).fetch()


async def test_a_hanging_command_is_killed_at_the_timeout(tmp_path: Path) -> None:
    """A command that never ends is killed and the sign-in fails, after the timeout only."""
    pid_file = tmp_path / "pid"
    argv = _python(
        tmp_path,
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    )
    start = time.monotonic()
    with pytest.raises(TokenError, match=r"did not finish within 0.5s \(killed\)"):
        await CommandSource(argv, USER, 0.5, 300.0).fetch()
    assert time.monotonic() - start < 5
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped


async def test_a_command_text_is_never_run_by_a_shell(tmp_path: Path) -> None:
    """Text is split into words; `$HOME` and `;` reach the program as they are."""
    auth = Auth.model_validate({"command": "echo $HOME;id"})
    assert auth.command == ("echo", "$HOME;id")
    token = await CommandSource(auth.command, USER, 10.0, 300.0).fetch()
    assert token.value == "$HOME;id"


@pytest.mark.parametrize(
    ("output", "message"),
    [("", "no token"), ("two words", "more than one word"), ("{not json", "not JSON"),
     ('{"token_type": "Bearer"}', "without access_token")],
)  # fmt: skip
async def test_unusable_command_output_is_a_token_error(
    tmp_path: Path, output: str, message: str
) -> None:
    """Output that holds no token is refused, saying what was wrong."""
    argv = _python(tmp_path, f"print({output!r})")
    with pytest.raises(TokenError, match=message):
        await CommandSource(argv, USER, 10.0, 300.0).fetch()


async def test_a_missing_program_is_a_token_error() -> None:
    """A program that does not exist fails the sign-in, not the agent."""
    with pytest.raises(TokenError, match="cannot run"):
        await CommandSource(("/nonexistent/token-tool",), USER, 10.0, 300.0).fetch()


async def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    """A renewed file is picked up; a refused token is not offered again until renewed."""
    now = [1000.0]
    path = tmp_path / "token"
    path.write_text("first\n")
    source = FileToken(path, clock=lambda: now[0])
    assert await source.get() == "first"
    path.write_text("second-token\n")
    now[0] += 0.5
    assert await source.get() == "first"  # looked at once a second at most
    now[0] += 1
    assert await source.get() == "second-token"
    source.rejected("second-token")
    with pytest.raises(TokenError, match="refused"):
        await source.get()
    path.write_text("third-token\n")
    now[0] += 1
    assert await source.get() == "third-token"


async def test_a_missing_or_expired_token_file_is_a_token_error(tmp_path: Path) -> None:
    """Missing: says so; an expired JWT: says it was not renewed."""
    path = tmp_path / "token"
    source = FileToken(path)
    with pytest.raises(TokenError, match="No such file"):
        await source.get()
    path.write_text(jwt.encode({"exp": int(time.time()) - 60}, KEY, algorithm="HS256"))
    with pytest.raises(TokenError, match=r"expired 6[0-9]s ago"):
        await source.get()


# -- the built-in flows against the local issuer -------------------------------------------


@pytest.fixture
async def issuer(tmp_path: Path) -> AsyncIterator[Issuer]:
    issuer = Issuer(tmp_path, KEY, ISS, lifetime=120)
    issuer.add_client("app", USER, secret="app-secret")
    os.environ["MP_TEST_APP_SECRET"] = "app-secret"
    await issuer.start()
    yield issuer
    await issuer.stop()


def _microsoft(issuer: Issuer, **flow: Any) -> Auth:
    data = {"tenant": TENANT, "client_id": "app", "client_secret_env": "MP_TEST_APP_SECRET",
            "authority": issuer.authority, "ca_file": str(issuer.ca_file), **flow}  # fmt: skip
    return Auth.model_validate({"microsoft": data, "timeout": "5s"})


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, KEY, algorithms=["HS256"]))


async def test_microsoft_client_secret_gets_a_token(issuer: Issuer) -> None:
    """msal's client-credentials grant at a custom authority, with the app's secret."""
    login = oauth2_login(_microsoft(issuer), USER, Tokens())
    token = await login.token()
    assert _claims(token)["email"] == USER
    assert await login.token() == token  # cached
    assert issuer.issued == [USER]


async def test_microsoft_certificate_gets_a_token(issuer: Issuer) -> None:
    """msal signs a client assertion with the certificate's key; the issuer verifies it."""
    cert, key = issuer.add_certificate_client("cert-app", USER)
    auth = _microsoft(issuer, client_id="cert-app", client_secret_env=None,
                      certificate_file=str(cert), private_key_file=str(key))  # fmt: skip
    token = await oauth2_login(auth, USER, Tokens()).token()
    assert _claims(token)["email"] == USER


async def test_microsoft_wrong_secret_is_the_issuers_refusal(issuer: Issuer) -> None:
    """The issuer's error code and first line of description, never the secret."""
    os.environ["MP_TEST_APP_SECRET"] = "wrong-secret"
    with pytest.raises(TokenError) as caught:
        await oauth2_login(_microsoft(issuer), USER, Tokens()).token()
    assert "the token issuer refused: invalid_client: AADSTS7000215" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)


async def test_microsoft_issuer_down_says_unreachable(issuer: Issuer) -> None:
    """Nothing listens at the authority: the message says the issuer is unreachable."""
    auth = _microsoft(issuer, authority=f"https://127.0.0.1:{closed_port()}/{TENANT}")
    with pytest.raises(TokenError, match=r"the token issuer is unreachable \(issuer down\?\)"):
        await oauth2_login(auth, USER, Tokens()).token()


async def test_microsoft_untrusted_issuer_is_a_tls_failure(issuer: Issuer, tmp_path: Path) -> None:
    """Without the issuer's CA the certificate does not verify: said as a TLS failure."""
    auth = _microsoft(issuer, ca_file=None)
    with pytest.raises(TokenError, match="TLS with the token issuer failed"):
        await oauth2_login(auth, USER, Tokens()).token()


async def test_google_service_account_asks_for_the_mailbox(issuer: Issuer, tmp_path: Path) -> None:
    """Domain-wide delegation: the assertion's sub is the login; token_uri from the key."""
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(issuer.add_service_account("sa@project.test")))
    auth = Auth.model_validate(
        {"google": {"service_account_file": str(key_file), "ca_file": str(issuer.ca_file)}}
    )
    token = await oauth2_login(auth, "someone@example.com", Tokens()).token()
    assert _claims(token)["email"] == "someone@example.com"


async def test_google_refresh_token_and_a_revoked_one(issuer: Issuer) -> None:
    """An installed app's refresh token gets a token; a revoked one is the issuer's refusal."""
    os.environ["MP_TEST_GOOGLE_SECRET"] = "g-secret"
    os.environ["MP_TEST_REFRESH"] = issuer.add_refresh_token("g-client", "g-secret", USER)
    flow = {"client_id": "g-client", "client_secret_env": "MP_TEST_GOOGLE_SECRET",
            "refresh_token_env": "MP_TEST_REFRESH", "token_uri": issuer.token_uri,
            "ca_file": str(issuer.ca_file)}  # fmt: skip
    auth = Auth.model_validate({"google": flow})
    assert _claims(await oauth2_login(auth, USER, Tokens()).token())["email"] == USER
    issuer.refresh_tokens.clear()
    with pytest.raises(
        TokenError, match="refused: invalid_grant: Token has been expired or revoked"
    ):
        await oauth2_login(auth, USER, Tokens()).token()


async def test_google_issuer_down_says_unreachable(issuer: Issuer) -> None:
    """Nothing listens at token_uri: unreachable, as for Microsoft."""
    os.environ["MP_TEST_GOOGLE_SECRET"] = "g-secret"
    os.environ["MP_TEST_REFRESH"] = "1//x"
    flow = {"client_id": "g-client", "client_secret_env": "MP_TEST_GOOGLE_SECRET",
            "refresh_token_env": "MP_TEST_REFRESH", "ca_file": str(issuer.ca_file),
            "token_uri": f"https://127.0.0.1:{closed_port()}/token"}  # fmt: skip
    with pytest.raises(TokenError, match="unreachable"):
        await oauth2_login(Auth.model_validate({"google": flow}), USER, Tokens()).token()


async def test_a_flow_runs_in_a_daemon_thread_that_cannot_hold_up_shutdown() -> None:
    """msal and google-auth block: their thread is a daemon, and a caller that gives up (the
    agent stopping) is not kept waiting for it; the late result goes nowhere, quietly."""
    started, release = threading.Event(), threading.Event()

    def work() -> int:
        started.set()
        release.wait(5)
        return 1

    task = asyncio.ensure_future(in_thread(work))
    assert await asyncio.to_thread(started.wait, 5)
    (thread,) = [t for t in threading.enumerate() if t.name == "mailprobe-token"]
    assert thread.daemon
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive()
    assert await in_thread(lambda: 2) == 2
