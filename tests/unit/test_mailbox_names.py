"""Configured mailbox names go to the server in IMAP's modified UTF-7 (RFC 3501 5.1.3)."""

from __future__ import annotations

import pytest

from mailprobe.probes.mailbox_names import to_wire


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("Junk", "Junk"),
        ("[Gmail]/Spam", "[Gmail]/Spam"),
        ("Junk Email", "Junk Email"),
        ("A&B", "A&-B"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501's example
        ("垃圾邮件", "&V4NXPpCuTvY-"),
    ],
)
def test_a_name_is_sent_in_modified_utf7(name: str, wire: str) -> None:
    """ASCII stays, & is escaped, the rest is base64 of UTF-16BE with , for /."""
    assert to_wire(name) == wire
