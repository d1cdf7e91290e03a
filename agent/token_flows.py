"""The built-in token flows: Microsoft client credentials (msal) and Google (google-auth).

Both libraries are optional (`mailprobe[microsoft]`, `mailprobe[google]`) and synchronous: they
are imported when a flow first fetches and run in a thread of their own, each HTTP request
bounded by the auth timeout. The thread is a daemon, not one of the loop's executor: an issuer
that hangs while the agent stops cannot hold the process past its shutdown grace. Whatever goes wrong becomes a TokenError whose message says what: the issuer
unreachable or not answering (the TokenCache keeps trying, so the agent recovers when it
returns), TLS with it failing, or its refusal (`invalid_client: ...`, first line only).

- Microsoft: `acquire_token_for_client` at `authority` (default
  https://login.microsoftonline.com/TENANT) for `scope` (default
  https://outlook.office365.com/.default), with the client secret, or with the certificate and
  its private key (a signed client assertion, SHA-256 thumbprint). An authority given in the
  config is taken as it is (no instance discovery at login.microsoftonline.com); msal then reads
  its `/v2.0/.well-known/openid-configuration`. Each fetch builds a fresh msal application, so
  msal's own cache never hands back the token we are replacing.
- Google: a service account's JSON key with `subject` = the login (domain-wide delegation), or
  an installed app's refresh token; `token_uri` overrides where tokens are asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Hashable
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

from mailprobe.agent.config_auth import GOOGLE_TOKEN_URI, Auth, GoogleFlow, MicrosoftFlow
from mailprobe.agent.tokens import Token, TokenCache, TokenProvider
from mailprobe.probes.sasl import TokenError

_SHOWN = 300  # characters of an issuer's error kept
T = TypeVar("T")


def provider(
    auth: Auth, username: str, clock: Callable[[], float]
) -> tuple[Hashable, Callable[[], TokenProvider]]:
    """The cache key and the provider of a microsoft or google `auth:` section."""
    timeout = auth.timeout
    if auth.microsoft is not None:
        ms = auth.microsoft
        # An app's client-credentials token serves every mailbox the app may open.
        return ("microsoft", ms), lambda: TokenCache(MicrosoftSource(ms, timeout), clock,
                                                     timeout * 3)  # fmt: skip
    assert auth.google is not None  # noqa: S101 - Auth validates one source is given
    google = auth.google
    return ("google", google, username), lambda: TokenCache(
        GoogleSource(google, username, timeout), clock, timeout * 3
    )


async def in_thread(work: Callable[[], T]) -> T:
    """`work()` in a daemon thread; its result or exception, here on the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():  # the caller gave up (cancelled)
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (work(), None)
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="mailprobe-token", daemon=True).start()
    return await future


def _short(text: object) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= _SHOWN else line[: _SHOWN - 3] + "..."


def _missing(module: str, extra: str) -> TokenError:
    return TokenError(
        f"needs the {module} package, not installed: pip install 'mailprobe[{extra}]'"
    )


def _http_failure(where: str, exc: Exception) -> TokenError | None:
    """A requests exception as the issuer being unreachable, silent or failing TLS."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return TokenError(f"{where}: TLS with the token issuer failed: {_short(exc)}")
    if isinstance(exc, requests.exceptions.Timeout):
        return TokenError(f"{where}: the token issuer did not answer in time (issuer down?)")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return TokenError(f"{where}: the token issuer is unreachable (issuer down?): "
                          f"{_short(_root(exc))}")  # fmt: skip
    if isinstance(exc, requests.exceptions.RequestException):
        return TokenError(f"{where}: talking to the token issuer failed: {_short(exc)}")
    return None


def _verify(ca_file: Path | None) -> dict[str, str]:
    """requests' `verify` for a configured CA file; nothing (the system's) without one."""
    return {"verify": str(ca_file)} if ca_file is not None else {}


def _root(exc: BaseException) -> BaseException:
    """The innermost cause (urllib3 nests "Connection refused" several levels deep)."""
    seen = 0
    while (exc.__cause__ or exc.__context__) is not None and seen < 8:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return exc


class MicrosoftSource:
    """Client credentials at the Microsoft identity platform."""

    max_age = 3600.0  # only if the issuer leaves out expires_in

    def __init__(self, flow: MicrosoftFlow, timeout: float) -> None:
        self.flow = flow
        self.timeout = timeout

    @property
    def description(self) -> str:
        """The app and the authority (no secret)."""
        return f"Microsoft token for app {self.flow.client_id} at {self.flow.authority_url}"

    async def fetch(self) -> Token:
        """One client-credentials grant, in a thread."""
        return await in_thread(self._fetch)

    def _credential(self) -> str | dict[str, str]:
        secret = self.flow.client_secret()
        if secret is not None:
            return secret
        certificate = self.flow.certificate_file
        assert certificate is not None  # noqa: S101 - validated: a secret or a certificate
        return {"private_key": self.flow.private_key() or "",
                "public_certificate": certificate.read_text()}  # fmt: skip

    def _fetch(self) -> Token:
        try:
            import msal
        except ImportError:
            raise _missing("msal", "microsoft") from None
        import requests

        fetched_at = time.time()
        session = requests.Session()
        # Per request, so a ca_file wins over REQUESTS_CA_BUNDLE (a session's verify does not).
        session.request = functools.partial(  # type: ignore[method-assign]
            session.request,
            timeout=self.timeout,
            **_verify(self.flow.ca_file),  # type: ignore[arg-type]
        )
        try:
            app = msal.ConfidentialClientApplication(
                self.flow.client_id, client_credential=self._credential(),
                authority=self.flow.authority_url, http_client=session,
                instance_discovery=False if self.flow.authority else None,
            )  # fmt: skip
            result = app.acquire_token_for_client(scopes=[self.flow.scope])
        except (LookupError, OSError) as exc:
            failure = _http_failure(self.description, exc) if isinstance(exc, OSError) else None
            raise failure or TokenError(f"{self.description}: {_short(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a library's surprise is this source failing
            raise _http_failure(self.description, exc) or TokenError(
                f"{self.description}: {type(exc).__name__}: {_short(exc)}"
            ) from None
        finally:
            session.close()
        return _token(result, fetched_at, self.description, self.max_age)


def _token(result: Any, fetched_at: float, where: str, default_life: float) -> Token:
    """An OAuth2 token response (a dict) as a Token, or its error as a TokenError."""
    if not isinstance(result, dict):
        raise TokenError(f"{where}: the token issuer's answer is not a token response")
    value = result.get("access_token")
    if not isinstance(value, str) or not value:
        error = _short(result.get("error") or "no access_token")
        description = _short(result.get("error_description") or "")
        raise TokenError(f"{where}: the token issuer refused: {error}"
                         + (f": {description}" if description else ""))  # fmt: skip
    life = result.get("expires_in")
    seconds = float(life) if isinstance(life, int | float | str) and str(life).isdigit() else None
    return Token(value, fetched_at, fetched_at + (seconds or default_life))


class GoogleSource:
    """A Google service account with domain-wide delegation, or an installed app's refresh token."""

    max_age = 3600.0

    def __init__(self, flow: GoogleFlow, username: str, timeout: float) -> None:
        self.flow = flow
        self.username = username
        self.timeout = timeout

    @property
    def description(self) -> str:
        """The kind of credential and the mailbox (no secret)."""
        if self.flow.service_account:
            return f"Google service account token for {self.username}"
        return f"Google refresh-token grant of client {self.flow.client_id} for {self.username}"

    async def fetch(self) -> Token:
        """One token request, in a thread."""
        return await in_thread(self._fetch)

    def _credentials(self) -> Any:
        from google.oauth2 import credentials, service_account

        flow = self.flow
        if flow.service_account:
            try:
                info = json.loads(flow.key_text() or "")
            except ValueError:
                raise TokenError(f"{self.description}: the key is not JSON") from None
            if not isinstance(info, dict):
                raise TokenError(f"{self.description}: the key is not a JSON object")
            if flow.token_uri:
                info["token_uri"] = flow.token_uri
            return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[flow.scope], subject=self.username
            )
        return credentials.Credentials(  # type: ignore[no-untyped-call]
            None, refresh_token=flow.refresh_token(), client_id=flow.client_id,
            client_secret=flow.client_secret(), token_uri=flow.token_uri or GOOGLE_TOKEN_URI,
            scopes=[flow.scope],
        )  # fmt: skip

    def _fetch(self) -> Token:
        try:
            import google.auth.exceptions
            import requests
            from google.auth.transport.requests import Request
        except ImportError:
            raise _missing("google-auth", "google") from None
        timeout = self.timeout

        class TimedRequest(Request):
            """google-auth asks with a 120 s timeout; ours is the config's."""

            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                kwargs.update(timeout=timeout, **verify)
                return super().__call__(*args, **kwargs)  # type: ignore[no-untyped-call]

        verify = _verify(self.flow.ca_file)
        session = requests.Session()
        fetched_at = time.time()
        try:
            creds = self._credentials()
            creds.refresh(TimedRequest(session))
        except google.auth.exceptions.RefreshError as exc:
            reason = exc.args[0] if exc.args else exc
            raise TokenError(
                f"{self.description}: the token issuer refused: {_short(reason)}"
            ) from None
        except google.auth.exceptions.TransportError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            raise _http_failure(self.description, cause) or TokenError(
                f"{self.description}: the token issuer is unreachable (issuer down?): {_short(_root(exc))}"
            ) from None
        except TokenError:
            raise
        except (LookupError, ValueError) as exc:  # a secret unreadable, a key unusable
            raise TokenError(f"{self.description}: {_short(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a library's surprise is this source failing
            raise _http_failure(self.description, exc) or TokenError(
                f"{self.description}: {type(exc).__name__}: {_short(exc)}"
            ) from None
        finally:
            session.close()
        expiry = creds.expiry
        expires_at = expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else None
        return Token(creds.token, fetched_at, expires_at or fetched_at + self.max_age)
