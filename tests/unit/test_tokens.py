"""The token cache: when tokens are refreshed, that one refresh runs at a time, what a failed
refresh does with a token still valid and without one, and what a refused token does."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable

import pytest

from mailprobe.agent.tokens import (
    Token,
    TokenCache,
    Tokens,
    jwt_expiry,
    login,
    refresh_time,
    usable_until,
)
from mailprobe.probes.sasl import TokenError
from tests.helpers.clock import FakeClock


class Source:
    """Tokens `t1`, `t2` ... living `life` seconds (None: unknown), or the failures queued."""

    description = "test source"

    def __init__(self, clock: FakeClock, life: float | None = 3600.0, max_age: float = 300.0):
        self.clock = clock
        self.life = life
        self.max_age = max_age
        self.calls = 0
        self.failures: list[TokenError] = []
        self.gate: asyncio.Event | None = None

    async def fetch(self) -> Token:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        now = self.clock.time()
        return Token(f"t{self.calls}", now, None if self.life is None else now + self.life)


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


def _cache(fake: FakeClock, **source: float | None) -> tuple[TokenCache, Source]:
    src = Source(fake, **source)  # type: ignore[arg-type]
    return TokenCache(src, fake.time), src


@pytest.mark.parametrize(
    ("life", "refresh_after"),
    [
        (3600.0, 2880.0),  # 80 % of an hour comes before 5 minutes ahead of expiry
        (1200.0, 900.0),  # 20 minutes: 5 minutes before expiry is the earlier
        (20.0, 10.0),  # 20 s: never before half its life
    ],
)
def test_refresh_time_is_the_earlier_of_80_percent_and_5_minutes_early(
    life: float, refresh_after: float
) -> None:
    """80 % of the life or 5 min before expiry, whichever is earlier, not before half the life."""
    token = Token("x", 1000.0, 1000.0 + life)
    assert refresh_time(token, 300.0) == pytest.approx(1000.0 + refresh_after)


def test_a_token_of_unknown_expiry_lives_max_age() -> None:
    """Without an expiry the source's max_age says how long it is reused and offered."""
    token = Token("x", 1000.0)
    assert refresh_time(token, 300.0) == usable_until(token, 300.0) == 1300.0


def test_a_token_is_not_offered_in_its_last_moments() -> None:
    """The last tenth of the life (at most 30 s) is too close to expiry to sign in with."""
    assert usable_until(Token("x", 0.0, 3600.0), 300.0) == 3570.0
    assert usable_until(Token("x", 0.0, 20.0), 300.0) == 18.0


async def test_a_token_is_reused_until_its_refresh_time(fake: FakeClock) -> None:
    """Sign-ins before the refresh time get the cached token; after it, a new one."""
    cache, src = _cache(fake, life=3600.0)
    assert await cache.get() == "t1"
    await fake.advance(2879)
    assert await cache.get() == "t1"
    await fake.advance(2)
    assert await cache.get() == "t2"
    assert src.calls == 2


async def test_concurrent_sign_ins_share_one_refresh(fake: FakeClock) -> None:
    """Ten sign-ins at once while the issuer is slow: one request, one token for all."""
    cache, src = _cache(fake)
    src.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(cache.get()) for _ in range(10)]
    await asyncio.sleep(0)
    src.gate.set()
    assert await asyncio.gather(*waiting) == ["t1"] * 10
    assert src.calls == 1


async def test_a_cancelled_sign_in_does_not_cancel_the_refresh_for_others(fake: FakeClock) -> None:
    """One probe gives up while the token is fetched; the other still gets the token."""
    cache, src = _cache(fake)
    src.gate = asyncio.Event()
    first, second = asyncio.ensure_future(cache.get()), asyncio.ensure_future(cache.get())
    await asyncio.sleep(0)
    first.cancel()
    src.gate.set()
    assert await second == "t1"
    assert first.cancelled()


async def test_a_failed_refresh_keeps_the_valid_token_and_backs_off(
    fake: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The issuer down at refresh time: the current token is used, the failure logged, and the
    issuer is not asked again for RETRY_AFTER; then a refresh succeeds."""
    caplog.set_level(logging.INFO, "mailprobe.agent.tokens")
    cache, src = _cache(fake, life=3600.0)
    await cache.get()
    await fake.advance(3000)
    src.failures.append(TokenError("the token issuer is unreachable (issuer down?)"))
    assert await cache.get() == "t1"
    assert "token refresh failed (the token issuer is unreachable" in caplog.text
    calls = src.calls
    await fake.advance(5)
    assert await cache.get() == "t1"
    assert src.calls == calls  # backing off
    await fake.advance(6)
    assert await cache.get() == "t3"
    assert "token refreshed after 1 failed attempt(s)" in caplog.text


async def test_without_a_usable_token_a_failed_refresh_is_a_token_error(fake: FakeClock) -> None:
    """The token expired and the issuer is down: TokenError (reason auth) saying why; the next
    sign-in asks again, so the agent recovers when the issuer does."""
    cache, src = _cache(fake, life=60.0)
    await cache.get()
    await fake.advance(60)
    src.failures.append(TokenError("the token issuer is unreachable (issuer down?)"))
    with pytest.raises(TokenError, match="unreachable") as caught:
        await cache.get()
    assert caught.value.reason == "auth"
    assert await cache.get() == "t3"


async def test_a_refused_token_is_not_offered_again(fake: FakeClock) -> None:
    """A server refused the token (revoked): the next sign-in fetches a new one at once."""
    cache, _src = _cache(fake)
    assert await cache.get() == "t1"
    cache.rejected("t0")  # not the current one: nothing happens
    assert await cache.get() == "t1"
    cache.rejected("t1")
    assert await cache.get() == "t2"


async def test_a_source_that_hangs_fails_after_the_cache_timeout(fake: FakeClock) -> None:
    """The cache bounds a fetch even when the source forgets its own timeout."""
    src = Source(fake)
    src.gate = asyncio.Event()  # never set
    cache = TokenCache(src, fake.time, timeout=0.05)
    with pytest.raises(TokenError, match=r"no token within 0\.05s"):
        await cache.get()


async def test_a_token_already_expired_when_fetched_is_refused(fake: FakeClock) -> None:
    """A source handing out an expired token is a failure, not a sign-in bound to fail."""
    cache, _ = _cache(fake, life=-5.0)
    with pytest.raises(TokenError, match="has expired"):
        await cache.get()


async def test_close_stops_a_refresh_in_progress(fake: FakeClock) -> None:
    """Shutdown does not wait for a slow issuer."""
    cache, src = _cache(fake)
    src.gate = asyncio.Event()
    pending = asyncio.ensure_future(cache.get())
    await asyncio.sleep(0)
    await cache.close()
    with pytest.raises(asyncio.CancelledError):
        await pending


def test_tokens_share_one_provider_per_source() -> None:
    """Endpoints naming the same source share its provider (and its token)."""
    tokens = Tokens()
    made: list[int] = []

    def make(n: int) -> Callable[[], TokenCache]:
        return lambda: (made.append(n), TokenCache(Source(FakeClock())))[1]

    first = tokens.provider(("a",), make(1))
    assert tokens.provider(("a",), make(2)) is first
    assert tokens.provider(("b",), make(3)) is not first
    assert made == [1, 3]
    assert login(first, "xoauth2").mechanism == "xoauth2"


def _jwt(payload: object) -> str:
    part = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{part}.c2ln"


@pytest.mark.parametrize(
    ("value", "expiry"),
    [
        (_jwt({"exp": 1_800_000_000}), 1_800_000_000.0),
        (_jwt({"exp": "soon"}), None),
        (_jwt({"exp": True}), None),
        (_jwt([1]), None),
        ("ya29.opaque-google-token", None),
        ("a.!!!.c", None),
    ],
)
def test_jwt_expiry_reads_exp_and_nothing_else(value: str, expiry: float | None) -> None:
    """A JWT's exp (unverified, only to know when to refresh); anything else: unknown."""
    assert jwt_expiry(value) == expiry
