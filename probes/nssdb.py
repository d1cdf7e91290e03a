"""Make a Chromium started with HOME=<home> trust the CA certificates of a PEM file.

Chromium on Linux takes locally trusted CAs from the NSS database in $HOME/.pki/nssdb; Debian's
certutil (package libnss3-tools) writes one. A private HOME per browser keeps the trust to that
browser alone, and leaves the machine's own trust store untouched.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from mailprobe.probes.webmail import BrowserUnavailable

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _certutil_commands(home: Path, ca_file: Path) -> list[list[str]]:
    """certutil calls that create an NSS database under `home` trusting each CA in `ca_file`."""
    certutil = shutil.which("certutil")
    if certutil is None:
        raise BrowserUnavailable("ca_file in browser mode needs certutil (Debian: libnss3-tools)")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    try:
        pems = _PEM.findall(ca_file.read_text())
    except OSError as exc:
        raise BrowserUnavailable(f"cannot read {ca_file}: {exc.strerror}") from exc
    if not pems:
        raise BrowserUnavailable(f"{ca_file}: no PEM certificate in it")
    commands = [[certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"]]
    for i, pem in enumerate(pems):
        one = home / f"ca-{i}.pem"
        one.write_text(pem + "\n")
        commands.append(
            [certutil, "-A", "-d", f"sql:{nssdb}", "-n", f"ca-{i}", "-t", "C,,", "-i", str(one)]
        )
    return commands


async def trust_ca_file(home: Path, ca_file: Path, *, timeout: float) -> None:
    """Trust `ca_file` for TLS servers in a Chromium started with HOME=`home`."""
    # The certificate files are small and local: written here without a thread.
    for command in _certutil_commands(home, ca_file):
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(timeout):
                _, err = await proc.communicate()
        except BaseException as exc:
            if proc.returncode is None:
                proc.kill()
            if isinstance(exc, TimeoutError):
                raise BrowserUnavailable("certutil did not finish") from exc
            raise
        if proc.returncode != 0:
            raise BrowserUnavailable(f"certutil failed: {err.decode(errors='replace').strip()}")
