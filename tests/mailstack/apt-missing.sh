#!/bin/sh
# Install those of the named Debian packages that are missing, and touch nothing that runs.
#
#   sh tests/mailstack/apt-missing.sh PACKAGE...     (root; prints "installed: ..." or nothing)
#
# The machine may be a mail host, or run other jobs: whatever runs here keeps running, with
# the same pid, enabled as it was.
# - Only missing packages: naming an installed one would upgrade it, and an upgrade restarts
#   its daemon.
# - A policy-rc.d that exits 101 forbids package scripts to start, stop or restart any service
#   while this runs; the one that was there before (or none) is put back on any exit.
# - --no-remove: a package that would make apt remove another (postfix beside another MTA) is
#   refused rather than the other removed.
# - Existing config files are kept (--force-confold); nothing is enabled or disabled.
set -eu

POLICY=/usr/sbin/policy-rc.d
# Other jobs on a shared machine may hold the dpkg lock for a while: wait for it, do not fail.
LOCK_WAIT="-o DPkg::Lock::Timeout=600"

missing=""
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $pkg"
done
[ -n "$missing" ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "installing$missing needs root" >&2
    exit 1
fi

backup=""
restore_policy() {
    if [ -n "$backup" ]; then
        mv -f "$backup" "$POLICY"
    else
        rm -f "$POLICY"
    fi
}
if [ -e "$POLICY" ]; then
    backup=$(mktemp "$POLICY.apt-missing.XXXXXX")
    cp -p "$POLICY" "$backup"
fi
trap restore_policy EXIT
trap 'exit 130' INT TERM
# Exit code 101 tells invoke-rc.d "action forbidden": start, stop and restart alike.
printf '#!/bin/sh\nexit 101\n' >"$POLICY"
chmod 755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
install() {
    # shellcheck disable=SC2086  # word splitting of the lists is intended
    apt-get install -y --no-install-recommends --no-remove $LOCK_WAIT \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
}
# A stale package index makes the first attempt fail with 404s: refresh once and retry.
# shellcheck disable=SC2086
install || { apt-get update $LOCK_WAIT && install; }
echo "installed:$missing"
