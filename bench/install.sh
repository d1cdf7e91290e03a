#!/bin/sh
# Install the peer the delay-precision benchmark compares with (Debian 12, root):
# check_email_delivery from monitoring-plugins-contrib and the Perl libraries its plugins load.
# The mail stack itself comes from tests/mailstack/install.sh (which also brings inotify-tools);
# packages go in through tests/mailstack/apt-missing.sh: only what is missing, and no service is
# started, stopped or restarted while they do.
set -eu

PACKAGES="monitoring-plugins-contrib libmail-imapclient-perl libnet-smtp-tls-perl
libnet-smtp-ssl-perl libio-socket-ssl-perl libauthen-sasl-perl libemail-simple-perl inotify-tools"

# Without recommends (apt-missing.sh never asks for them): monitoring-plugins-contrib
# recommends dozens of unrelated checks' libraries.
# shellcheck disable=SC2086  # word splitting of the list is intended
sh "$(dirname "$0")/../tests/mailstack/apt-missing.sh" $PACKAGES
echo "bench: peer installed"
