#!/bin/sh
# The system packages mwsim uses, installed when missing (idempotent).
#   patch                  multiworld's one-time torch patch (required)
#   iproute2, nftables,    emulated hosts: network namespaces, links, partitions, loss
#   iptables, ethtool      (iptables: per-link NFQUEUE delay; ethtool: per-packet loss)
#   libnetfilter-queue-dev builds NetfilterQueue, the delay daemon's binding
# As root on Debian/Ubuntu it installs them; otherwise it says what is missing and goes
# on: without them (or without root) hosts share loopback and network faults are
# inconclusive (exit 3).
set -eu
packages="patch iproute2 nftables iptables ethtool libnetfilter-queue-dev"
if ! command -v dpkg >/dev/null 2>&1; then
    echo "mwsim: not a Debian-like system: install $packages (or their equivalents) yourself" >&2
    exit 0
fi
missing=""
for package in $packages; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "mwsim: installing system packages:$missing"
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
            >/dev/null; }; then
        echo "mwsim: apt-get could not install$missing; without them emulated hosts are off" >&2
    fi
else
    echo "mwsim: missing system packages:$missing (run as root to install them)" >&2
    echo "mwsim: without them, emulated hosts are off and network faults are inconclusive" >&2
fi
