"""Run the test mail stack until Ctrl-C and print how to reach it: `python -m tests.mailstack`."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time

from tests.mailstack import MailStack, missing_prerequisites


def main() -> int:
    """Start the stack, print its endpoints as JSON, wait for SIGINT/SIGTERM, stop it."""
    problem = missing_prerequisites()
    if problem is not None:
        print(f"mailstack: {problem}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with MailStack() as stack:
        info = {
            "start_seconds": round(time.monotonic() - started, 3),
            "workdir": str(stack.workdir),
            "host": stack.host,
            "ca_file": str(stack.ca_file),
            "ports": {
                "smtp": stack.smtp_port,
                "submission_starttls": stack.submission_port,
                "submissions_tls": stack.submissions_port,
                "imap_starttls": stack.imap_port,
                "imaps_tls": stack.imaps_port,
            },
            "users": stack.users,
        }
        print(json.dumps(info, indent=2), flush=True)
        # SIGTERM ends the wait like Ctrl-C, so the context manager still stops both servers.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
