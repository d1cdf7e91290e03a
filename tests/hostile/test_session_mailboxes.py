"""What the session reads of the mailboxes, whatever form the server chooses: new mail announced
with another command's response, the junk folder's name in LIST, STATUS of another folder."""

from __future__ import annotations

import pytest

from mailprobe.probes.imap_session import ImapSession
from mailprobe.probes.message import HEADER_SIGNATURE

from .harness import plain_endpoint, probe
from .imap_server import Conn, ImapServer


class ExistsWithSearch(ImapServer):
    """Announces a new message inside the SEARCH response, as Dovecot does when mail lands
    while a SEARCH runs."""

    async def on_search(self, conn: Conn, tag: bytes, args: bytes) -> None:
        self.messages.append(self.messages[-1].__class__(self.messages[-1].uid + 1, b"x"))
        await conn.send(b"* %d EXISTS\r\n" % len(self.live()) + b"* SEARCH\r\n" + tag + b" OK\r\n")


class Folders(ImapServer):
    """Answers LIST with the lines given, and STATUS of any folder."""

    def __init__(self, listing: list[bytes], *, special_use: bool = False) -> None:
        super().__init__()
        self.listing = listing
        self.special_use = special_use
        self.listed: list[bytes] = []

    def capabilities(self, conn: Conn) -> bytes:
        extra = b" SPECIAL-USE LIST-EXTENDED" if self.special_use else b""
        return super().capabilities(conn) + extra

    def handlers(self) -> dict[bytes, object]:
        return {**super().handlers(), b"LIST": self.on_list, b"STATUS": self.on_status}

    async def on_list(self, conn: Conn, tag: bytes, args: bytes) -> None:
        self.listed.append(args)
        await conn.send(b"".join(b"* LIST " + line + b"\r\n" for line in self.listing)
                        + tag + b" OK list\r\n")  # fmt: skip

    async def on_status(self, conn: Conn, tag: bytes, args: bytes) -> None:
        name = args.rsplit(b" (", 1)[0]
        await conn.send(b"* STATUS " + name + b" (MESSAGES 3 UIDNEXT 42 UIDVALIDITY 7)\r\n"
                        + tag + b" OK status\r\n")  # fmt: skip


async def _session(server: ImapServer) -> ImapSession:
    session = ImapSession(plain_endpoint(server.port))
    await session.open()
    return session


async def test_mail_announced_during_a_search_is_not_lost() -> None:
    """aioimaplib drops an EXISTS that comes with a SEARCH; the session counts it all the same,
    with the moment it came."""
    async with ExistsWithSearch([probe()[1]]) as server:
        session = await _session(server)
        try:
            before = session.size_changes
            await session.probe_candidates(1, HEADER_SIGNATURE)
            assert session.size_changes == before + 1
            assert session.size == 2
            assert session.changed_at > 0
        finally:
            session.close()


async def test_an_unchanged_exists_is_no_news() -> None:
    """A server that repeats the size at every NOOP announces nothing new."""
    async with ImapServer([probe()[1]]) as server:
        session = await _session(server)
        try:
            before = session.size_changes
            for _ in range(3):
                assert await session.noop()  # it does say EXISTS
            assert session.size_changes == before
        finally:
            session.close()


@pytest.mark.parametrize(
    ("listing", "special_use", "expected"),
    [
        ([b'(\\HasNoChildren) "." INBOX', b'(\\HasNoChildren \\Junk) "." Junk'], False, "Junk"),
        ([b'(\\Junk) "/" "Junk E-mail"'], True, "Junk E-mail"),
        ([b'(\\HasNoChildren \\Spam) "/" "[Gmail]/Spam"'], False, "[Gmail]/Spam"),
        ([b'(\\Junk) NIL "Quoted \\"name\\""'], False, 'Quoted "name"'),
        ([b'(\\HasNoChildren) "." INBOX', b'(\\Trash) "." Trash'], False, None),
        ([b"garbage without parentheses", b'(\\Junk) "." \xff\xfe'], False, None),
    ],
)
async def test_the_junk_folder_is_the_one_list_marks_junk(
    listing: list[bytes], special_use: bool, expected: str | None
) -> None:
    """\\Junk (or Gmail's \\Spam), atom or quoted; none marked or none usable: no junk folder.
    With SPECIAL-USE the server is asked for the special folders only."""
    async with Folders(listing, special_use=special_use) as server:
        session = await _session(server)
        try:
            assert await session.junk_folder() == expected
        finally:
            session.close()
        assert server.listed[0].startswith(b"(SPECIAL-USE)") is special_use


async def test_status_reads_another_folders_uidnext() -> None:
    """STATUS of the junk folder: UIDNEXT, UIDVALIDITY, MESSAGES."""
    async with Folders([]) as server:
        session = await _session(server)
        try:
            status = await session.status("Junk E-mail")
        finally:
            session.close()
    assert status is not None
    assert (status.uidnext, status.uidvalidity, status.messages) == (42, 7, 3)


async def test_a_folder_the_server_will_not_status_is_none() -> None:
    """STATUS refused (BAD): no status, no error."""
    async with ImapServer() as server:
        session = await _session(server)
        try:
            assert await session.status("Junk") is None
            assert await session.junk_folder() is None
        finally:
            session.close()
