"""The README's code blocks, by section, so tests run the very commands it shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    """The text of the `## title` section (up to the next `## `)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(title: str, lang: str) -> list[str]:
    """The ```lang blocks of a section, each as its text."""
    return re.findall(rf"```{lang}\n(.*?)```", section(title), flags=re.DOTALL)


def commands(title: str) -> list[list[str]]:
    """Each shell command of the section's ```sh blocks (continuations joined, comments cut),
    split into words as the shell would."""
    out = []
    for block in blocks(title, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(words)
    return out
