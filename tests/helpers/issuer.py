"""A real OAuth2 token issuer for the sign-in tests: aiohttp over TLS on 127.0.0.1, port 0.

It hands out short-lived JWTs (HS256, signed with the key the test Dovecot validates with; iss,
sub, email, iat, nbf, exp) through the grants the agent's token sources speak:

- `client_credentials` with a client secret, or with a client assertion (a JWT signed with the
  registered certificate's key, as msal makes it), for msal at `/{tenant}` (its authority; the
  discovery document is at `/{tenant}/v2.0/.well-known/openid-configuration`);
- `urn:ietf:params:oauth:grant-type:jwt-bearer`: a Google service account's signed assertion,
  whose `sub` is the mailbox (domain-wide delegation), at `/token`;
- `refresh_token`: an installed app's refresh token, at `/token`.

Knobs: `lifetime` (seconds), `signing_key` (set another to hand out tokens Dovecot refuses),
`stop()` / `start()` (down and back on the same port), `issued` (the emails tokens went to).
"""

from __future__ import annotations

import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TENANT = "tenant.test"
GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"


@dataclass
class Client:
    """A registered app: its secret or certificate, and the mailbox its tokens are for."""

    email: str
    secret: str | None = None
    certificate_pem: bytes | None = None


@dataclass
class Issuer:
    """The token issuer; `start()` it in a running loop."""

    directory: Path
    signing_key: bytes
    token_issuer: str  # the `iss` of the tokens (what Dovecot expects)
    lifetime: float = 20.0
    clients: dict[str, Client] = field(default_factory=dict)
    refresh_tokens: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    service_accounts: dict[str, bytes] = field(default_factory=dict)  # email -> public key PEM
    issued: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # every token handed out
    port: int = 0

    def __post_init__(self) -> None:
        self.ca = trustme.CA()
        self.ca_file = self.directory / "issuer-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ssl)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. https://127.0.0.1:41234."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        """msal's authority for this issuer."""
        return f"{self.url}/{TENANT}"

    @property
    def token_uri(self) -> str:
        """Where Google's flows ask for tokens."""
        return f"{self.url}/token"

    async def start(self) -> None:
        """Listen (again, on the same port after stop())."""
        app = web.Application()
        app.router.add_get(f"/{TENANT}/v2.0/.well-known/openid-configuration", self._discovery)
        app.router.add_post(f"/{TENANT}/oauth2/v2.0/token", self._token)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self._ssl)
        await site.start()

    async def stop(self) -> None:
        """Stop listening: connections are refused until start()."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- registrations -----------------------------------------------------------------------

    def add_client(self, client_id: str, email: str, *, secret: str | None = None) -> Client:
        """A client-credentials app; without `secret`, it signs in with a new certificate."""
        client = Client(email, secret)
        self.clients[client_id] = client
        return client

    def add_certificate_client(self, client_id: str, email: str) -> tuple[Path, Path]:
        """An app that signs in with a certificate: (certificate file, private key file)."""
        # Entra ID takes RSA certificates (msal signs its assertion with PS256).
        cert = self.ca.issue_cert(f"{client_id}.apps.test", key_type=trustme.KeyType.RSA)
        client = self.add_client(client_id, email)
        client.certificate_pem = cert.cert_chain_pems[0].bytes()
        cert_file = self.directory / f"{client_id}.crt"
        key_file = self.directory / f"{client_id}.key"
        cert_file.write_bytes(client.certificate_pem)
        key_file.write_bytes(cert.private_key_pem.bytes())
        return cert_file, key_file

    def add_service_account(self, client_email: str) -> dict[str, str]:
        """A service account: its JSON key (token_uri pointing here)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.service_accounts[client_email] = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "type": "service_account",
            "project_id": "mailprobe-tests",
            "private_key_id": secrets.token_hex(8),
            "private_key": pem,
            "client_email": client_email,
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def add_refresh_token(self, client_id: str, client_secret: str, email: str) -> str:
        """An installed app's refresh token for `email`."""
        token = "1//" + secrets.token_urlsafe(32)
        self.refresh_tokens[token] = (client_id, client_secret, email)
        return token

    # -- handlers ----------------------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.Response:
        base = f"{self.url}/{TENANT}"
        return web.json_response({
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        })  # fmt: skip

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grants = {"client_credentials": self._client_credentials, JWT_BEARER: self._jwt_bearer,
                  "refresh_token": self._refresh}  # fmt: skip
        try:
            email = grants.get(str(form.get("grant_type")), self._unsupported)(
                form, str(request.url)
            )
        except _Refused as exc:
            return web.json_response(
                {"error": exc.error, "error_description": exc.description}, status=400
            )
        self.issued.append(email)
        token = self.mint(email)
        self.tokens.append(token)
        return web.json_response({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.lifetime),
        })  # fmt: skip

    def _client_credentials(self, form: Any, url: str) -> str:
        client = self.clients.get(str(form.get("client_id", "")))
        if client is None:
            raise _Refused("invalid_client", "unknown client")
        if client.secret is not None:
            if not secrets.compare_digest(str(form.get("client_secret", "")), client.secret):
                raise _Refused("invalid_client", "AADSTS7000215: Invalid client secret provided.")
            return client.email
        if form.get("client_assertion_type") != ASSERTION_TYPE or client.certificate_pem is None:
            raise _Refused("invalid_client", "a client assertion is required")
        public_key = x509.load_pem_x509_certificate(client.certificate_pem).public_key()
        try:
            jwt.decode(str(form.get("client_assertion")), public_key,  # type: ignore[arg-type]
                       algorithms=["PS256", "RS256", "ES256"], audience=url)  # fmt: skip
        except jwt.PyJWTError as exc:
            raise _Refused("invalid_client", f"bad client assertion: {exc}") from None
        return client.email

    def _unsupported(self, form: Any, url: str) -> str:
        raise _Refused("unsupported_grant_type", f"grant {form.get('grant_type')!r}")

    def _jwt_bearer(self, form: Any, url: str) -> str:
        assertion = str(form.get("assertion", ""))
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            public_key = self.service_accounts[str(unverified.get("iss"))]
            # google-auth addresses the assertion to Google's endpoint whatever token_uri is.
            claims = jwt.decode(assertion, public_key, algorithms=["RS256"],
                                audience=[url, GOOGLE_TOKEN_ENDPOINT])  # fmt: skip
        except (KeyError, jwt.PyJWTError) as exc:
            raise _Refused("invalid_grant", f"Invalid JWT: {exc}") from None
        return str(claims["sub"])

    def _refresh(self, form: Any, url: str) -> str:
        entry = self.refresh_tokens.get(str(form.get("refresh_token", "")))
        if entry is None or entry[:2] != (form.get("client_id"), form.get("client_secret")):
            raise _Refused("invalid_grant", "Token has been expired or revoked.")
        return entry[2]

    def mint(self, email: str, lifetime: float | None = None, key: bytes | None = None) -> str:
        """A token for `email`, as the issuer hands them out."""
        now = int(time.time())
        claims = {
            "iss": self.token_issuer, "sub": email, "email": email, "iat": now, "nbf": now,
            "exp": now + int(self.lifetime if lifetime is None else lifetime),
        }  # fmt: skip
        return jwt.encode(claims, key or self.signing_key, algorithm="HS256")


class _Refused(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
