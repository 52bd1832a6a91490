# Shared by testpmd-frontend.sh and testpmd-backend.sh (sourced, not run): option parsing and the
# EAL arguments every testpmd of vif's tests and benchmarks gets.
#
# EAL arguments and why:
#   --lcores 0@MAIN,1@CPU   lcore 0 (main: parses, prints stats, sleeps) on MAIN, lcore 1 (the
#                           one forwarding core) on CPU, so a run's cores are stated, not guessed.
#   -n 1 --no-pci           no devices but the --vdev ports.
#   --in-memory --single-file-segments
#                           hugepages as memfds: nothing is left in /dev/hugepages or
#                           /var/run/dpdk after testpmd exits, however it exits.
#   --file-prefix PREFIX    each testpmd its own, so parallel runs never share state.
#   --socket-mem MB         small: a vhost-user peer needs little.
# Application arguments:
#   --stats-period S        without a terminal on stdin testpmd exits at once unless it has this
#                           (or -i); it also gives the periodic Rx-pps/Tx-pps reports we parse.
#   --nb-cores=1 --total-num-mbufs=N (small; 2 KiB each)
set -euo pipefail

cpu=0
main_cpu=1
prefix="vif-testpmd-$$"
socket_mem=256
stats_period=1
mbufs=8192
queue_size=256
mac=""
server=0
max_secs=0

usage_common() {
    cat <<'USAGE'
Options (before the sockets):
  --cpu N          CPU of the forwarding lcore (default 0)
  --main-cpu N     CPU of the main lcore, which only prints stats (default 1)
  --prefix NAME    EAL --file-prefix (default vif-testpmd-PID)
  --socket-mem MB  hugepage memory (default 256)
  --stats N        seconds between reports (default 1)
  --mbufs N        mbufs in the pool (default 8192)
  --queue-size N   virtqueue size of a virtio_user port (default 256, like QEMU's)
  --mac MAC        MAC of a virtio_user port
  --server         virtio_user listens (vif in client mode) instead of dialling
  --max-secs N     SIGINT testpmd after N seconds (SIGKILL 5 s later) even if nobody stops it
Everything after `--` goes to testpmd's application arguments.
USAGE
}

# Parses the options above into the globals; leaves the rest in `rest` (sockets, then `--` and
# testpmd arguments).
parse_common() {
    rest=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --cpu) cpu=$2; shift 2 ;;
            --main-cpu) main_cpu=$2; shift 2 ;;
            --prefix) prefix=$2; shift 2 ;;
            --socket-mem) socket_mem=$2; shift 2 ;;
            --stats) stats_period=$2; shift 2 ;;
            --mbufs) mbufs=$2; shift 2 ;;
            --queue-size) queue_size=$2; shift 2 ;;
            --mac) mac=$2; shift 2 ;;
            --server) server=1; shift ;;
            --max-secs) max_secs=$2; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) rest=("$@"); return 0 ;;
        esac
    done
}

eal_args() {
    printf '%s\n' --lcores "0@${main_cpu},1@${cpu}" -n 1 --no-pci --in-memory \
        --single-file-segments --file-prefix "$prefix" --socket-mem "$socket_mem"
}

app_args() {
    printf '%s\n' "--stats-period=${stats_period}" --nb-cores=1 "--total-num-mbufs=${mbufs}"
}

# The command that runs testpmd: under coreutils `timeout` when --max-secs is set, so a testpmd
# whose caller died still ends (timeout forwards SIGINT/SIGTERM it receives to testpmd).
runner() {
    if [ "$max_secs" -gt 0 ]; then
        printf '%s\n' timeout -s INT -k 5 "$max_secs" dpdk-testpmd
    else
        printf '%s\n' dpdk-testpmd
    fi
}
