"""The SASL bearer-token mechanisms' bytes, the choice among what a server offers, and how a
server's error challenge and a token source's failures become messages."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from mailprobe.probes import sasl
from mailprobe.probes.errors import Reason
from mailprobe.probes.sasl import OAuth2Login, TokenError


def test_xoauth2_initial_response_is_googles_format() -> None:
    """user=U ^A auth=Bearer T ^A ^A, as Google and Microsoft document it."""
    raw = sasl.initial_response("xoauth2", "probe@example.com", "tok.en", "imap.example.com", 993)
    assert raw == b"user=probe@example.com\x01auth=Bearer tok.en\x01\x01"


def test_oauthbearer_initial_response_follows_rfc_7628() -> None:
    """gs2 header with the authorization identity, then host, port and the bearer token."""
    raw = sasl.initial_response("oauthbearer", "probe@example.com", "T", "smtp.example.com", 587)
    assert (
        raw
        == b"n,a=probe@example.com,\x01host=smtp.example.com\x01port=587\x01auth=Bearer T\x01\x01"
    )


def test_oauthbearer_escapes_comma_and_equals_in_the_identity() -> None:
    """RFC 5801 saslname: ',' is =2C and '=' is =3D, so the gs2 header still parses."""
    raw = sasl.initial_response("oauthbearer", "a,b=c@x", "T", "h", 1)
    assert raw.startswith(b"n,a=a=2Cb=3Dc@x,\x01")


@pytest.mark.parametrize(
    ("offered", "wanted", "chosen"),
    [
        (["PLAIN", "XOAUTH2", "OAUTHBEARER"], "auto", "oauthbearer"),
        (["plain", "xoauth2"], "auto", "xoauth2"),
        (["XOAUTH2", "OAUTHBEARER"], "xoauth2", "xoauth2"),
        (["XOAUTH2"], "oauthbearer", None),
        (["PLAIN", "LOGIN"], "auto", None),
        ([], "auto", None),
    ],
)
def test_choose_prefers_oauthbearer_and_respects_the_config(
    offered: list[str], wanted: sasl.Choice, chosen: str | None
) -> None:
    """auto takes OAUTHBEARER when offered, else XOAUTH2; a named mechanism only itself."""
    assert sasl.choose(offered, wanted) == chosen


def test_after_failure_answers_per_mechanism() -> None:
    """RFC 7628: a single ^A after the error challenge; XOAUTH2: an empty response."""
    assert sasl.after_failure("oauthbearer") == b"\x01"
    assert sasl.after_failure("xoauth2") == b""


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


@pytest.mark.parametrize(
    ("challenge", "shown"),
    [
        (_b64(b'{"status":"invalid_token"}'), "status status=invalid_token"),
        (_b64(b'{"status":"401","schemes":"bearer","scope":"mail"}'),
         "status status=401, schemes=bearer, scope=mail"),
        (b"", "no status"),
        (b"!!not base64!!", "undecodable status"),
        (_b64(b"\xff\xfe plain words"), "status"),
        (_b64(b"[1, 2]"), "status [1, 2]"),
        (_b64(json.dumps({"status": "x\r\nA1 OK forged"}).encode()), "status=x??A1 OK forged"),
    ],
)  # fmt: skip
def test_describe_challenge_shows_the_status_and_never_raises(challenge: bytes, shown: str) -> None:
    """The server's JSON status as `key=value` text; garbage is shown escaped, not raised."""
    text = sasl.describe_challenge(challenge)
    assert shown in text
    assert text.isprintable()


def test_describe_challenge_is_bounded() -> None:
    """A megabyte of status is cut to a log line."""
    text = sasl.describe_challenge(_b64(json.dumps({"status": "x" * 1_000_000}).encode()))
    assert len(text) <= 300


def _login(result: str | BaseException, delay: float = 0.0) -> OAuth2Login:
    async def token() -> str:
        await asyncio.sleep(delay)
        if isinstance(result, BaseException):
            raise result
        return result

    return OAuth2Login(token)


async def test_bearer_token_sets_the_phase_on_a_source_failure() -> None:
    """A token source fails without knowing the step: the error gets the step and reason auth."""
    with pytest.raises(TokenError) as caught:
        await sasl.bearer_token(_login(TokenError("issuer down")), "imap", 1.0)
    assert (caught.value.phase, caught.value.reason) == ("imap", Reason.AUTH)
    assert str(caught.value) == "issuer down"


async def test_bearer_token_times_out_as_auth() -> None:
    """A source that never answers is a token failure after the endpoint's timeout."""
    with pytest.raises(TokenError, match=r"no token within 0\.05s"):
        await sasl.bearer_token(_login("never", delay=10), "smtp_auth", 0.05)


@pytest.mark.parametrize(
    "token", ["", "abc\r\nA1 LOGOUT", "two words", "t\x00k", "ü-token", "x" * 20000]
)
async def test_bearer_token_refuses_what_could_break_the_command_line(token: str) -> None:
    """CR/LF, spaces, control or non-ASCII characters, or a huge value never reach the wire."""
    with pytest.raises(TokenError):
        await sasl.bearer_token(_login(token), "imap", 1.0)
