#!/bin/sh
# Install what the integration mail stack needs (Debian 12, root): Postfix, Dovecot (with
# Pigeonhole Sieve, for the junk-folder rule), openssl, ClamAV (clamd and clamav-milter, for the
# anti-virus tests; no signature download: they use their own), inotify-tools and a "vmail" user
# owning the virtual mailboxes.
# Idempotent and quick when everything is present. Starts, stops, restarts, enables and disables
# nothing: packages go in through apt-missing.sh (only what is missing, service actions
# forbidden while it runs), so a Postfix or Dovecot already running here keeps running, with the
# same pid and configuration, enabled as it was. The test stack (tests/mailstack) runs its own
# instances from its own configs and leaves /etc alone.
#
# MAILSTACK_PACKAGES replaces the package list (tests/integration/test_installer.py uses it to
# give the installer something to do beside a running system Postfix).
set -eu

HERE=$(dirname "$0")
PACKAGES=${MAILSTACK_PACKAGES:-"postfix dovecot-core dovecot-imapd dovecot-lmtpd dovecot-sieve openssl inotify-tools clamav-daemon clamav-milter"}
MAILNAME="mailprobe.invalid"
VMAIL_USER="vmail"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $pkg"
done
if [ -z "$missing" ] && getent passwd "$VMAIL_USER" >/dev/null; then
    echo "mailstack: already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "mailstack: installing${missing:- the $VMAIL_USER user} needs root" >&2
    exit 1
fi
case " $missing " in
    *" postfix "*)
        # Answers for Postfix's own questions, given only when Postfix is being installed: an
        # installed Postfix's debconf answers are its administrator's.
        debconf-set-selections <<PRESEED
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string $MAILNAME
PRESEED
        ;;
esac
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086  # word splitting of the list is intended
    sh "$HERE/apt-missing.sh" $missing
    if [ -f /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
        case " $missing " in
            *" dovecot-"*) echo "mailstack: the running Dovecot was not restarted;" \
                "it loads the new Dovecot packages when its administrator restarts it" ;;
        esac
    fi
fi
if ! getent passwd "$VMAIL_USER" >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$VMAIL_USER"
fi
echo "mailstack: installed${missing:-} user $VMAIL_USER"
