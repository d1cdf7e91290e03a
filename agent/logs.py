"""Logs that one hostile server cannot flood and that never show a secret.

Three things happen to every record on the way to a handler:

- Library chatter (aioimaplib logs each ignored untagged line at INFO, aiosmtpd each connection)
  is held below WARNING unless the log level is debug; urllib3's retry warnings, which repeat
  what a failed token request says anyway, below ERROR.
- A message repeated within a minute (same logger, level and text, digits aside) is shown five
  times; the rest are counted and the next one shown after the minute says how many were not
  ("... [repeated 431 more times in 60 s]").
- Secrets (passwords, the signing secret, OAuth2 client secrets and refresh tokens, each line
  of a private key) are replaced by `***` at every level, in each form they can take in a log
  line: as they are, IMAP-quoted (`\\` and `"` escaped, as aioimaplib sends a password), in
  Python's repr of str and of bytes, and base64 of the AUTH PLAIN and AUTH LOGIN strings.
  Tracebacks are cut to their first and last lines, so one server's RecursionError is not a
  thousand frames.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailprobe.agent.config import Config

#: Loggers of libraries whose INFO is per line or per connection (or per token request).
LIBRARY_LOGGERS = ("aioimaplib", "aiosmtplib", "mail.log", "mail.debug", "pymap", "msal",
                   "google.auth")  # fmt: skip
#: Loggers whose warnings repeat what the agent logs itself: urllib3's "Retrying ... after
#: connection broken" for each token request to an issuer that is down.
ECHO_LOGGERS = ("urllib3",)
BURST = 5
PERIOD = 60.0
MAX_KEYS = 1024
TRACEBACK_HEAD, TRACEBACK_TAIL = 4, 12
_DIGITS = re.compile(r"\d+")
_KEY_LENGTH = 240


@dataclass
class _Window:
    start: float
    shown: int = 0
    hidden: int = 0


class RateLimit(logging.Filter):
    """Show a repeated message BURST times per PERIOD; count the rest and say so afterwards."""

    def __init__(
        self, burst: int = BURST, period: float = PERIOD, max_keys: int = MAX_KEYS
    ) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self.max_keys = max_keys
        self._windows: dict[tuple[str, int, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat over the burst; the first record after a window carries the count."""
        key = (record.name, record.levelno, _DIGITS.sub("#", _message(record))[:_KEY_LENGTH])
        now = record.created
        window = self._windows.get(key)
        if window is None or now - window.start >= self.period:
            if window is not None and window.hidden:
                _append(record, f" [repeated {window.hidden} more times in "
                                f"{now - window.start:.0f} s]")  # fmt: skip
            self._evict(now)
            window = self._windows[key] = _Window(start=now)
        if window.shown < self.burst:
            window.shown += 1
            if window.shown == self.burst:
                _append(
                    record, f" [more like this within {self.period:.0f} s are counted, not shown]"
                )
            return True
        window.hidden += 1
        return False

    def _evict(self, now: float) -> None:
        if len(self._windows) < self.max_keys:
            return
        for key in [k for k, w in self._windows.items() if now - w.start >= self.period]:
            del self._windows[key]
        while len(self._windows) >= self.max_keys:  # all recent: drop the oldest
            del self._windows[min(self._windows, key=lambda k: self._windows[k].start)]


class Scrubber(logging.Filter):
    """Replace every form of every secret with *** and cut long tracebacks; never drops a record."""

    def __init__(self, secrets: Iterable[str] = (), logins: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        forms = {f for s in secrets if s for f in secret_forms(s)}
        forms |= {f for user, pw in logins if pw for f in auth_forms(user, pw)}
        ordered = sorted(forms, key=len, reverse=True)  # longest first: no half-replaced secret
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def scrub(self, text: str) -> str:
        """`text` with every known secret form replaced."""
        return self._pattern.sub("***", text) if self._pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's text in place when it holds a secret or a long traceback."""
        message = _message(record)
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(_cut(record.exc_text))
        if record.stack_info:
            record.stack_info = self.scrub(_cut(record.stack_info))
        return True


def secret_forms(secret: str) -> set[str]:
    """The ways a secret can appear in a log line: raw, IMAP-quoted, and as str/bytes repr."""
    quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
    forms: set[str] = set()
    for value in (secret, quoted):
        forms |= {value, repr(value)[1:-1], repr(value.encode())[2:-1]}
    return {f for f in forms if f}


def auth_forms(username: str, password: str) -> set[str]:
    """The password itself, plus base64 of the SASL PLAIN and LOGIN strings that carry it."""
    plain = [f"\0{username}\0{password}", f"{username}\0{username}\0{password}", password]
    encoded = {base64.b64encode(p.encode()).decode() for p in plain}
    return secret_forms(password) | encoded


def config_logins(config: Config) -> tuple[list[str], list[tuple[str, str]]]:
    """The probe-signing secret, the OAuth2 secrets (client secrets, refresh tokens, private
    keys) and every (username, password) of the config."""
    secrets: list[str] = []
    logins: list[tuple[str, str]] = []
    # An unreadable secret is check-config's to report; the scrubber then has nothing to hide.
    with contextlib.suppress(LookupError, UnicodeError):
        secrets.append(config.agent.secret().decode())
    for account in config.accounts.values():
        for endpoint in (account.smtp, account.imap):
            if endpoint is None:
                continue
            if endpoint.auth is not None:
                secrets += endpoint.auth.secrets()
            try:
                password = endpoint.password()
            except LookupError:
                continue
            if password:
                logins.append((endpoint.username or account.address, password))
    return secrets, logins


def install(
    level: str, config: Config | None = None, handlers: Iterable[logging.Handler] | None = None
) -> None:
    """Quiet library loggers unless debug, and add rate limiting and scrubbing to `handlers`.

    `handlers` defaults to the root logger's; calling install again replaces the filters.
    """
    debug = level.lower() == "debug"
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.WARNING)
    for name in ECHO_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.ERROR)
    secrets, logins = config_logins(config) if config is not None else ([], [])
    for handler in list(handlers if handlers is not None else logging.getLogger().handlers):
        for old in [f for f in handler.filters if isinstance(f, RateLimit | Scrubber)]:
            handler.removeFilter(old)
        handler.addFilter(RateLimit())
        handler.addFilter(Scrubber(secrets, logins))


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string must not lose the record
        return str(record.msg)


def _append(record: logging.LogRecord, text: str) -> None:
    # Formatted now, so a `%` in the message or the note cannot break formatting later.
    record.msg, record.args = _message(record) + text, None


def _cut(text: str) -> str:
    lines = text.splitlines()
    if len(lines) <= TRACEBACK_HEAD + TRACEBACK_TAIL + 1:
        return text
    hidden = len(lines) - TRACEBACK_HEAD - TRACEBACK_TAIL
    kept = [*lines[:TRACEBACK_HEAD], f"  ... ({hidden} lines of traceback cut)",
            *lines[-TRACEBACK_TAIL:]]  # fmt: skip
    return "\n".join(kept)
