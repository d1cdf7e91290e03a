#!/bin/sh
# Install the peer the delay-precision benchmark compares with (Debian 12, root):
# check_email_delivery from monitoring-plugins-contrib and the Perl libraries its plugins load.
# The mail stack itself comes from tests/mailstack/install.sh (which also brings inotify-tools).
set -eu

PACKAGES="monitoring-plugins-contrib libmail-imapclient-perl libnet-smtp-tls-perl
libnet-smtp-ssl-perl libio-socket-ssl-perl libauthen-sasl-perl libemail-simple-perl inotify-tools"
# Other jobs on a shared machine may hold the dpkg lock for a while: wait for it, do not fail.
LOCK_WAIT="-o DPkg::Lock::Timeout=600"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $pkg"
done
if [ -z "$missing" ]; then
    echo "bench: already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bench: installing$missing needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Without recommends: monitoring-plugins-contrib recommends dozens of unrelated checks' libraries.
# shellcheck disable=SC2086  # word splitting of the lists is intended
apt-get install -y --no-install-recommends $LOCK_WAIT $missing \
    || { apt-get update $LOCK_WAIT && apt-get install -y --no-install-recommends $LOCK_WAIT $missing; }
echo "bench: installed$missing"
