"""A real Postfix + Dovecot on loopback for integration tests and benchmarks (needs root)."""

from tests.mailstack.process import MailStackError
from tests.mailstack.stack import MailStack, missing_prerequisites, queue_id_from_reply

__all__ = ["MailStack", "MailStackError", "missing_prerequisites", "queue_id_from_reply"]
