#!/bin/sh
# Install what the integration mail stack needs (Debian 12, root): Postfix, Dovecot, openssl,
# inotify-tools and a "vmail" user owning the virtual mailboxes.
# Idempotent and quick when everything is present. Starts no daemons: the test stack
# (tests/mailstack) runs its own instances from its own configs and leaves /etc alone.
set -eu

PACKAGES="postfix dovecot-core dovecot-imapd dovecot-lmtpd openssl inotify-tools"
MAILNAME="mailprobe.invalid"
VMAIL_USER="vmail"
POLICY=/usr/sbin/policy-rc.d
# Other jobs on a shared machine may hold the dpkg lock for a while: wait for it, do not fail.
LOCK_WAIT="-o DPkg::Lock::Timeout=600"

missing_packages() {
    for pkg in $PACKAGES; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || printf ' %s' "$pkg"
    done
}

# Only what is missing: naming an installed package (openssl) would upgrade it system-wide.
apt_install() {
    apt-get install -y --no-install-recommends $LOCK_WAIT \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
}

install_packages() {
    policy_backup=""
    if [ -e "$POLICY" ]; then
        policy_backup=$(mktemp "$POLICY.mailstack.XXXXXX")
        cp -p "$POLICY" "$policy_backup"
    fi
    # shellcheck disable=SC2064  # expand now: the trap must restore this very backup
    trap "restore_policy '$policy_backup'" EXIT
    # Exit code 101 tells invoke-rc.d "action forbidden": package scripts start no daemons.
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"

    debconf-set-selections <<EOF
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string $MAILNAME
EOF
    export DEBIAN_FRONTEND=noninteractive
    # A stale package index makes the first attempt fail with 404s: refresh once and retry.
    apt_install || { apt-get update $LOCK_WAIT && apt_install; }

    # In case anything was started regardless of policy-rc.d: stop it and keep it off.
    if /usr/sbin/postfix status >/dev/null 2>&1; then
        /usr/sbin/postfix stop || true
    fi
    if [ -f /run/dovecot/master.pid ]; then
        /usr/bin/doveadm stop 2>/dev/null || true
    fi
    for service in postfix dovecot; do
        if [ -e "/etc/init.d/$service" ] && command -v update-rc.d >/dev/null 2>&1; then
            update-rc.d "$service" disable >/dev/null 2>&1 || true
        fi
    done

    restore_policy "$policy_backup"
    trap - EXIT
}

restore_policy() {
    if [ -n "$1" ]; then
        mv -f "$1" "$POLICY"
    else
        rm -f "$POLICY"
    fi
}

missing=$(missing_packages)
if [ -z "$missing" ] && getent passwd "$VMAIL_USER" >/dev/null; then
    echo "mailstack: already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "mailstack: installing${missing:- the $VMAIL_USER user} needs root" >&2
    exit 1
fi
if [ -n "$missing" ]; then
    install_packages
fi
if ! getent passwd "$VMAIL_USER" >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$VMAIL_USER"
fi
echo "mailstack: installed${missing:-} user $VMAIL_USER"
