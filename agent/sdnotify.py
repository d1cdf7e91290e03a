"""systemd's service notification protocol (sd_notify(3)), spoken directly.

A service started with Type=notify finds an AF_UNIX datagram socket in $NOTIFY_SOCKET (a path, or
an abstract name written with a leading '@') and sends it newline-separated VAR=value
assignments: READY=1 once it serves, STOPPING=1 when it begins to shut down, WATCHDOG=1 at least
once per $WATCHDOG_USEC when WatchdogSec= is set. One datagram per message, nothing to read back,
so no library is needed. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to the service manager; never raises, never blocks."""

    def __init__(self, address: str | None) -> None:
        self._address: str | None = None
        self._sock: socket.socket | None = None
        self._failed = False
        if not address:
            return
        if address.startswith("@"):
            self._address = "\0" + address[1:]  # Linux abstract namespace
        elif address.startswith("/"):
            self._address = address
        else:  # e.g. vsock:CID:PORT, for virtual machines: not spoken here
            log.warning("NOTIFY_SOCKET %r: only AF_UNIX sockets are supported", address)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        self._sock = sock

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier for $NOTIFY_SOCKET (disabled when it is unset)."""
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening."""
        return self._sock is not None

    def send(self, *assignments: str) -> bool:
        """Send VAR=value assignments as one datagram; True if it was sent."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            # A full queue or a manager gone away must not stop the agent; say so once.
            if not self._failed:
                log.warning("cannot notify the service manager at %r: %s", self._address, exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def close(self) -> None:
        """Close the socket; later sends are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(
    environ: Mapping[str, str] = os.environ, pid: int | None = None
) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises), or None when no watchdog is set for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 2e6


async def keep_alive(notifier: Notifier, interval: float | None) -> None:
    """Ping the watchdog every `interval` seconds until cancelled.

    The ping proves the event loop still turns: every probe, watcher and the HTTP endpoint run
    on it, so a loop that is stuck misses the deadline and systemd restarts the service.
    """
    if interval is None or not notifier.enabled:
        return
    while True:
        notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval)
