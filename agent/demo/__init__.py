"""`mailprobe demo` and the mail service it runs against, inside this process.

aiosmtpd serves submission and pymap (its in-memory backend) serves IMAP, both on the running
event loop; a throwaway CA (trustme) signs their certificate; rich draws the live view. These come
with the `demo` extra, so nothing here is imported by the agent itself, and this module imports
none of them: ``missing_extra`` tells the CLI what to install before anything fails to import.
"""

from __future__ import annotations

import importlib.util

EXTRA_MODULES = ("aiosmtpd", "pymap", "trustme", "rich")
INSTALL_HINT = "pip install 'mailprobe[demo]'"


def missing_extra() -> list[str]:
    """The demo extra's modules that are not installed."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
