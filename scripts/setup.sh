#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine, once, before any
# test runs: tests that install packages themselves would race each other for the dpkg lock.
# Idempotent and quiet when everything is there. Needs root for a first run.
#
# - gcc, pkg-config: build scripts of dependencies;
# - iproute2: network namespaces, veth and vxlan devices for the uplink tests;
# - tshark: decodes captured VXLAN and 802.1Q frames in the uplink tests;
# - dpdk-dev: dpdk-testpmd, the DPDK peer (frontend and backend) of the datapath tests;
# - qemu-system-x86, linux-image-amd64, busybox-static, cpio, kmod: the real Linux guest
#   (scripts/guest/build-guest.sh).
# Then hugepages for DPDK (scripts/dpdk/setup.sh). The guest image itself is built (and cached)
# by the test that boots it, with the packages installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gcc pkg-config iproute2 tshark dpdk-dev qemu-system-x86 linux-image-amd64
    busybox-static cpio kmod)
missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${missing[*]}; run as root or install them" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; the tests run as root, so say no.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/dpdk/setup.sh
