#!/usr/bin/env bash
# Boots one guest built by build-guest.sh under QEMU (TCG, no KVM needed) with one
# virtio-net-pci NIC whose backend is a vhost-user socket, and reports what the guest's /init
# printed as its result marker.
#
#   scripts/guest/boot.sh [OPTIONS] SOCKET [GUEST_PARAM...]
#
# GUEST_PARAMs go on the kernel command line: vif.ip=, vif.ping=, vif.serve=, ... (see
# init.sh). Example, against a backend listening on /tmp/vif/vif0.sock:
#
#   scripts/guest/boot.sh /tmp/vif/vif0.sock vif.ip=10.0.0.1/24 vif.ping=10.0.0.2
#
# Options:
#   --listen          QEMU listens on SOCKET and the backend connects (vif's `mode = "client"`);
#                     default: QEMU connects to a backend already listening there. QEMU's
#                     vhost-user netdev blocks at start-up until a backend connects.
#   --mac MAC         the NIC's MAC (default 52:54:00:12:34:56)
#   --mem MIB         guest memory, all of it a shared memfd (default 256)
#   --timeout SEC     kill QEMU after SEC seconds (default 300)
#   --log FILE        the console log (default: a new /tmp/vif-guest.*.log)
#   --guest DIR       where vmlinuz and initramfs.cpio.gz are (default $VIF_GUEST_DIR, else
#                     target/vif-guest beside this repository's Cargo.toml)
#   --qemu ARG        one more QEMU argument (repeatable)
#
# The console goes to stdout and to the log. Exit status:
#   0 PASS marker   1 FAIL marker   2 usage or missing guest files
#   3 QEMU ended without a marker (crash, refused socket)   124 timeout
#
# Why these QEMU arguments (proven with Debian 12's QEMU 7.2 under TCG):
# - memory-backend-memfd,share=on + -numa node,memdev=mem: the backend maps guest RAM from the
#   fds in VHOST_USER_SET_MEM_TABLE, so the RAM must be a shareable file, as large as -m.
# - vectors=0: without KVM irqfds, QEMU 7.2 crashes (SIGSEGV in virtio_pci_vector_unmask via
#   msix_set_vector_notifiers) when the guest starts a vhost-user NIC with MSI-X; with no
#   vectors the NIC uses INTx and QEMU relays the backend's call eventfd itself.
# - romfile= (no iPXE ROM), -nodefaults, -kernel/-initrd: nothing to boot but our kernel.
# - panic=-1 with -no-reboot: a guest panic ends QEMU at once instead of waiting for --timeout.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() {
    sed -n '6,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

LISTEN=0
MAC=52:54:00:12:34:56
MEM=256
TIMEOUT=300
LOG=
GUEST=${VIF_GUEST_DIR:-$HERE/../../target/vif-guest}
EXTRA_QEMU=()
while [ $# -gt 0 ]; do
    case "$1" in
        --listen) LISTEN=1 ;;
        --mac) MAC=${2:?--mac needs a value}; shift ;;
        --mem) MEM=${2:?--mem needs a value}; shift ;;
        --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
        --log) LOG=${2:?--log needs a value}; shift ;;
        --guest) GUEST=${2:?--guest needs a value}; shift ;;
        --qemu) EXTRA_QEMU+=("${2:?--qemu needs a value}"); shift ;;
        -h | --help) usage ;;
        --) shift; break ;;
        -*) echo "boot.sh: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
    shift
done
[ $# -ge 1 ] || usage
SOCKET=$1
shift
PARAMS="$*"

for file in vmlinuz initramfs.cpio.gz; do
    if [ ! -r "$GUEST/$file" ]; then
        echo "boot.sh: $GUEST/$file missing; run scripts/guest/build-guest.sh $GUEST" >&2
        exit 2
    fi
done
[ -n "$LOG" ] || LOG=$(mktemp /tmp/vif-guest.XXXXXX.log)
: >"$LOG"

# QEMU's option syntax escapes a comma inside a value by doubling it.
CHARDEV="socket,id=vhost0,path=${SOCKET//,/,,}"
if [ "$LISTEN" = 1 ]; then
    CHARDEV="$CHARDEV,server=on,wait=off"
elif [ ! -S "$SOCKET" ]; then
    echo "boot.sh: warning: $SOCKET is not a socket yet; QEMU will fail to connect" >&2
fi

QEMU=(qemu-system-x86_64
    -accel tcg -smp 1 -m "$MEM"
    -object "memory-backend-memfd,id=mem,size=${MEM}M,share=on" -numa node,memdev=mem
    -nodefaults -nographic -no-reboot
    -chardev "stdio,id=console,logfile=$LOG,signal=off" -serial chardev:console
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initramfs.cpio.gz"
    -append "console=ttyS0 panic=-1 rdinit=/init $PARAMS"
    -chardev "$CHARDEV"
    -netdev vhost-user,id=net0,chardev=vhost0
    -device "virtio-net-pci,netdev=net0,mac=$MAC,vectors=0,romfile="
    "${EXTRA_QEMU[@]}")

echo "boot.sh: ${QEMU[*]}" >&2
START=$(date +%s%N)
# --foreground keeps QEMU in our process group, so whoever started boot.sh can stop both with
# one kill of the group; QEMU has no children that would escape the timeout.
timeout --foreground -k 5 "$TIMEOUT" "${QEMU[@]}" </dev/null
QEMU_STATUS=$?
ELAPSED=$((($(date +%s%N) - START) / 1000000))
ELAPSED=$(printf '%d.%03d' $((ELAPSED / 1000)) $((ELAPSED % 1000)))

MARKER=$(grep -a 'VIF-GUEST-RESULT:' "$LOG" | tail -n 1 | tr -d '\r')
echo "boot.sh: QEMU exit status $QEMU_STATUS after ${ELAPSED}s; console log $LOG" >&2
if [ "$QEMU_STATUS" = 124 ] || [ "$QEMU_STATUS" = 137 ]; then
    echo "boot.sh: TIMEOUT after ${TIMEOUT}s${MARKER:+ (marker: $MARKER)}" >&2
    exit 124
fi
case "$MARKER" in
    *"VIF-GUEST-RESULT: PASS"*) echo "boot.sh: PASS" >&2; exit 0 ;;
    *"VIF-GUEST-RESULT: FAIL"*) echo "boot.sh: FAIL (${MARKER#*RESULT: })" >&2; exit 1 ;;
    *) echo "boot.sh: no result marker: QEMU ended early (status $QEMU_STATUS)" >&2; exit 3 ;;
esac
