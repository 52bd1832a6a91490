#!/usr/bin/env bash
# DPDK's own vhost-user *backend* (`net_vhost`), the reference vif is compared with: one port
# per SOCKET (testpmd creates and listens on each), one forwarding core for all. Replaces itself
# with testpmd (exec; with --max-secs, with `timeout` running testpmd), so signalling the caller's
# PID (or its process group) stops testpmd.
#
#   testpmd-backend.sh [OPTIONS] SOCKET [SOCKET2] [-- TESTPMD_ARGS...]
#   testpmd-backend.sh --cpu 1 --main-cpu 0 /tmp/a.sock -- --forward-mode=rxonly
#   testpmd-backend.sh --cpu 1 --main-cpu 0 /tmp/a.sock /tmp/b.sock -- --forward-mode=io
#
# Without TESTPMD_ARGS: rxonly for one socket, io forwarding (port 0 <-> port 1, the default
# `paired` topology) for two. A stale socket file at SOCKET is removed first.
# Run scripts/dpdk/setup.sh first.
here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 [OPTIONS] SOCKET [SOCKET2] [-- TESTPMD_ARGS...]"; usage_common; }
# shellcheck source=common.sh
. "$here/common.sh"
parse_common "$@"
set -- "${rest[@]}"
sockets=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sockets+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
case ${#sockets[@]} in
    1) [ $# -gt 0 ] || set -- --forward-mode=rxonly ;;
    2) [ $# -gt 0 ] || set -- --forward-mode=io ;;
    *) usage >&2; exit 2 ;;
esac

vdevs=()
for i in "${!sockets[@]}"; do
    rm -f "${sockets[$i]}"
    vdevs+=(--vdev "net_vhost${i},iface=${sockets[$i]},queues=1")
done

mapfile -t eal < <(eal_args)
mapfile -t app < <(app_args)
mapfile -t run < <(runner)
exec "${run[@]}" "${eal[@]}" "${vdevs[@]}" -- "${app[@]}" "$@"
