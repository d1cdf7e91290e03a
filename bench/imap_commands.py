"""IMAP commands per client, counted by the server: Dovecot's per-command debug log.

With `log_debug = event=imap_command_finished` Dovecot writes one line per finished command,
tagged with the user and the session. The same count applies to every client, whatever library
it uses. Commands before login (CAPABILITY, STARTTLS) are handled by imap-login, which does not
log them; the login itself is counted from its "Login:" line.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.mailstack import MailStack

LOG_SETTING = "log_debug = event=imap_command_finished"
_LOGIN = re.compile(r"imap-login: Info: Login: user=<([^>]+)>.*session=<([^>]+)>")
_COMMAND = re.compile(r"imap\(([^)]+)\)<\d+><([^>]+)>: Debug: Command finished: (UID \S+|\S+)")
_LOGGED_OUT = re.compile(r"imap\(([^)]+)\)<\d+><([^>]+)>: Info: Disconnected")


def enable(stack: MailStack) -> None:
    """Make the stack's Dovecot log every finished IMAP command (restarts Dovecot)."""
    config = stack.layout.dovecot_config
    text = config.read_text()
    if LOG_SETTING not in text:
        config.write_text(f"{text.rstrip()}\n{LOG_SETTING}\n")
        stack.restart_dovecot()


@dataclass(frozen=True, slots=True)
class Session:
    """One IMAP session as the server logged it."""

    user: str
    session_id: str
    commands: Counter[str] = field(default_factory=Counter)
    ended: bool = False

    @property
    def total(self) -> int:
        return sum(self.commands.values())


class CommandLog:
    """Reads Dovecot's log between byte offsets."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        """Current end of the log."""
        return self.path.stat().st_size

    def _lines(self, start: int, end: int | None) -> list[str]:
        with self.path.open("rb") as handle:
            handle.seek(start)
            data = handle.read() if end is None else handle.read(max(0, end - start))
        return data.decode(errors="replace").splitlines()

    def sessions(self, start: int = 0, end: int | None = None) -> list[Session]:
        """Sessions seen in the range, in the order they first appear."""
        found: dict[str, Session] = {}
        ended: set[str] = set()
        for line in self._lines(start, end):
            if m := _LOGIN.search(line):
                user, sid, name = m.group(1), m.group(2), "LOGIN"
            elif m := _COMMAND.search(line):
                user, sid, name = m.group(1), m.group(2), m.group(3).upper()
            elif m := _LOGGED_OUT.search(line):
                ended.add(m.group(2))
                continue
            else:
                continue
            session = found.setdefault(sid, Session(user, sid))
            session.commands[name] += 1
        return [
            Session(s.user, s.session_id, s.commands, s.session_id in ended) for s in found.values()
        ]

    def commands(self, user: str, start: int, end: int | None = None) -> Counter[str]:
        """Commands of `user` (all sessions) logged between the offsets."""
        total: Counter[str] = Counter()
        for session in self.sessions(start, end):
            if session.user == user:
                total.update(session.commands)
        return total
