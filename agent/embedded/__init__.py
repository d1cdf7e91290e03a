"""An SMTP + IMAP mail service that runs inside this process, for `mailprobe demo` and tests.

aiosmtpd serves submission and pymap (its in-memory backend) serves IMAP, both on the running
event loop; a throwaway CA signs their certificate. Needs the `demo` extra.
"""

from .imap import ImapCommandStats
from .service import EmbeddedMailService, Side

__all__ = ["EmbeddedMailService", "ImapCommandStats", "Side"]
