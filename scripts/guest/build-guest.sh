#!/usr/bin/env bash
# Builds the tiny Linux guest of vif's real-guest rig (scripts/guest/boot.sh boots it):
#
#   OUTDIR/vmlinuz            Debian 12's kernel (package linux-image-amd64)
#   OUTDIR/initramfs.cpio.gz  busybox-static, the virtio_net module chain and /init
#                             (scripts/guest/init.sh), which reads its task from the kernel
#                             command line and prints one result marker line
#
#   scripts/guest/build-guest.sh OUTDIR
#
# Installs what is missing (qemu-system-x86, linux-image-amd64, busybox-static, cpio, kmod),
# running `apt-get update` once before the first install; that part needs root. A second run
# with an up-to-date OUTDIR only compares a stamp and exits: the stamp covers this script,
# init.sh, the kernel version and the busybox version. Concurrent runs on one OUTDIR serialise
# on OUTDIR/.lock and the outputs are renamed into place, so a reader never sees half a file.
#
# Why each choice (proven on Debian 12, QEMU 7.2, kernel 6.1):
# - The guest runs the packaged Debian kernel, never the host's (which may have no /boot).
# - Modules come from `modinfo -F depends`, resolved recursively, so the load order follows the
#   kernel's own dependency data. virtio_net does not depend on its transport, so virtio_pci
#   (and what it needs) is named as a root too. For 6.1 the order is: virtio_ring virtio
#   virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net.
# - Compressed modules (.ko.xz/.zst/.gz) are decompressed: busybox insmod takes plain ELF.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUTDIR=${1:?usage: build-guest.sh OUTDIR}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
INIT_SRC=$HERE/init.sh
PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static cpio kmod)

say() { echo "build-guest: $*" >&2; }

# --- 1. Packages --------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    # `dpkg-query -W` succeeds for removed-but-configured packages too; check the status word.
    status=$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing packages ${missing[*]}; run as root or install them"
        exit 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. Kernel: the newest /boot/vmlinuz-* that has a module tree ---------------------------
KVER=
for image in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
    version=${image#/boot/vmlinuz-}
    if [ -d "/lib/modules/$version" ]; then KVER=$version; break; fi
done
if [ -z "$KVER" ]; then
    say "no /boot/vmlinuz-* with a /lib/modules tree (is linux-image-amd64 installed?)"
    exit 1
fi

# --- 3. Up to date? -----------------------------------------------------------------------
exec 9>"$OUTDIR/.lock"
flock 9
stamp=$(
    {
        sha256sum "${BASH_SOURCE[0]}" "$INIT_SRC" | cut -d' ' -f1
        echo "kernel $KVER $(stat -c '%s %Y' "/boot/vmlinuz-$KVER")"
        echo "busybox $(dpkg-query -W -f '${Version}' busybox-static)"
    } | sha256sum | cut -d' ' -f1
)
if [ -s "$OUTDIR/vmlinuz" ] && [ -s "$OUTDIR/initramfs.cpio.gz" ] &&
    [ "$(cat "$OUTDIR/.stamp" 2>/dev/null)" = "$stamp" ]; then
    say "$OUTDIR is up to date (kernel $KVER)"
    exit 0
fi
say "kernel $KVER"

# --- 4. Module chain ----------------------------------------------------------------------
declare -A seen=()
ORDER=()
resolve() {
    local module=$1 file dep
    [ -n "${seen[$module]:-}" ] && return 0
    seen[$module]=1
    file=$(modinfo -k "$KVER" -F filename "$module" 2>/dev/null || true)
    case "$file" in
        "") say "module $module not found for $KVER"; return 1 ;;
        "(builtin)" | builtin*) return 0 ;;  # built into the kernel: nothing to load
    esac
    for dep in $(modinfo -k "$KVER" -F depends "$module" | tr ',' ' '); do
        resolve "$dep"
    done
    ORDER+=("$module:$file")
}
for root in virtio_pci virtio_net; do
    resolve "$root"
done

# --- 5. initramfs tree ----------------------------------------------------------------------
WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,modules}

# busybox --list-full prints each applet's path ("bin/sh", "sbin/ip", "usr/bin/awk").
cp /bin/busybox "$ROOT/bin/busybox"
for applet in $(/bin/busybox --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$ROOT/$(dirname "$applet")"
    ln -sf /bin/busybox "$ROOT/$applet"
done

: >"$ROOT/modules/order"
for entry in "${ORDER[@]}"; do
    module=${entry%%:*}
    file=${entry#*:}
    case "$file" in
        *.ko.xz) xz -dc "$file" >"$ROOT/modules/$module.ko" ;;
        *.ko.zst) zstd -qdc "$file" >"$ROOT/modules/$module.ko" ;;
        *.ko.gz) gzip -dc "$file" >"$ROOT/modules/$module.ko" ;;
        *) cp "$file" "$ROOT/modules/$module.ko" ;;
    esac
    echo "$module" >>"$ROOT/modules/order"
done
say "modules in load order: $(tr '\n' ' ' <"$ROOT/modules/order")"

install -m 755 "$INIT_SRC" "$ROOT/init"

# --- 6. Pack, then rename into place ------------------------------------------------------
(cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -6 >"$WORK/initramfs.cpio.gz"
cp "/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
mv -f "$WORK/vmlinuz" "$OUTDIR/vmlinuz"
mv -f "$WORK/initramfs.cpio.gz" "$OUTDIR/initramfs.cpio.gz"
echo "$stamp" >"$OUTDIR/.stamp"
say "wrote $OUTDIR/vmlinuz and $OUTDIR/initramfs.cpio.gz ($(stat -c %s "$OUTDIR/initramfs.cpio.gz") bytes)"
