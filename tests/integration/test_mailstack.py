"""The test mail stack itself: TLS, authentication, delivery, hold/release, refusals, outages."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import uuid
from email.message import EmailMessage

import pytest

from tests.mailstack import MailStack, queue_id_from_reply

pytestmark = pytest.mark.integration

# Mail goes to carol and dave only: other suites sharing the session's stack count what is in
# alice's and bob's mailboxes. alice only authenticates and sends.
ALICE, CAROL, DAVE = "alice@probe.test", "carol@probe.test", "dave@other.test"


def _message(sender: str, recipient: str, **headers: str) -> tuple[str, bytes]:
    """A small message with a unique token in its subject and body."""
    token = uuid.uuid4().hex
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, recipient, f"mailstack {token}"
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(f"body {token}\n")
    return token, msg.as_bytes()


def _submit(stack: MailStack, sender: str, recipient: str, data: bytes) -> str:
    """Submit over STARTTLS with AUTH; return the reply to end of DATA."""
    with smtplib.SMTP(stack.host, stack.submission_port, timeout=10) as smtp:
        smtp.starttls(context=stack.client_ssl_context())
        smtp.login(sender, stack.users[sender])
        smtp.mail(sender)
        assert smtp.rcpt(recipient)[0] == 250
        code, reply = smtp.data(data)
    assert code == 250, reply
    return reply.decode()


def _deliver_unauthenticated(stack: MailStack, sender: str, recipient: str, data: bytes) -> str:
    """Hand a message to the MX-like plain port; return the reply to end of DATA."""
    with smtplib.SMTP(stack.host, stack.smtp_port, timeout=10) as smtp:
        smtp.mail(sender)
        assert smtp.rcpt(recipient)[0] == 250
        code, reply = smtp.data(data)
    assert code == 250, reply
    return reply.decode()


def _imap_search(
    imap: imaplib.IMAP4, user: str, stack: MailStack, token: str, folder: str = "INBOX"
) -> list[str]:
    """Log in, select `folder`, return the sequence numbers whose subject has `token`."""
    imap.login(user, stack.users[user])
    assert imap.select(folder)[0] == "OK"
    status, data = imap.search(None, "SUBJECT", token)
    assert status == "OK"
    return [str(number) for number in data[0].decode().split()]


def _fetched_bytes(imap: imaplib.IMAP4, number: str, item: str) -> bytes:
    """The raw response of FETCH `item` for one message, literal included."""
    status, data = imap.fetch(number, item)
    assert status == "OK"
    parts = [part for entry in data for part in (entry if isinstance(entry, tuple) else (entry,))]
    return b"".join(part for part in parts if isinstance(part, bytes))


def test_starttls_submission_lands_in_maildir_and_is_visible_over_imap(
    mailstack: MailStack,
) -> None:
    """Submission (STARTTLS + AUTH) -> Postfix -> LMTP -> carol's Maildir, then found over IMAP."""
    token, data = _message(ALICE, CAROL)
    reply = _submit(mailstack, ALICE, CAROL, data)
    assert queue_id_from_reply(reply)
    path = mailstack.wait_for_delivery(CAROL, token.encode())
    assert path.parent.parent == mailstack.maildir(CAROL)
    with imaplib.IMAP4(mailstack.host, mailstack.imap_port, timeout=10) as imap:
        imap.starttls(ssl_context=mailstack.client_ssl_context())
        (number,) = _imap_search(imap, CAROL, mailstack, token)
        fetched = _fetched_bytes(imap, number, "(BODY.PEEK[TEXT])")
    assert f"body {token}".encode() in fetched


def test_mail_to_the_other_domain_is_delivered(mailstack: MailStack) -> None:
    """A second virtual domain (other.test) receives mail: an "external" route exists."""
    token, data = _message(CAROL, DAVE)
    _submit(mailstack, CAROL, DAVE, data)
    mailstack.wait_for_delivery(DAVE, token.encode())


def test_submission_demands_starttls_before_auth_and_mail(mailstack: MailStack) -> None:
    """Without STARTTLS the submission port offers no AUTH and refuses MAIL with 530."""
    with smtplib.SMTP(mailstack.host, mailstack.submission_port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        code, _ = smtp.mail(ALICE)
    assert code == 530


def test_submission_refuses_unauthenticated_mail(mailstack: MailStack) -> None:
    """After STARTTLS but without AUTH, RCPT is refused (no open relay, no anonymous submit)."""
    with smtplib.SMTP(mailstack.host, mailstack.submission_port, timeout=10) as smtp:
        smtp.starttls(context=mailstack.client_ssl_context())
        smtp.mail(ALICE)
        code, _ = smtp.rcpt(CAROL)
    assert code == 554


def test_implicit_tls_ports_verify_against_the_stack_ca(mailstack: MailStack) -> None:
    """SMTPS and IMAPS present a certificate for 127.0.0.1 that the stack's CA verifies."""
    context = mailstack.client_ssl_context()
    with smtplib.SMTP_SSL(
        mailstack.host, mailstack.submissions_port, context=context, timeout=10
    ) as smtp:
        assert smtp.login(ALICE, mailstack.users[ALICE])[0] == 235
    with imaplib.IMAP4_SSL(mailstack.host, mailstack.imaps_port, ssl_context=context) as imap:
        assert imap.login(ALICE, mailstack.users[ALICE])[0] == "OK"


@pytest.mark.parametrize("port_name", ["submissions_port", "imaps_port"])
def test_implicit_tls_ports_fail_verification_without_the_ca(
    mailstack: MailStack, port_name: str
) -> None:
    """A client trusting only the system CAs rejects the stack's certificate."""
    context = ssl.create_default_context()
    port = getattr(mailstack, port_name)
    with (
        socket.create_connection((mailstack.host, port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(sock, server_hostname=mailstack.host)


def _plain_imap_login(stack: MailStack, source: str) -> tuple[bytes, bytes]:
    """Greeting and reply to a cleartext LOGIN on the STARTTLS port, from `source`."""
    with socket.create_connection(
        (stack.host, stack.imap_port), timeout=10, source_address=(source, 0)
    ) as sock, sock.makefile("rwb") as stream:  # fmt: skip
        greeting = stream.readline()
        stream.write(f"a LOGIN {ALICE} {stack.users[ALICE]}\r\n".encode())
        stream.flush()
        return greeting, stream.readline()


def test_imap_refuses_cleartext_login_except_from_127_0_0_1(mailstack: MailStack) -> None:
    """ssl=required holds for other sources; Dovecot deems 127.0.0.1 -> 127.0.0.1 secure."""
    greeting, reply = _plain_imap_login(mailstack, "127.0.0.2")
    assert b"LOGINDISABLED" in greeting
    assert not reply.startswith(b"a OK")
    greeting, reply = _plain_imap_login(mailstack, "127.0.0.1")
    assert b"LOGINDISABLED" not in greeting
    assert reply.startswith(b"a OK")


def test_wrong_password_is_refused_with_535(mailstack: MailStack) -> None:
    """Dovecot SASL behind Postfix refuses a wrong password."""
    with smtplib.SMTP_SSL(
        mailstack.host, mailstack.submissions_port,
        context=mailstack.client_ssl_context(), timeout=10,
    ) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as refused:  # fmt: skip
        smtp.login(ALICE, "not-the-password")
    assert refused.value.smtp_code == 535


def test_held_message_waits_until_released(mailstack: MailStack) -> None:
    """`X-Mailprobe-Hold: yes` parks the message on hold; release delivers it at once."""
    token, data = _message(ALICE, CAROL, **{mailstack.hold_header: "yes"})
    queue_id = queue_id_from_reply(_deliver_unauthenticated(mailstack, ALICE, CAROL, data))
    assert queue_id in mailstack.held_queue_ids()
    assert mailstack.delivered(CAROL, token.encode()) == []
    mailstack.release(queue_id)
    # Delivery within a second proves the release triggered it, not a 5 s queue run.
    mailstack.wait_for_delivery(CAROL, token.encode(), timeout=1.0)
    assert queue_id not in mailstack.held_queue_ids()


def test_message_without_hold_header_is_not_held(mailstack: MailStack) -> None:
    """Only the hold header triggers HOLD; a plain message goes straight through."""
    token, data = _message(ALICE, CAROL, **{mailstack.hold_header: "no"})
    queue_id = queue_id_from_reply(_deliver_unauthenticated(mailstack, ALICE, CAROL, data))
    mailstack.wait_for_delivery(CAROL, token.encode())
    assert queue_id not in mailstack.held_queue_ids()


@pytest.mark.parametrize("code", [550, 450])
@pytest.mark.parametrize("port_name", ["smtp_port", "submission_port"])
def test_reject_recipient_refuses_at_rcpt_until_cleared(
    mailstack: MailStack, code: int, port_name: str
) -> None:
    """reject_recipient gives the chosen code at RCPT on every port; clear_rejects undoes it."""

    def rcpt_code() -> int:
        with smtplib.SMTP(mailstack.host, getattr(mailstack, port_name), timeout=10) as smtp:
            if port_name == "submission_port":
                smtp.starttls(context=mailstack.client_ssl_context())
                smtp.login(ALICE, mailstack.users[ALICE])
            smtp.mail(ALICE)
            return smtp.rcpt(DAVE)[0]

    mailstack.reject_recipient(DAVE, code)
    try:
        assert rcpt_code() == code
    finally:
        mailstack.clear_rejects()
    assert rcpt_code() == 250


def test_reject_recipient_accepts_only_450_and_550(mailstack: MailStack) -> None:
    """Other codes are a caller error, not a silent no-op."""
    with pytest.raises(ValueError, match="450, 550"):
        mailstack.reject_recipient(DAVE, 421)


def test_unknown_mailbox_bounces_to_the_sender(mailstack: MailStack) -> None:
    """Postfix accepts bounce_address, Dovecot does not know it: a DSN returns to the sender."""
    token, data = _message(CAROL, mailstack.bounce_address)
    _submit(mailstack, CAROL, mailstack.bounce_address, data)
    bounce = mailstack.wait_for_delivery(CAROL, token.encode()).read_bytes()
    assert b"MAILER-DAEMON" in bounce


def test_dovecot_stop_refuses_imap_and_mail_waits_in_the_queue(mailstack: MailStack) -> None:
    """Dovecot down: IMAP is refused, Postfix still accepts; after start + flush it arrives."""
    mailstack.stop_dovecot()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((mailstack.host, mailstack.imap_port), timeout=5)
        token, data = _message(ALICE, DAVE)
        _deliver_unauthenticated(mailstack, ALICE, DAVE, data)
    finally:
        mailstack.start_dovecot()
    mailstack.flush_queue()
    mailstack.wait_for_delivery(DAVE, token.encode())
    with imaplib.IMAP4(mailstack.host, mailstack.imap_port, timeout=10) as imap:
        imap.starttls(ssl_context=mailstack.client_ssl_context())
        assert _imap_search(imap, DAVE, mailstack, token)


def test_restart_dovecot_twice_in_a_row(mailstack: MailStack) -> None:
    """Back-to-back restarts do not trip over a Dovecot that is still shutting down."""
    mailstack.restart_dovecot()
    mailstack.restart_dovecot()
    with imaplib.IMAP4_SSL(
        mailstack.host, mailstack.imaps_port, ssl_context=mailstack.client_ssl_context()
    ) as imap:
        assert imap.login(CAROL, mailstack.users[CAROL])[0] == "OK"


def test_postfix_stop_refuses_smtp_and_start_brings_it_back(mailstack: MailStack) -> None:
    """Postfix down: its ports refuse connections; after start_postfix mail flows again."""
    mailstack.stop_postfix()
    try:
        for port in (mailstack.smtp_port, mailstack.submission_port, mailstack.submissions_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((mailstack.host, port), timeout=5)
    finally:
        mailstack.start_postfix()
    token, data = _message(ALICE, DAVE)
    _submit(mailstack, ALICE, DAVE, data)
    mailstack.wait_for_delivery(DAVE, token.encode())


def test_kick_ends_the_imap_session(mailstack: MailStack) -> None:
    """kick(address) makes Dovecot drop the user's session: the next command fails."""
    imap = imaplib.IMAP4_SSL(
        mailstack.host, mailstack.imaps_port, ssl_context=mailstack.client_ssl_context()
    )
    try:
        imap.login(CAROL, mailstack.users[CAROL])
        imap.select("INBOX")
        assert mailstack.kick(CAROL)
        with pytest.raises(imaplib.IMAP4.abort):
            imap.noop()
    finally:
        imap.shutdown()


def test_kick_without_a_session_reports_false(mailstack: MailStack) -> None:
    """Kicking a user with no IMAP session is not an error; it says nobody was kicked."""
    assert mailstack.kick(DAVE) is False


def test_append_raw_places_flagged_mail_in_a_folder(mailstack: MailStack) -> None:
    """append_raw writes into INBOX or another folder with flags, visible over IMAP."""
    token, data = _message(DAVE, CAROL)
    path = mailstack.append_raw(CAROL, data, folder="Junk", flags="\\Seen \\Flagged")
    assert path.name.endswith(":2,FS")
    with imaplib.IMAP4_SSL(
        mailstack.host, mailstack.imaps_port, ssl_context=mailstack.client_ssl_context()
    ) as imap:
        (number,) = _imap_search(imap, CAROL, mailstack, token, folder="Junk")
        flags = _fetched_bytes(imap, number, "(FLAGS)")
    assert b"\\Seen" in flags
    assert b"\\Flagged" in flags


def test_append_raw_rejects_unknown_flags(mailstack: MailStack) -> None:
    """Only IMAP system flags map onto Maildir; anything else is an error."""
    with pytest.raises(ValueError, match="unsupported flag"):
        mailstack.append_raw(CAROL, b"Subject: x\r\n\r\nx\r\n", flags="$Junk")


def test_queue_id_from_reply_parses_postfix_reply() -> None:
    """The queue id is taken from `250 2.0.0 Ok: queued as ID`; other replies are errors."""
    assert queue_id_from_reply("2.0.0 Ok: queued as 4C1F320A1B") == "4C1F320A1B"
    with pytest.raises(ValueError, match="no queue id"):
        queue_id_from_reply("2.0.0 Ok")
