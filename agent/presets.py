"""Provider presets: `provider: NAME` on an account fills what the provider documents.

A preset fills, for SMTP submission and IMAP, the host, port and security, the login (the
account's address), how the provider lets programs sign in (`auth`: oauth2 for Google and
Microsoft, who turn passwords off; an app password elsewhere), the junk folder's name (the
fallback where the server does not mark its junk folder \\Junk with SPECIAL-USE), and the watch
limits a polite watcher keeps to (`watch`, read through `watch_limits`). Every field the account
gives itself wins over the preset's; `smtp: null` drops a side the account does not use.

The sign-in itself is never filled: a preset cannot know the token source or the password. An
endpoint of a preset account that gives neither `auth` nor a password is a config error that
says which the provider takes.

Hosts are those of each provider's setup documentation for business accounts (Zoho: its
organization servers; regional variants such as smtppro.zoho.eu, or Tencent's hw-prefixed
overseas nodes, are a `host:` override away). Junk folder names are those the providers show to
English-language accounts over IMAP (Microsoft 365 localizes its "Junk Email"); the Chinese
providers name theirs in Chinese (decoded here; on the wire it is modified UTF-7). The watch
limits are conservative starting points: none of these providers publishes an IMAP command rate,
and the ones with a reputation for throttling third-party clients get the lower figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

AuthKind = Literal["oauth2", "password"]


@dataclass(frozen=True)
class Preset:
    """What one provider documents for its mail clients."""

    title: str  # for messages and the README
    smtp: Mapping[str, Any]  # host, port, security
    imap: Mapping[str, Any]
    auth: AuthKind
    junk_folder: str
    watch: Mapping[str, Any] = field(default_factory=dict)  # idle, max_commands_per_*


def _watch(per_probe: int, per_minute: int) -> Mapping[str, Any]:
    return MappingProxyType(
        {"idle": True, "max_commands_per_probe": per_probe, "max_commands_per_minute": per_minute}
    )


def _server(host: str, port: int, security: str) -> Mapping[str, Any]:
    return MappingProxyType({"host": host, "port": port, "security": security})


_GENEROUS = _watch(150, 60)  # large services with many clients per account
_CAREFUL = _watch(100, 30)  # known to slow down or lock clients that poll hard
_STRICT = _watch(60, 20)  # enterprise services that rate-limit third-party client logins

PRESETS: Mapping[str, Preset] = MappingProxyType({
    "gmail": Preset(
        "Gmail / Google Workspace",
        _server("smtp.gmail.com", 465, "tls"), _server("imap.gmail.com", 993, "tls"),
        "oauth2", "[Gmail]/Spam", _GENEROUS,
    ),
    "microsoft365": Preset(
        "Microsoft 365 (Exchange Online)",
        _server("smtp.office365.com", 587, "starttls"),
        _server("outlook.office365.com", 993, "tls"),
        "oauth2", "Junk Email", _GENEROUS,
    ),
    "outlook": Preset(
        "Outlook.com",
        _server("smtp-mail.outlook.com", 587, "starttls"),
        _server("outlook.office365.com", 993, "tls"),
        "oauth2", "Junk", _GENEROUS,
    ),
    "yahoo": Preset(
        "Yahoo Mail",
        _server("smtp.mail.yahoo.com", 465, "tls"), _server("imap.mail.yahoo.com", 993, "tls"),
        "password", "Bulk Mail", _CAREFUL,
    ),
    "icloud": Preset(
        "iCloud Mail",
        _server("smtp.mail.me.com", 587, "starttls"), _server("imap.mail.me.com", 993, "tls"),
        "password", "Junk", _CAREFUL,
    ),
    "fastmail": Preset(
        "Fastmail",
        _server("smtp.fastmail.com", 465, "tls"), _server("imap.fastmail.com", 993, "tls"),
        "password", "Spam", _GENEROUS,
    ),
    "zoho": Preset(
        "Zoho Mail (organization accounts)",
        _server("smtppro.zoho.com", 465, "tls"), _server("imappro.zoho.com", 993, "tls"),
        "password", "Spam", _CAREFUL,
    ),
    "tencent-exmail": Preset(
        "Tencent Exmail (腾讯企业邮箱)",
        _server("smtp.exmail.qq.com", 465, "tls"), _server("imap.exmail.qq.com", 993, "tls"),
        "password", "Junk", _STRICT,
    ),
    "netease-qiye": Preset(
        "NetEase Qiye Mail (网易企业邮箱)",
        _server("smtp.qiye.163.com", 465, "tls"), _server("imap.qiye.163.com", 993, "tls"),
        "password", "垃圾邮件", _STRICT,
    ),
    "aliyun-qiye": Preset(
        "Alibaba Mail (阿里企业邮箱)",
        _server("smtp.qiye.aliyun.com", 465, "tls"),
        _server("imap.qiye.aliyun.com", 993, "tls"),
        "password", "垃圾邮件", _STRICT,
    ),
})  # fmt: skip

PROVIDERS = (*PRESETS, "custom")
"""Every value `provider:` takes; `custom` (like leaving it out) fills nothing."""
_SIGN_IN = ("auth", "password_env", "password_file")


@dataclass(frozen=True)
class MissingSignIn:
    """Stands in for `auth` where a preset account's endpoint gives no way to sign in, so the
    error names the way its provider takes (it never comes from YAML)."""

    provider: str

    def message(self) -> str:
        """The config error for this endpoint."""
        preset = PRESETS[self.provider]
        if preset.auth == "oauth2":
            return (
                f"{preset.title} signs in with OAuth2: give auth with a token source "
                "(microsoft, google, command or file)"
            )
        return (
            f"{preset.title} signs in with a password (an app password): give password_env "
            "or password_file"
        )


def preset(provider: str | None) -> Preset | None:
    """The preset called `provider`; None for custom, none given, or an unknown name."""
    return PRESETS.get(provider) if provider else None


def fill_account(data: dict[str, Any]) -> dict[str, Any]:
    """An account's raw config with its provider's preset under what it gives itself."""
    chosen = preset(data.get("provider")) if isinstance(data.get("provider"), str) else None
    if chosen is None:
        return data
    filled = dict(data)
    for proto, server in (("smtp", chosen.smtp), ("imap", chosen.imap)):
        given = data.get(proto, {})
        if given is None or not isinstance(given, dict):
            continue  # dropped on purpose, or not a mapping (validation says so)
        base: dict[str, Any] = {**server, "username": data.get("address")}
        if proto == "imap":
            base["junk_folder"] = chosen.junk_folder
            base.update(chosen.watch)  # the command budget of probes.poll, and IDLE
        endpoint = {**base, **given}
        if not any(key in given for key in _SIGN_IN):
            endpoint["auth"] = MissingSignIn(data["provider"])
        filled[proto] = endpoint
    return filled


def watch_limits(provider: str | None) -> Mapping[str, Any]:
    """The watch limits of the account's provider (empty without a preset)."""
    chosen = preset(provider)
    return chosen.watch if chosen is not None else MappingProxyType({})
