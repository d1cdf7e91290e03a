"""Postfix pipe content filter of the test stack: removes, replaces or quarantines what ClamAV flags.

Run by Postfix's pipe(8) as `nobody` with the system Python (standard library only):
`av_filter.py MODE CLAMD_SOCKET SMTP_PORT SENDER -- RECIPIENT...`. Every attachment is scanned by
clamd (INSTREAM over its Unix socket); an infected one is removed (MODE `strip`) or replaced by a
short notice (MODE `replace`), or left as it is with the stack's junk header added, so the
Sieve rule files the message into Junk (MODE `quarantine`, as a provider that quarantines
infected mail in the spam folder does), and the message is handed back to the stack's plain SMTP port,
which has no filter. Exit 75 (EX_TEMPFAIL) when scanning fails, so Postfix retries.
"""

from __future__ import annotations

import email
import smtplib
import socket
import struct
import sys
from email.message import EmailMessage, Message
from email.policy import SMTP

JUNK_HEADER = "X-Mailprobe-Junk"
"""Mail carrying this header with `yes` is filed into Junk by the stack's Sieve rule."""
NOTICE = "The attachment {name} contained a virus and was removed by the mail service.\n"


def infected(data: bytes, path: str) -> bool:
    """clamd's verdict on `data`: True when it FOUND something."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(b"zINSTREAM\0")
        for i in range(0, len(data), 8192):
            chunk = data[i : i + 8192]
            sock.sendall(struct.pack("!I", len(chunk)) + chunk)
        sock.sendall(struct.pack("!I", 0))
        reply = b""
        while not reply.endswith(b"\0"):
            part = sock.recv(4096)
            if not part:
                break
            reply += part
    if b"FOUND" not in reply and b"OK" not in reply:
        raise OSError(f"clamd: {reply!r}")
    return b"FOUND" in reply


def _attachment(part: Message) -> bool:
    return not part.is_multipart() and (
        part.get_filename() is not None or part.get_content_disposition() == "attachment"
    )


def clean(msg: Message, mode: str, path: str) -> bool:
    """Remove or replace the infected attachments of `msg`, in place (`quarantine`: keep them);
    True when one was infected."""
    found = False
    for container in list(msg.walk()):
        if not container.is_multipart():
            continue
        kept: list[Message] = []
        for part in container.get_payload():
            data = part.get_payload(decode=True) if _attachment(part) else None
            if not isinstance(data, bytes) or not infected(data, path):
                kept.append(part)
                continue
            found = True
            if mode == "quarantine":
                kept.append(part)
                continue
            if mode == "replace":
                notice = EmailMessage()
                notice.set_content(NOTICE.format(name=part.get_filename() or "(unnamed)"),
                                   disposition="attachment", filename="virus-removed.txt")  # fmt: skip
                kept.append(notice)
        container.set_payload(kept)
    return found


def main(argv: list[str]) -> int:
    mode, path, port, sender = argv[1:5]
    recipients = argv[argv.index("--") + 1 :]
    msg = email.message_from_binary_file(sys.stdin.buffer, policy=SMTP)
    try:
        if clean(msg, mode, path) and mode == "quarantine":
            msg[JUNK_HEADER] = "yes"
    except OSError as exc:
        print(f"av_filter: cannot scan: {exc}", file=sys.stderr)
        return 75
    msg["X-Mailstack-Scanned"] = mode
    with smtplib.SMTP("127.0.0.1", int(port), timeout=30) as smtp:
        smtp.sendmail(sender, recipients, msg.as_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
