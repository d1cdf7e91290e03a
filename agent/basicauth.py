"""HTTP basic auth against bcrypt hashes, as Prometheus's exporter-toolkit checks it.

bcrypt is slow by design (tens to hundreds of milliseconds a check), and Prometheus sends the same
credentials on every scrape, so each verdict is cached, right or wrong. A user who does not exist
is checked against a dummy hash of the same cost, so the time taken does not tell which users
exist. Checks run one at a time on a thread of their own: a flood of wrong passwords costs that
thread, never the event loop the probes run on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import bcrypt

CACHE_SIZE = 100  # distinct (user, password) pairs remembered, as in exporter-toolkit
CHALLENGE = 'Basic realm="mailprobe", charset="UTF-8"'


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` value, None if there is none."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # longer than bcrypt's 72 bytes: no hash made by htpasswd matches it
        return False


class Authenticator:
    """Checks basic-auth credentials against a table of bcrypt hashes."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        cost = min((h.split(b"$")[2] for h in self._users.values()), default=b"10")
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(int(cost)))
        self._salt = secrets.token_bytes(32)  # the cache keeps keyed digests, not passwords
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailprobe-bcrypt")

    async def check(self, header: str | None) -> bool:
        """Whether the Authorization header names a user with the right password."""
        creds = parse_basic(header)
        if creds is None:
            return False
        user, password = creds
        hashed = self._users.get(user)
        known = hashed is not None
        hashed = hashed if hashed is not None else self._dummy
        key = hmac.new(self._salt, b"\0".join((user.encode(), hashed, password.encode())),
                       hashlib.sha256).digest()  # fmt: skip
        verdict = self._cache.get(key)
        if verdict is None:
            loop = asyncio.get_running_loop()
            matches = await loop.run_in_executor(self._pool, _matches, password.encode(), hashed)
            verdict = known and matches
            self._cache[key] = verdict
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return verdict

    def close(self) -> None:
        """Stop the worker thread (queued checks are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
