"""Log output as text lines or as JSON, one object a line.

The JSON object has `time` (RFC 3339, UTC, milliseconds), `level`, `logger` and `message`. A probe
line's message is logfmt (`probe route=a2b id=... status=ok delay=0.412s`); its key=value pairs are
copied to keys of their own, values as written, so a log pipeline can filter on `route` or
`status` without parsing the message. Keys of the object itself are never overwritten.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# key=value or key="quoted value"; a key starts the message or follows a space.
_PAIR = re.compile(r'(?:^|(?<= ))([a-z_][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"]+)')
_RESERVED = frozenset({"time", "level", "logger", "message", "exception", "stack"})


def logfmt_fields(message: str) -> dict[str, str]:
    """The key=value pairs of a logfmt message, in order; quoted values unquoted."""
    fields: dict[str, str] = {}
    for key, raw in _PAIR.findall(message):
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        fields.setdefault(key, value)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        message = record.getMessage()
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, str] = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in logfmt_fields(message).items():
            if key not in _RESERVED:
                out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str, fmt: LogFormat = "text") -> None:
    """Send the process's log to stderr at `level`, as text lines or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
