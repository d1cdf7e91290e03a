"""Plain-text tables whose columns stay aligned whatever the cells hold: long cells wrap.

A column has a header, an alignment and a maximum width. Each column is as wide as its widest
cell (or header word) up to that maximum; a longer cell wraps onto continuation lines inside its
column, breaking at spaces and hyphens and, for a single long word such as a route name, inside
the word. Each column starts at the same position on every line, right-aligned cells end at its
right edge, and no line is wider than the columns' widths add up to.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

GAP = "  "


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header, ``right`` for numbers, and the width it may grow to."""

    header: str
    right: bool = False
    max_width: int = 40


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=True) or [""]


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], *, indent: str = ""
) -> list[str]:
    """The header, a rule and the rows, each cell wrapped inside its column."""
    widths = []
    for index, col in enumerate(columns):
        longest = max((len(row[index]) for row in rows), default=0)
        # A header wraps at spaces but never inside a word.
        word = max(len(w) for w in col.header.split()) if col.header.strip() else 0
        widths.append(max(word, min(col.max_width, max(longest, len(col.header)))))
    out = _lines(columns, widths, [c.header for c in columns], indent)
    out.append(indent + GAP.join("-" * w for w in widths))
    for row in rows:
        out += _lines(columns, widths, row, indent)
    return out


def _lines(
    columns: Sequence[Column], widths: Sequence[int], row: Sequence[str], indent: str
) -> list[str]:
    cells = [_wrap(text, width) for text, width in zip(row, widths, strict=True)]
    out = []
    for parts in zip_longest(*cells, fillvalue=""):
        line = GAP.join(
            part.rjust(width) if col.right else part.ljust(width)
            for part, width, col in zip(parts, widths, columns, strict=True)
        )
        out.append((indent + line).rstrip())
    return out


def paragraph(text: str, width: int, *, indent: str = "", bullet: str = "") -> list[str]:
    """``text`` wrapped to ``width``, continuation lines hanging under the first word."""
    first = indent + bullet
    return textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=" " * len(first),
        break_long_words=True, break_on_hyphens=True,
    ) or [first.rstrip()]  # fmt: skip
