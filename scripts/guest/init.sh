#!/bin/sh
# /init of vif's test guest (build-guest.sh packs this file into the initramfs). It runs as
# PID 1 under busybox, sets up eth0 (the vhost-user virtio-net NIC), does the task the kernel
# command line gives, prints ONE result marker line on the serial console and powers off:
#
#   VIF-GUEST-RESULT: PASS <details>
#   VIF-GUEST-RESULT: FAIL <reason>
#
# Kernel command line parameters (all optional):
#   vif.ip=ADDR/LEN      address of eth0, e.g. 10.0.0.1/24
#   vif.mtu=N            MTU of eth0
#   vif.arp=IP,MAC       a static neighbour entry (busybox `ip neigh` cannot add one; `arp -s` can)
#   vif.peerwait=SEC     before the pings, wait up to SEC seconds for the first echo reply from
#                        vif.ping's address (the peer may still be booting); default 0
#   vif.ping=ADDR        ping ADDR vif.count times with each payload size of vif.sizes;
#                        PASS needs every ping of every size answered
#   vif.count=N          pings per size (default 3)
#   vif.sizes=A,B,...    ICMP payload sizes (default 56). 1472 fills a 1500-byte MTU exactly
#                        (20 IPv4 + 8 ICMP + 1472 = 1500 bytes of IP packet)
#   vif.cmd=STRING       run STRING with `sh -c` after the pings; PASS needs exit status 0.
#                        A parameter cannot hold a space: write a space as '+', a '+' as '%2B',
#                        any byte as %XX (e.g. %3B for ';')
#   vif.serve=SEC        serve mode: after setup print "VIF-GUEST-READY", then answer pings (the
#                        kernel does that) for SEC seconds, or until powered off if SEC is 0,
#                        printing eth0's counters whenever they change; PASS when SEC runs out
#   vif.wait=SEC         how long to wait for eth0 to appear (default 20)
# Every progress line starts with "VIF-GUEST: " and carries the guest's uptime.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s

uptime_s() { cut -d' ' -f1 /proc/uptime; }
log() { echo "VIF-GUEST: [$(uptime_s)] $*"; }
stats() {
    d=/sys/class/net/eth0/statistics
    echo "rx_packets=$(cat $d/rx_packets) rx_bytes=$(cat $d/rx_bytes)" \
        "rx_errors=$(cat $d/rx_errors) rx_dropped=$(cat $d/rx_dropped)" \
        "tx_packets=$(cat $d/tx_packets) tx_bytes=$(cat $d/tx_bytes)" \
        "tx_errors=$(cat $d/tx_errors) tx_dropped=$(cat $d/tx_dropped)"
}
# Prints the marker and powers off; never returns. `poweroff -f` skips init's shutdown (we are
# init) and makes QEMU exit, because boot.sh runs it with -no-reboot.
result() {
    [ -e /sys/class/net/eth0 ] && log "eth0 stats: $(stats)"
    echo "VIF-GUEST-RESULT: $*"
    sync
    poweroff -f
    sleep 30
}
# URL-style decoding for vif.cmd: '+' is a space, %XX a byte.
urldecode() {
    printf '%b' "$(echo "$1" | sed 's/+/ /g; s/%\([0-9A-Fa-f][0-9A-Fa-f]\)/\\x\1/g')"
}

IP= MTU= ARP= PEERWAIT=0 PING= COUNT=3 SIZES=56 CMD= SERVE= WAIT=20
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vif.ip=*) IP=${arg#*=} ;;
        vif.mtu=*) MTU=${arg#*=} ;;
        vif.arp=*) ARP=${arg#*=} ;;
        vif.peerwait=*) PEERWAIT=${arg#*=} ;;
        vif.ping=*) PING=${arg#*=} ;;
        vif.count=*) COUNT=${arg#*=} ;;
        vif.sizes=*) SIZES=${arg#*=} ;;
        vif.cmd=*) CMD=$(urldecode "${arg#*=}") ;;
        vif.serve=*) SERVE=${arg#*=} ;;
        vif.wait=*) WAIT=${arg#*=} ;;
    esac
done
log "init started"

for module in $(cat /modules/order); do
    insmod "/modules/$module.ko" || log "insmod $module failed"
done

# virtio_net probes asynchronously after insmod: poll for eth0.
i=0
while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1))
    [ $i -gt $((WAIT * 10)) ] && { ip link; result "FAIL no eth0 after ${WAIT}s"; }
    usleep 100000
done

ip link set lo up
if [ -n "$MTU" ]; then ip link set eth0 mtu "$MTU" || result "FAIL cannot set mtu $MTU"; fi
ip link set eth0 up || result "FAIL cannot bring eth0 up"
if [ -n "$IP" ]; then ip addr add "$IP" dev eth0 || result "FAIL cannot add address $IP"; fi
if [ -n "$ARP" ]; then
    arp -i eth0 -s "${ARP%%,*}" "${ARP#*,}" || result "FAIL cannot add ARP entry $ARP"
fi
# Carrier follows the device's link status; operstate turns "up" a little later (linkwatch).
i=0
while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $i -lt 50 ]; do
    i=$((i + 1))
    usleep 100000
done
device=$(readlink /sys/class/net/eth0/device)
driver=$(readlink /sys/class/net/eth0/device/driver)
log "eth0 driver=${driver##*/} device=${device##*/} mac=$(cat /sys/class/net/eth0/address)" \
    "mtu=$(cat /sys/class/net/eth0/mtu) carrier=$(cat /sys/class/net/eth0/carrier)" \
    "operstate=$(cat /sys/class/net/eth0/operstate) ip=${IP:-none}"

if [ -n "$SERVE" ]; then
    echo "VIF-GUEST-READY"
    last=
    elapsed=0
    while [ "$SERVE" = 0 ] || [ $elapsed -lt "$SERVE" ]; do
        now=$(stats)
        [ "$now" != "$last" ] && log "eth0 stats: $now"
        last=$now
        sleep 1
        elapsed=$((elapsed + 1))
    done
    result "PASS served ${SERVE}s"
fi

DETAILS=
if [ -n "$PING" ]; then
    if [ "$PEERWAIT" -gt 0 ]; then
        log "waiting up to ${PEERWAIT}s for $PING"
        start=$(cut -d. -f1 /proc/uptime)
        until ping -c 1 -W 1 "$PING" >/dev/null 2>&1; do
            usleep 200000  # a refused send returns at once: do not spin
            now=$(cut -d. -f1 /proc/uptime)
            [ $((now - start)) -ge "$PEERWAIT" ] && result "FAIL $PING did not answer within ${PEERWAIT}s"
        done
        log "$PING answers"
    fi
    for size in $(echo "$SIZES" | tr ',' ' '); do
        log "ping -c $COUNT -s $size $PING"
        ping -c "$COUNT" -s "$size" -W 3 "$PING" >/tmp/ping.out 2>&1
        cat /tmp/ping.out
        # busybox: "N packets transmitted, M packets received, P% packet loss"
        sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/ping.out)
        received=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping.out)
        DETAILS="$DETAILS ping${size}=${received:-0}/${sent:-0}"
        if [ -z "$received" ] || [ "$received" != "$COUNT" ]; then
            result "FAIL ping -s $size $PING: ${received:-0} of $COUNT answered"
        fi
    done
    ip neigh show dev eth0
fi
if [ -n "$CMD" ]; then
    log "cmd: $CMD"
    sh -c "$CMD"
    status=$?
    log "cmd exit status $status"
    [ $status -eq 0 ] || result "FAIL command exit status $status"
    DETAILS="$DETAILS cmd=0"
fi
result "PASS$DETAILS"
