"""Writing a message file straight into a Maildir, the way a delivery agent does."""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

# IMAP system flag -> Maildir info letter (the letters must be listed in ASCII order).
_FLAG_LETTERS = {
    "\\draft": "D",
    "\\flagged": "F",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}
_counter = itertools.count()


def maildir_info(flags: str) -> str:
    """Maildir info suffix letters for space-separated IMAP system flags."""
    letters = set()
    for flag in flags.split():
        try:
            letters.add(_FLAG_LETTERS[flag.lower()])
        except KeyError:
            raise ValueError(f"unsupported flag {flag!r}: use IMAP system flags") from None
    return "".join(sorted(letters))


def deliver_file(root: Path, data: bytes, flags: str, uid: int, gid: int) -> Path:
    """Write `data` to root/tmp, then rename it into new/ (no flags) or cur/ (with flags).

    The rename makes the message appear atomically, as a watcher on new/ expects.
    """
    info = maildir_info(flags)
    now = time.time()
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    base = f"{seconds}.M{micros}P{os.getpid()}Q{next(_counter)}.{socket.gethostname()}"
    tmp = root / "tmp" / base
    tmp.write_bytes(data)
    os.chown(tmp, uid, gid)
    tmp.chmod(0o600)
    target = root / "cur" / f"{base}:2,{info}" if info else root / "new" / base
    tmp.rename(target)
    return target
