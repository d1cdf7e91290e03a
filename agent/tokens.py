"""Access tokens for OAuth2 sign-in: one cache per token source, refreshed before they expire.

A token is reused until its refresh time: 80 % of its life or 5 minutes before it expires,
whichever comes first, but not before half its life has passed (so a token that lives less than
10 minutes is not fetched anew for every sign-in). One whose expiry is unknown (a command's bare
output) is reused for the source's `max_age`. A token is never offered in its last tenth of life
(at most the last 30 s): it could expire between the fetch and the server's check.

One refresh runs at a time per source; whoever asks meanwhile waits for it and gets its result.
A refresh that fails while the current token is still usable keeps that token, says so in the log
and tries again after RETRY_AFTER; with no usable token left the failure is a TokenError (reason
`auth`) whose message says why: the issuer unreachable, the command's stderr, the issuer's
error. The next sign-in tries again, so the agent recovers as soon as the source does.

A token a server refused is dropped, so the next sign-in fetches a new one. Tokens live in
memory only: never in the ledger, the state directory, a metric or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from mailprobe.probes.sasl import Choice, OAuth2Login, TokenError

log = logging.getLogger(__name__)

REFRESH_SHARE = 0.8
"""Refresh once this share of a token's life has passed ..."""
REFRESH_LEAD = 300.0
"""... or this long before it expires, whichever comes first ..."""
REFRESH_FLOOR = 0.5
"""... but never before this share of its life."""
EXPIRY_MARGIN = 30.0
"""A token is not offered this close to its expiry (at most a tenth of its life)."""
RETRY_AFTER = 10.0
"""After a failed refresh, the next try waits this long while the current token is usable."""


@dataclass(frozen=True, slots=True)
class Token:
    """An access token, when it was fetched, and when it expires (None: not known)."""

    value: str = field(repr=False)
    fetched_at: float
    expires_at: float | None = None

    @property
    def life(self) -> float | None:
        """Seconds from fetch to expiry, if the expiry is known."""
        return None if self.expires_at is None else self.expires_at - self.fetched_at


class TokenProvider(Protocol):
    """What endpoints sign in with: a current token, and word of one a server refused."""

    async def get(self) -> str:
        """A usable token; TokenError when there is none."""
        ...

    def rejected(self, value: str) -> None:
        """A server refused `value`."""
        ...

    async def close(self) -> None:
        """Stop work in progress (the agent is stopping)."""
        ...


def login(provider: TokenProvider, mechanism: Choice) -> OAuth2Login:
    """The protocol layer's view of a token provider."""
    return OAuth2Login(token=provider.get, mechanism=mechanism, rejected=provider.rejected)


class TokenSource(Protocol):
    """Where tokens come from: a command, an identity platform."""

    @property
    def description(self) -> str:
        """What the source is, for log lines: no secret in it."""
        ...

    @property
    def max_age(self) -> float:
        """How long a token whose expiry is unknown is reused."""
        ...

    async def fetch(self) -> Token:
        """A new token; TokenError saying why when there is none."""
        ...


def refresh_time(token: Token, max_age: float) -> float:
    """When a fresh token should be fetched in place of `token`."""
    life = token.life
    if life is None:
        return token.fetched_at + max_age
    wait = max(REFRESH_FLOOR * life, min(REFRESH_SHARE * life, life - REFRESH_LEAD))
    return token.fetched_at + wait


def usable_until(token: Token, max_age: float) -> float:
    """The last moment `token` may be offered to a server."""
    life = token.life
    if life is None or token.expires_at is None:
        return token.fetched_at + max_age
    return token.expires_at - min(EXPIRY_MARGIN, 0.1 * max(life, 0.0))


def jwt_expiry(value: str) -> float | None:
    """The `exp` claim of a JWT (read, not verified: only to know when to refresh), or None."""
    parts = value.split(".")
    if len(parts) != 3 or len(parts[1]) > 8192:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool) and 0 < exp < 1e11:
        return float(exp)
    return None


class TokenCache:
    """The current token of one source, refreshed before expiry, one refresh at a time."""

    def __init__(
        self, source: TokenSource, clock: Callable[[], float] = time.time, timeout: float = 60.0
    ) -> None:
        self.source = source
        self._clock = clock
        self._timeout = timeout
        self._token: Token | None = None
        self._refresh: asyncio.Task[Token] | None = None
        self._failed_at: float | None = None
        self._failures = 0
        self.fetches = 0  # tokens fetched (for tests and figures)

    async def get(self) -> str:
        """A usable token: the current one, or a fresh one; TokenError when there is none."""
        now = self._clock()
        token = self._token
        if token is not None and now < refresh_time(token, self.source.max_age):
            return token.value
        if token is not None and self._backing_off(now, token):
            return token.value
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._fetch())
            self._refresh.add_done_callback(self._refreshed)
        # Shielded: one caller giving up (a probe cancelled) does not cancel it for the others.
        return (await asyncio.shield(self._refresh)).value

    def _backing_off(self, now: float, token: Token) -> bool:
        """A refresh failed lately and the current token is still usable: keep it for now."""
        recent = self._failed_at is not None and now - self._failed_at < RETRY_AFTER
        return recent and now < usable_until(token, self.source.max_age)

    async def _fetch(self) -> Token:
        try:
            fresh = await asyncio.wait_for(self.source.fetch(), self._timeout)
        except TimeoutError:
            return self._failed(TokenError(f"{self.source.description}: no token within "
                                           f"{self._timeout:g}s"))  # fmt: skip
        except TokenError as exc:
            return self._failed(exc)
        now = self._clock()
        if fresh.expires_at is not None and now >= usable_until(fresh, self.source.max_age):
            return self._failed(TokenError(f"{self.source.description}: the token it gave "
                                           "has expired"))  # fmt: skip
        self.fetches += 1
        if self._failures:
            log.info("%s: token refreshed after %d failed attempt(s)",
                     self.source.description, self._failures)  # fmt: skip
        self._failed_at, self._failures = None, 0
        self._token = fresh
        life = fresh.life
        log.debug("%s: new token, %s", self.source.description,
                  f"expires in {life:.0f}s" if life is not None else "expiry unknown")  # fmt: skip
        return fresh

    def _failed(self, exc: TokenError) -> Token:
        now = self._clock()
        self._failed_at = now
        self._failures += 1
        token = self._token
        if token is not None and now < usable_until(token, self.source.max_age):
            left = usable_until(token, self.source.max_age) - now
            log.warning("%s: token refresh failed (%s); the current token is used for up to "
                        "%.0fs more", self.source.description, exc, left)  # fmt: skip
            return token
        self._token = None
        raise exc

    def _refreshed(self, task: asyncio.Task[Token]) -> None:
        self._refresh = None
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaited it has seen it

    def rejected(self, value: str) -> None:
        """A server refused `value`: do not offer it again."""
        if self._token is not None and self._token.value == value:
            log.info("%s: a server refused the token; the next sign-in fetches a new one",
                     self.source.description)  # fmt: skip
            self._token = None

    async def close(self) -> None:
        """Stop a refresh in progress (the agent is stopping)."""
        task = self._refresh
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TokenError):
                await task


class Tokens:
    """The agent's token providers: one per distinct source, shared by the endpoints using it
    (the SMTP and IMAP side of an account, or every mailbox of one Microsoft app)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._providers: dict[Hashable, TokenProvider] = {}

    def provider(self, key: Hashable, make: Callable[[], TokenProvider]) -> TokenProvider:
        """The provider of the source `key`, made on first use."""
        if key not in self._providers:
            self._providers[key] = make()
        return self._providers[key]

    async def close(self) -> None:
        """Stop every refresh in progress."""
        for provider in self._providers.values():
            await provider.close()
