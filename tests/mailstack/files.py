"""The stack's files on disk, with the ownership, modes and timestamps the servers insist on."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

# (name, owned by the setgid group, mode) as in /etc/postfix/postfix-files.
_PRIVATE_QUEUES = "active bounce corrupt defer deferred flush hold incoming private saved trace"
_QUEUE_DIRS = (
    *((name, False, 0o700) for name in _PRIVATE_QUEUES.split()),
    ("maildrop", True, 0o730),
    ("public", True, 0o710),
)


def write_postfix_file(path: Path, text: str) -> None:
    """Write a Postfix config file with an mtime in the past.

    Postfix waits, in 0.3 s steps, until a file it loads is at least ~2 s old ("let it cool
    down"), which made every fresh start take 2 s.
    """
    path.write_text(text)
    past = time.time() - 60
    os.utime(path, (past, past))


def make_queue_dirs(spool: Path, owner: int, setgid_group: int) -> None:
    """Create Postfix's queue directories as post-install would (see postfix-files)."""
    spool.mkdir(mode=0o755)
    (spool / "pid").mkdir(mode=0o755)
    for name, group, mode in _QUEUE_DIRS:
        path = spool / name
        path.mkdir()
        os.chown(path, owner, setgid_group if group else -1)
        path.chmod(mode)  # mkdir's mode is masked by the umask


def make_maildirs(vmail_root: Path, maildirs: list[Path], owner: pwd.struct_passwd) -> None:
    """Create empty Maildirs (cur/ new/ tmp/) below `vmail_root`, all owned by `owner`."""
    for maildir in maildirs:
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
    for path in (vmail_root, *vmail_root.rglob("*")):
        os.chown(path, owner.pw_uid, owner.pw_gid)
