"""An SMTP submission + IMAP mail service inside this process, with trouble on demand."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Literal, Self

from .certs import ThrowawayCA
from .imap import ImapCommandStats, ImapFront, MailStore, build_imap
from .listener import Listener
from .smtp import SmtpFront, Submission, SubmissionHandler, received_header

__all__ = ["EmbeddedMailService", "Side"]

_logger = logging.getLogger(__name__)

#: Which half of the service an outage takes down.
Side = Literal["smtp", "imap"]

_LISTENERS_OF: Mapping[Side, tuple[str, ...]] = {
    "smtp": ("smtp", "smtps"),
    "imap": ("imap", "imaps"),
}


class _Started:
    """Everything that exists only between start() and stop()."""

    def __init__(
        self,
        ca: ThrowawayCA,
        store: MailStore,
        smtp: SmtpFront,
        imap: ImapFront,
        listeners: Mapping[str, Listener],
    ) -> None:
        self.ca = ca
        self.store = store
        self.smtp = smtp
        self.imap = imap
        self.listeners = listeners


class EmbeddedMailService:
    """SMTP submission and IMAP for a fixed set of users, served on the running event loop.

    Users are mail addresses; each logs in to SMTP and IMAP with its address and password, and
    mail accepted for it lands in its INBOX. Every listener binds port 0 on `host`; the bound
    ports stay fixed for the service's life, through outages.
    """

    #: The name the servers give themselves in greetings and Received headers.
    hostname = "mx.embedded.test"

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        fail_rate: float = 0.0,
        delay: float = 0.0,
        delay_fraction: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        if not users:
            raise ValueError("the mail service needs at least one user")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within [0, 1], got {fail_rate}")
        if delay < 0.0:
            raise ValueError(f"delay must not be negative, got {delay}")
        if not 0.0 <= delay_fraction <= 1.0:
            raise ValueError(f"delay_fraction must be within [0, 1], got {delay_fraction}")
        self.users: Mapping[str, str] = MappingProxyType(dict(users))
        self.host = host
        self.fail_rate = fail_rate
        self.delay = delay
        self.delay_fraction = delay_fraction
        self._rng = rng if rng is not None else random.Random()
        self._started: _Started | None = None
        self._ports: dict[str, int] = {}
        self._down: set[Side] = set()
        self._deliveries: set[asyncio.Task[None]] = set()

    # -- ports and files ---------------------------------------------------------------------

    @property
    def smtp_port(self) -> int:
        """Submission port: STARTTLS, then AUTH PLAIN/LOGIN, both required."""
        return self._port("smtp")

    @property
    def smtps_port(self) -> int:
        """Submission over implicit TLS, AUTH required."""
        return self._port("smtps")

    @property
    def imap_port(self) -> int:
        """IMAP port: STARTTLS required before LOGIN/AUTHENTICATE."""
        return self._port("imap")

    @property
    def imaps_port(self) -> int:
        """IMAP over implicit TLS."""
        return self._port("imaps")

    @property
    def ca_file(self) -> Path:
        """PEM file of the throwaway CA that signed the server certificate; gone after stop()."""
        return self._require_started().ca.ca_file

    def _port(self, name: str) -> int:
        try:
            return self._ports[name]
        except KeyError:
            raise RuntimeError("the mail service has not been started") from None

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the mail store and certificates, and bind every listener."""
        if self._started is not None or self._ports:
            raise RuntimeError("an EmbeddedMailService starts once")
        ca = ThrowawayCA([self.host, "localhost", "127.0.0.1"])
        listeners: dict[str, Listener] = {}
        try:
            context = ca.server_context()
            store, imap = await build_imap(self.users, hostname=self.hostname, ssl_context=context)
            handler = SubmissionHandler(
                self.users, hostname=self.hostname, refuse=self._refuse, accept=self._accept
            )
            smtp = SmtpFront(handler, hostname=self.hostname, ssl_context=context)
            for name, start_server in (
                ("smtp", smtp.start_submission),
                ("smtps", smtp.start_implicit_tls),
                ("imap", imap.start_starttls),
                ("imaps", imap.start_implicit_tls),
            ):
                listener = Listener(self.host, start_server)
                await listener.open()
                listeners[name] = listener
        except BaseException:
            for listener in listeners.values():
                await listener.close()
            ca.cleanup()
            raise
        self._started = _Started(ca, store, smtp, imap, listeners)
        self._ports = {name: listener.port for name, listener in listeners.items()}

    async def stop(self) -> None:
        """Close the listeners, drop every session, cancel held deliveries, remove the CA file."""
        started, self._started = self._started, None
        if started is None:
            return
        try:
            for listener in started.listeners.values():
                await listener.close()
            await started.smtp.drop_sessions()
            await started.imap.drop_sessions()
            deliveries = set(self._deliveries)
            for task in deliveries:
                task.cancel()
            if deliveries:
                await asyncio.wait(deliveries)
        finally:
            started.ca.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- trouble on demand --------------------------------------------------------------------

    async def set_outage(self, side: Side, down: bool) -> None:
        """Take one side down (refuse connections, drop its sessions) or bring it back up.

        Back up, the side listens on the same ports as before.
        """
        started = self._require_started()
        if side not in _LISTENERS_OF:
            raise ValueError(f"side must be 'smtp' or 'imap', got {side!r}")
        listeners = [started.listeners[name] for name in _LISTENERS_OF[side]]
        if down:
            self._down.add(side)
            for listener in listeners:
                await listener.close()
            front = started.smtp if side == "smtp" else started.imap
            await front.drop_sessions()
        else:
            for listener in listeners:
                await listener.open()
            self._down.discard(side)

    def is_down(self, side: Side) -> bool:
        """True while `side` is in an outage set by set_outage()."""
        return side in self._down

    async def deliver(self, user: str, message: bytes) -> int:
        """Put a message straight into `user`'s INBOX, as is, bypassing SMTP; return its UID."""
        if user not in self.users:
            raise KeyError(user)
        store = self._require_started().store
        return await store.deliver(user, message, when=datetime.now(UTC))

    # -- observation --------------------------------------------------------------------------

    def imap_stats(self) -> ImapCommandStats:
        """IMAP commands received since start, in total, by name and per session."""
        return self._require_started().imap.stats()

    @property
    def pending_deliveries(self) -> int:
        """Accepted deliveries not yet in a mailbox (held by `delay`, or about to land)."""
        return len(self._deliveries)

    # -- delivery -----------------------------------------------------------------------------

    def _require_started(self) -> _Started:
        if self._started is None:
            raise RuntimeError("the mail service is not running")
        return self._started

    def _refuse(self) -> bool:
        return self.fail_rate > 0.0 and self._rng.random() < self.fail_rate

    def _accept(self, submission: Submission) -> None:
        for user in submission.recipients:
            held = self.delay > 0.0 and self._rng.random() < self.delay_fraction
            task = asyncio.get_running_loop().create_task(
                self._deliver(user, submission, self.delay if held else 0.0)
            )
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, user: str, submission: Submission, hold: float) -> None:
        # Even an unheld delivery runs after the 250 reply, as a real queue would.
        if hold > 0.0:
            await asyncio.sleep(hold)
        store = self._require_started().store
        now = time.time()
        # What Dovecot's LMTP adds on delivery, so Received parsing sees both hops.
        header = b"Return-Path: <%s>\r\n" % submission.sender.encode("ascii", "replace")
        header += received_header(
            from_=self.hostname,
            by=self.hostname,
            with_="LMTP",
            queue_id=uuid.uuid4().hex[:16],
            when=now,
            for_=user,
            envelope_from=submission.sender,
        )
        try:
            await store.deliver(
                user, header + submission.content, when=datetime.fromtimestamp(now, UTC)
            )
        except Exception:
            _logger.exception("delivery of %s to %s failed", submission.queue_id, user)
