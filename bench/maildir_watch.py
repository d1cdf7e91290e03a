"""Ground truth for delivery time: the moment a message file appears in a Maildir's new/.

`inotifywait --monitor` (inotify-tools) reports every file renamed or linked into new/; a reader
thread stamps each line with time.time() as it arrives, reads the file's header to learn which
probe it is, and records the file's inode change time (set by the rename) as a cross-check that
the stamp is not late.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

INOTIFYWAIT = "/usr/bin/inotifywait"
# A probe's identifying header is near the top; reading the whole message is not needed.
_HEAD_BYTES = 16384


@dataclass(frozen=True, slots=True)
class FileSeen:
    """A message file that appeared in new/ of a watched Maildir."""

    key: str
    mailbox: str
    seen_at: float  # time.time() when inotifywait's line reached this process
    ctime: float | None  # the file's inode change time, i.e. the kernel's time of the rename


class MaildirWatch:
    """Watches new/ of several Maildirs; first sighting of each message, keyed by a header match."""

    def __init__(self, maildirs: Mapping[str, Path], patterns: Sequence[re.Pattern[bytes]]) -> None:
        self._dirs = {(path / "new").resolve(): name for name, path in maildirs.items()}
        self._patterns = patterns
        self._seen: dict[str, FileSeen] = {}
        self._waiters: dict[str, asyncio.Future[FileSeen]] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.unidentified: list[str] = []  # files whose header matched no pattern

    async def start(self) -> None:
        """Start inotifywait; return once every watch is established."""
        self._loop = asyncio.get_running_loop()
        await asyncio.wait_for(asyncio.to_thread(self._spawn), 10)
        self._thread = threading.Thread(target=self._read, name="maildir-watch", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            [INOTIFYWAIT, "--monitor", "--event", "moved_to", "--event", "create",
             "--format", "%w%f", *map(str, self._dirs)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        assert self._proc.stderr is not None
        # inotifywait prints "Watches established." on stderr once it is ready.
        for line in self._proc.stderr:
            if "Watches established" in line:
                return
        raise RuntimeError(f"inotifywait exited with {self._proc.wait()} before it was ready")

    def stop(self) -> None:
        """Stop inotifywait (the process this watch started) and the reader thread."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)
        if self._proc is not None:
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()

    async def wait_for(self, key: str, timeout: float) -> FileSeen | None:
        """The sighting of the message identified by `key`, or None if none came in time."""
        if key in self._seen:
            return self._seen[key]
        assert self._loop is not None
        future = self._waiters.setdefault(key, self._loop.create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            seen_at = time.time()
            path = Path(line.rstrip("\n"))
            mailbox = self._dirs.get(path.parent.resolve(), "?")
            try:
                ctime: float | None = os.stat(path).st_ctime_ns / 1e9
            except FileNotFoundError:
                ctime = None
            key = self._identify(path)
            if key is None:
                self.unidentified.append(str(path))
                continue
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._record, FileSeen(key, mailbox, seen_at, ctime))

    def _identify(self, path: Path) -> str | None:
        head = _read_head(path)
        for pattern in self._patterns:
            if match := pattern.search(head):
                return match.group(1).decode()
        return None

    def _record(self, seen: FileSeen) -> None:
        if seen.key in self._seen:
            return
        self._seen[seen.key] = seen
        future = self._waiters.pop(seen.key, None)
        if future is not None and not future.done():
            future.set_result(seen)


def _read_head(path: Path) -> bytes:
    """The first bytes of a message file, following it to cur/ if Dovecot already moved it."""
    try:
        with path.open("rb") as handle:
            return handle.read(_HEAD_BYTES)
    except FileNotFoundError:
        pass
    # Moved to cur/ keeps the base name and appends ":2,<flags>".
    cur = path.parent.parent / "cur"
    try:
        names = [name for name in os.listdir(cur) if name.startswith(path.name)]
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            with (cur / name).open("rb") as handle:
                return handle.read(_HEAD_BYTES)
        except FileNotFoundError:
            continue
    return b""
