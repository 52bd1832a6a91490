#!/usr/bin/env bash
# DPDK's virtio-net driver as a vhost-user *frontend* (what a VMM + guest driver would be): one
# `net_virtio_user0` port on SOCKET, driven by testpmd's one forwarding core. Replaces itself with
# testpmd (exec; with --max-secs, with `timeout` running testpmd), so signalling the caller's PID
# (or its process group) stops testpmd; SIGINT makes it print its final forward statistics.
#
#   testpmd-frontend.sh [OPTIONS] SOCKET [-- TESTPMD_ARGS...]
#   testpmd-frontend.sh --cpu 0 /tmp/vif/a.sock -- --forward-mode=txonly --txpkts=64 \
#       --eth-peer=0,02:00:00:00:00:0b
#
# Without TESTPMD_ARGS it runs `--forward-mode=txonly`. Run scripts/dpdk/setup.sh first.
# Pitfalls: the virtio_user ring size is the `queue_size` devarg (--queue-size); testpmd's
# --txd/--rxd do not change it. "Error during enabling promiscuous mode" is harmless.
here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 [OPTIONS] SOCKET [-- TESTPMD_ARGS...]"; usage_common; }
# shellcheck source=common.sh
. "$here/common.sh"
parse_common "$@"
set -- "${rest[@]}"
[ $# -ge 1 ] || { usage >&2; exit 2; }
socket=$1; shift
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || set -- --forward-mode=txonly

vdev="net_virtio_user0,path=${socket},queues=1,queue_size=${queue_size}"
[ -n "$mac" ] && vdev="${vdev},mac=${mac}"
[ "$server" = 1 ] && vdev="${vdev},server=1"

mapfile -t eal < <(eal_args)
mapfile -t app < <(app_args)
mapfile -t run < <(runner)
exec "${run[@]}" "${eal[@]}" --vdev "$vdev" -- "${app[@]}" "$@"
