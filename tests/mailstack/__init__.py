"""A real Postfix + Dovecot on 127.0.0.1 for integration tests and benchmarks (needs root).

Install once with `bash tests/mailstack/install.sh`, then::

    with MailStack() as stack:      # ~0.3 s: own configs, spool, CA and mailboxes in a temp dir
        stack.submission_port       # STARTTLS + AUTH; also smtp_port, submissions_port,
        stack.imap_port             # imaps_port; verify TLS with stack.ca_file
        stack.users                 # address -> password (probe.test and other.test)
        stack.oauth2_key            # bearer tokens: HS256 JWTs from stack.oauth2_issuer signed
                                    # with it log in too (IMAP and submission), `email` = login

`python -m tests.mailstack` runs one until Ctrl-C and prints its endpoints.
"""

from tests.mailstack.process import MailStackError
from tests.mailstack.stack import MailStack, missing_prerequisites, queue_id_from_reply

__all__ = ["MailStack", "MailStackError", "missing_prerequisites", "queue_id_from_reply"]
