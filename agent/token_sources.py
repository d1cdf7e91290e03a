"""Token sources users plug their own tools into: a command that prints a token, a token file.

A command runs as the program and arguments given, never through a shell, with stdin closed
and `MAILPROBE_USERNAME` set to the login it is asked for (one script can serve several
mailboxes). It must exit 0 within the auth timeout and print the token: bare, or as JSON with
`access_token` (also `accessToken`, `token`) and `expires_in` seconds or `expires_on` /
`expires_at` Unix seconds (what `az account get-access-token` and `oauth2l fetch
--output_format json` print). A bare token that is a JWT expires at its `exp`; any other lives
`max_age` (default 5 minutes). A command that fails, hangs (it is killed at the timeout) or
prints nothing usable is a TokenError with its exit status and the end of its stderr.

A token file is read again whenever it changes (size, mtime or inode; checked at most once a
second), so whatever renews it (a sidecar, a cron job) is picked up at the next sign-in. It holds
the same formats as a command's output. A file that is missing, or holds an expired JWT, is a
TokenError that says so.

`provider()` turns an endpoint's `auth:` section into the provider its sign-ins use, shared with
every other endpoint that names the same source.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Hashable
from pathlib import Path

from mailprobe.agent.config_auth import Auth
from mailprobe.agent.tokens import Token, TokenCache, TokenProvider, Tokens, jwt_expiry, login
from mailprobe.probes.sasl import OAuth2Login, TokenError

log = logging.getLogger(__name__)

MAX_OUTPUT = 64 * 1024
"""A token command's stdout, or a token file, larger than this holds no token."""
MAX_STDERR_SHOWN = 500
"""Characters of a failed command's stderr kept for the log (its end: where the error is)."""
DEFAULT_MAX_AGE = 300.0
"""How long a token of unknown expiry from a command is reused."""
FILE_RECHECK = 1.0
"""A token file is looked at no more often than this."""
_VALUE_KEYS = ("access_token", "accessToken", "token")
_EXPIRY_KEYS = ("expires_on", "expires_at", "expiresOn", "expiry")


def parse_token(text: str, fetched_at: float, where: str) -> Token:
    """A command's output or a file's content -> Token; TokenError naming `where` if unusable."""
    text = text.strip()
    if not text:
        raise TokenError(f"{where}: no token (empty)")
    if not text.startswith("{"):
        if len(text.split()) != 1:
            raise TokenError(f"{where}: not a token (more than one word)")
        return Token(text, fetched_at, jwt_expiry(text))
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise TokenError(f"{where}: output starts with '{{' but is not JSON") from None
    value = next((data[k] for k in _VALUE_KEYS if isinstance(data.get(k), str)), None)
    if not value:
        raise TokenError(f"{where}: JSON without access_token")
    return Token(value, fetched_at, _json_expiry(data, fetched_at) or jwt_expiry(value))


def _json_expiry(data: dict[str, object], fetched_at: float) -> float | None:
    seconds = data.get("expires_in")
    if isinstance(seconds, str) and seconds.isdigit():
        seconds = int(seconds)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 < seconds < 1e8:
        return fetched_at + float(seconds)
    for key in _EXPIRY_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and 1e9 < value < 1e11:
            return float(value)
    return None


async def _read(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of `stream`, reading on to its end; and whether there was more."""
    if stream is None:
        return b"", False
    data, more = b"", False
    while chunk := await stream.read(65536):
        if len(data) < limit:
            data += chunk[: limit - len(data)]
        else:
            more = True
    return data, more


class CommandSource:
    """Runs a program that prints a token."""

    def __init__(
        self, argv: tuple[str, ...], username: str, timeout: float, max_age: float
    ) -> None:
        self.argv = argv
        self.username = username
        self.timeout = timeout
        self.max_age = max_age

    @property
    def description(self) -> str:
        """The command's program (and its script, given as a path), for log lines; other
        arguments are not shown, as they may hold secrets."""
        shown = [Path(self.argv[0]).name]
        if len(self.argv) > 1 and "/" in self.argv[1] and not self.argv[1].startswith("-"):
            shown.append(Path(self.argv[1]).name)
        return f"token command {' '.join(shown)} for {self.username}"

    async def fetch(self) -> Token:
        """Run the command once; its token, or TokenError with its status and stderr."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "MAILPROBE_USERNAME": self.username},
            )  # fmt: skip
        except OSError as exc:
            raise TokenError(f"{self.description}: cannot run: {exc.strerror or exc}") from None
        try:
            (out, too_long), (err, _) = await asyncio.wait_for(
                asyncio.gather(_read(proc.stdout, MAX_OUTPUT), _read(proc.stderr, MAX_OUTPUT)),
                self.timeout,
            )
            status = await asyncio.wait_for(proc.wait(), self.timeout)
        except TimeoutError:
            raise TokenError(
                f"{self.description}: did not finish within {self.timeout:g}s (killed)"
            ) from None
        finally:
            if proc.returncode is None:
                # Only the process this source started, by its own handle.
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        stderr = _tail(err)
        if status != 0:
            why = f"exited with status {status}" if status > 0 else f"killed by signal {-status}"
            raise TokenError(f"{self.description}: {why}" + (f": {stderr}" if stderr else ""))
        if too_long:
            raise TokenError(f"{self.description}: printed more than {MAX_OUTPUT} bytes")
        if stderr:
            log.debug("%s said on stderr: %s", self.description, stderr)
        return parse_token(out.decode("utf-8", "replace"), time.time(), self.description)


def _tail(data: bytes) -> str:
    text = " ".join(data.decode("utf-8", "replace").split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= MAX_STDERR_SHOWN else "..." + text[-MAX_STDERR_SHOWN:]


class FileToken:
    """A token in a file, read again when the file changes."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._seen: tuple[int, int, int] | None = None
        self._token: Token | None = None
        self._checked = float("-inf")
        self._refused: str | None = None

    @property
    def description(self) -> str:
        """The file, for log lines."""
        return f"token file {self.path}"

    async def get(self) -> str:
        """The file's token; TokenError when it is missing, unreadable or expired."""
        now = self._clock()
        if self._token is None or now - self._checked >= FILE_RECHECK:
            self._load(now)
        token = self._token
        assert token is not None  # noqa: S101 - _load sets it or raises
        if token.expires_at is not None and now >= token.expires_at:
            raise TokenError(
                f"{self.description}: its token expired {now - token.expires_at:.0f}s ago "
                "(whatever writes it has not renewed it)"
            )
        if token.value == self._refused:
            raise TokenError(
                f"{self.description}: holds the token a server refused (not renewed since)"
            )
        return token.value

    def _load(self, now: float) -> None:
        try:
            stat = self.path.stat()
            seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if seen != self._seen or self._token is None:
                self._token, self._seen = None, None
                self._token = parse_token(self._read(stat.st_size), now, self.description)
                self._seen = seen
        except OSError as exc:
            self._token, self._seen = None, None
            raise TokenError(f"{self.description}: {exc.strerror or exc}") from None
        self._checked = now

    def _read(self, size: int) -> str:
        if size > MAX_OUTPUT:
            raise TokenError(f"{self.description}: larger than {MAX_OUTPUT} bytes")
        return self.path.read_text(encoding="utf-8", errors="replace")

    def rejected(self, value: str) -> None:
        """A server refused `value`: offer it again only once the file holds another token."""
        self._refused = value
        self._checked = float("-inf")

    async def close(self) -> None:
        """Nothing runs in the background."""


def oauth2_login(auth: Auth, username: str, tokens: Tokens) -> OAuth2Login:
    """What an endpoint with this `auth:` signs in with, sharing the source's provider."""
    key, make = _provider(auth, username, tokens.clock)
    return login(tokens.provider(key, make), auth.mechanism)


def _provider(
    auth: Auth, username: str, clock: Callable[[], float]
) -> tuple[Hashable, Callable[[], TokenProvider]]:
    # Built lazily: an optional library is imported only when a source needs it.
    if auth.file is not None:
        path = auth.file
        return ("file", path), lambda: FileToken(path, clock)
    if auth.command is not None:
        argv, max_age = auth.command, auth.max_age or DEFAULT_MAX_AGE
        source = CommandSource(argv, username, auth.timeout, max_age)
        return ("command", argv, username), lambda: TokenCache(source, clock, auth.timeout * 2)
    from mailprobe.agent import token_flows

    return token_flows.provider(auth, username, clock)
