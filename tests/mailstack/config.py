"""Config files of the test stack: Postfix main.cf/master.cf and a standalone dovecot.conf."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Ports:
    """Loopback ports of the stack's listeners."""

    smtp: int
    submission: int
    submissions: int
    imap: int
    imaps: int


@dataclass(frozen=True, slots=True)
class Layout:
    """Where every file of one stack lives, all below `root`."""

    root: Path

    @property
    def postfix_config(self) -> Path:
        return self.root / "postfix"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def postfix_data(self) -> Path:
        return self.root / "postfix-data"

    @property
    def postfix_log(self) -> Path:
        return self.root / "log" / "postfix.log"

    @property
    def dovecot_config(self) -> Path:
        return self.root / "dovecot" / "dovecot.conf"

    @property
    def dovecot_run(self) -> Path:
        return self.root / "dovecot" / "run"

    @property
    def dovecot_state(self) -> Path:
        return self.root / "dovecot" / "state"

    @property
    def dovecot_users(self) -> Path:
        return self.root / "dovecot" / "users"

    @property
    def dovecot_log(self) -> Path:
        return self.root / "log" / "dovecot.log"

    @property
    def dovecot_oauth2(self) -> Path:
        """The oauth2 passdb's settings (local JWT validation)."""
        return self.root / "dovecot" / "oauth2.conf"

    @property
    def oauth2_keys(self) -> Path:
        """The dict of JWT validation keys: `default/HS256/default` holds the HS256 key."""
        return self.root / "dovecot" / "oauth2-keys"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def vmail(self) -> Path:
        return self.root / "vmail"

    @property
    def mailboxes_map(self) -> Path:
        return self.postfix_config / "virtual_mailboxes"

    @property
    def transport_map(self) -> Path:
        return self.postfix_config / "transport"

    @property
    def header_checks(self) -> Path:
        return self.postfix_config / "header_checks"

    @property
    def sieve_before(self) -> Path:
        """The global Sieve script LMTP runs before delivering (files marked mail into Junk)."""
        return self.root / "dovecot" / "before.sieve"

    def maildir(self, address: str) -> Path:
        """INBOX Maildir of a virtual user, matching dovecot's mail_location below."""
        local, _, domain = address.partition("@")
        return self.vmail / domain / local / "Maildir"


def postfix_main_cf(
    layout: Layout, domains: tuple[str, ...], cert: Path, key: Path, hostname: str
) -> str:
    """main.cf of the stack's own Postfix instance."""
    return f"""\
compatibility_level = 3.6
queue_directory = {layout.spool}
data_directory = {layout.postfix_data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {layout.postfix_log}
maillog_file_prefixes = {layout.root}
myhostname = {hostname}
mydomain = {domains[0]}
myorigin = $myhostname
mydestination =
local_recipient_maps =
mynetworks = 127.0.0.1/32
inet_interfaces = {HOST}
inet_protocols = ipv4
biff = no
append_dot_mydomain = no
readme_directory = no
smtpd_banner = $myhostname ESMTP mailstack
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0

virtual_mailbox_domains = {", ".join(domains)}
virtual_mailbox_maps = texthash:{layout.mailboxes_map}
virtual_transport = lmtp:unix:private/dovecot-lmtp
transport_maps = texthash:{layout.transport_map}
# Nothing leaves the test stack: no DNS, no mail stuck in the queue for the outside world.
default_transport = error:5.7.1 the test stack delivers to its own domains only
relay_transport = $default_transport
header_checks = regexp:{layout.header_checks}
nested_header_checks =

smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination

# Short timers so retries happen within a test's patience.
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 15s
in_flow_delay = 0
# Without this Postfix pauses the LMTP transport for 60 s after a Dovecot outage.
service_throttle_time = 1s

# The virus scanning of the submission listeners (tests/mailstack/antivirus.py): off until a
# test switches it on with MailStack.antivirus(mode).
mailstack_milters =
mailstack_content_filter =
milter_default_action = tempfail
"""


_SUBMISSION_OPTIONS = """\
  -o smtpd_milters=$mailstack_milters
  -o content_filter=$mailstack_content_filter
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
"""

# chroot column "n" everywhere: nothing has to be copied into the spool before start.
_INTERNAL_SERVICES = """\
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


def postfix_master_cf(ports: Ports, transports: str = "") -> str:
    """master.cf: MX-like plain SMTP, STARTTLS submission, implicit-TLS submissions, and any
    extra `transports` (the virus filter's)."""
    return (
        f"{HOST}:{ports.smtp} inet n - n - - smtpd\n"
        f"{HOST}:{ports.submission} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o smtpd_tls_security_level=encrypt\n"
        "  -o smtpd_tls_auth_only=yes\n"
        f"{_SUBMISSION_OPTIONS}"
        f"{HOST}:{ports.submissions} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/submissions\n"
        "  -o smtpd_tls_wrappermode=yes\n"
        f"{_SUBMISSION_OPTIONS}"
        f"{_INTERNAL_SERVICES}"
        f"{transports}"
    )


def dovecot_conf(
    layout: Layout,
    ports: Ports,
    cert: Path,
    key: Path,
    vmail_uid: int,
    vmail_gid: int,
    postmaster: str,
) -> str:
    """A standalone dovecot.conf (no includes): IMAP on two ports, LMTP and auth for Postfix.

    Every mailbox has a Junk folder (SPECIAL-USE \\Junk, created on first use), and LMTP runs
    the stack's Sieve script first, which files mail carrying the junk header there.
    """
    private = layout.spool / "private"
    return f"""\
protocols = imap lmtp
listen = {HOST}
base_dir = {layout.dovecot_run}
state_dir = {layout.dovecot_state}
instance_name = mailstack-{ports.imap}
log_path = {layout.dovecot_log}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login xoauth2 oauthbearer
# Failed logins answer within 0.5 s (Dovecot flushes failures on a 0.5 s timer), not 2 s.
auth_failure_delay = 0
first_valid_uid = {vmail_uid}
last_valid_uid = {vmail_uid}
mail_location = maildir:{layout.vmail}/%d/%n/Maildir

# `none`: the lookups of LMTP and the static userdb (no mechanism) ask this passdb, never oauth2.
passdb {{
  driver = passwd-file
  mechanisms = plain login none
  args = scheme=PLAIN username_format=%u {layout.dovecot_users}
}}
# Bearer tokens (XOAUTH2, OAUTHBEARER) are JWTs checked here, against the key the test issuer
# signs with: no token server is asked at login.
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {layout.dovecot_oauth2}
}}
userdb {{
  driver = static
  args = uid={vmail_uid} gid={vmail_gid} home={layout.vmail}/%d/%n
}}

service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {ports.imap}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {ports.imaps}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener {private}/dovecot-lmtp {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
# No per-IP penalty for failed logins (2, 4, 8, 15 s): every test comes from 127.0.0.1.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener {private}/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
namespace inbox {{
  inbox = yes
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
}}
protocol lmtp {{
  postmaster_address = {postmaster}
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve_before = {layout.sieve_before}
}}
"""


def sieve_script(junk_header: str) -> str:
    """Mail whose ``junk_header`` is ``yes`` goes to Junk, as a provider's spam filter would."""
    return f"""\
require ["fileinto", "mailbox"];
if header :is "{junk_header}" "yes" {{
  fileinto :create "Junk";
  stop;
}}
"""


def dovecot_oauth2_conf(layout: Layout, issuer: str) -> str:
    """Settings of the oauth2 passdb: tokens are JWTs from `issuer`, validated locally.

    The key is looked up in the dict as `default/<alg>/default` (azp, alg, kid of a token without
    azp or kid); the login name must equal the token's `email` claim.
    """
    return f"""\
introspection_mode = local
local_validation_key_dict = fs:posix:prefix={layout.oauth2_keys}/
username_attribute = email
issuers = {issuer}
"""
