"""Mailbox names on the wire: IMAP's modified UTF-7 (RFC 3501 section 5.1.3).

A name from the config is text as the user reads it (a provider preset's "垃圾邮件"); servers
expect and list it in modified UTF-7 ("&V4NXPpCuTvY-"). Names the server listed are already on
the wire form and are used as they are.
"""

from __future__ import annotations

import base64


def to_wire(name: str) -> str:
    """``name`` in modified UTF-7: printable ASCII as it is (``&`` as ``&-``), the rest base64
    of UTF-16BE between ``&`` and ``-``, with ``,`` for ``/``."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            data = "".join(run).encode("utf-16-be")
            out.append(
                "&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-"
            )
            run.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            run.append(char)
    flush()
    return "".join(out)
