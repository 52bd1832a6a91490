#!/usr/bin/env bash
# Prepares this machine to run DPDK's testpmd as a vhost-user peer of vif: installs `dpdk-dev`
# (which ships /usr/bin/dpdk-testpmd), reserves 2 MiB hugepages and mounts hugetlbfs.
# Idempotent: a second run changes nothing and prints nothing. Needs root for the first run.
#
#   scripts/dpdk/setup.sh            # ensure VIF_DPDK_HUGEPAGES free 2 MiB pages (default 512)
#
# Why each step:
# - testpmd's EAL takes its memory from hugepages; `--in-memory --single-file-segments` backs
#   them with memfds (nothing left in /dev/hugepages after a run), but the EAL still looks for a
#   mounted hugetlbfs to learn the page sizes, so the mount must exist.
# - vhost-user shares that memory with the peer (SET_MEM_TABLE passes the fds), so it cannot be
#   ordinary anonymous memory (`--no-huge` has no fd to pass).
# - Pages are added on top of what others already reserved, never taken away.
set -euo pipefail

need_pages=${VIF_DPDK_HUGEPAGES:-512}

if ! command -v dpdk-testpmd >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "dpdk setup: dpdk-testpmd missing; run as root or install dpdk-dev" >&2
        exit 1
    fi
    # One update per machine: the package lists are kept afterwards.
    if ! apt-cache show dpdk-dev >/dev/null 2>&1; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpdk-dev >/dev/null
fi

meminfo() { awk -v key="$1:" '$1 == key { print $2 }' /proc/meminfo; }

free=$(meminfo HugePages_Free)
if [ "${free:-0}" -lt "$need_pages" ]; then
    total=$(meminfo HugePages_Total)
    want=$(( ${total:-0} + need_pages - ${free:-0} ))
    echo "$want" > /proc/sys/vm/nr_hugepages
    free=$(meminfo HugePages_Free)
    if [ "${free:-0}" -lt "$need_pages" ]; then
        echo "dpdk setup: asked for $want hugepages, only ${free:-0} free (memory fragmented?)" >&2
        exit 1
    fi
fi

if ! grep -q ' hugetlbfs ' /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages
fi
