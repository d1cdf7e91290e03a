"""What every config section shares: the error that lists its problems, and durations.

Apart from ``mailprobe.agent.config`` so that sections defined in modules of their own (the
``webmail:`` entries of ``mailprobe.agent.webmail_config``) can use them and still be fields of
``Config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from mailprobe.agent.durations import Duration, positive

PositiveDuration = Annotated[Duration, AfterValidator(positive)]


class ConfigError(Exception):
    """The config cannot be used; `problems` lists each as `key.path: message`, one line each.

    `path` is the file, when the config came from one.
    """

    def __init__(self, problems: list[str], *, path: Path | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.path = path
