"""A throwaway CA and a server certificate for 127.0.0.1 / localhost, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# P-256 keys are generated in milliseconds; RSA would dominate the stack's start time.
_KEY_ARGS = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
_VALID_DAYS = "30"

# Extensions a strict verifier (Python 3.13's VERIFY_X509_STRICT) expects on a leaf.
_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths of the generated PEM files."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_certificates(directory: Path) -> TlsFiles:
    """Create a self-signed CA and a server certificate signed by it under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(_SERVER_EXTENSIONS)
    # -config /dev/null: the result must not depend on the host's openssl.cnf defaults.
    _openssl(
        "req", "-x509", "-config", "/dev/null", *_KEY_ARGS,
        "-keyout", str(ca_key), "-out", str(files.ca_cert), "-days", _VALID_DAYS,
        "-subj", "/O=mailprobe tests/CN=mailstack test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    _openssl(
        "req", "-new", "-config", "/dev/null", *_KEY_ARGS,
        "-keyout", str(files.server_key), "-out", str(csr),
        "-subj", "/O=mailprobe tests/CN=localhost",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(files.ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", _VALID_DAYS, "-extfile", str(extensions),
        "-out", str(files.server_cert),
    )  # fmt: skip
    files.server_key.chmod(0o600)
    ca_key.chmod(0o600)
    return files


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")
