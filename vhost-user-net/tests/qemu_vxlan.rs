//! The real guest over VXLAN: a Linux guest under QEMU, whose one virtio-net NIC is a VXLAN VIF
//! of the daemon binary, pings an address held by the Linux kernel's own `vxlan` device in
//! another network namespace, and gets every reply.
//!
//! Nothing on the path is ours but the daemon: QEMU's vhost-user frontend (Debian 12, QEMU 7.2,
//! TCG) and Linux's `virtio_net` driver on one side, Linux's `vxlan` driver (RFC 7348) on the
//! other. The topology is that of `uplink_vxlan_daemon.rs` (`kernel_vxlan_peer`):
//!
//! ```text
//!  QEMU guest 10.42.0.1/24, mtu 1450          namespace "peer"
//!   └ vhost-user ─ daemon (namespace "host")   vx0: vxlan id 42, 10.42.0.2/24
//!                  VTEP 192.0.2.1 ── veth ── vxp0 192.0.2.2, mtu 1500
//! ```
//!
//! The guest (`scripts/guest/init.sh`) first resolves 10.42.0.2 by ARP: its broadcast reaches
//! the kernel only through the VTEP's head-end replication to the static remote 192.0.2.2, and
//! the kernel's reply comes back encapsulated to the guest's MAC. Then 3 echo requests of 56
//! and of 1422 bytes of payload: 1422 + 8 (ICMP) + 20 (IPv4) = 1450, the VIF's MTU, which
//! encapsulated (+ 14 inner Ethernet + 8 VXLAN + 8 UDP + 20 IPv4) makes a 1500-byte packet on
//! the 1500-byte underlay: the MTU rule `mtu <= underlay_mtu - 50` at its bound. The guest's
//! PASS marker (every reply received), the kernel's MAC in the guest's neighbour table, the
//! guest's MAC in the kernel's FDB behind our VTEP and the kernel's `vx0` receive counter
//! prove both directions through a real driver's RX and TX rings and a real VTEP.
//!
//! The guest image comes from `scripts/guest/build-guest.sh` and boots through
//! `scripts/guest/boot.sh` (`qemu_support`). QEMU runs in the test's own namespace: the
//! vhost-user socket is a file, so only the daemon, whose VTEP binds 192.0.2.1, runs in "host".
//! `$VIF_GUEST_DIR` picks the guest image directory, `$VIF_DAEMON_BIN` another daemon build.
//!
//! Cleanup never depends on the test passing: QEMU dies with its process group (`Guest`), the
//! daemon with its handle, the namespaces (and the veth and vxlan links in them) with `Netns`,
//! the scratch directory with `SocketDir`. A boot takes 10-30 s on a busy 2-core host; the
//! deadlines only stop a hung test, nothing asserts on timing.

mod qemu_support;
mod uplink_vxlan_support;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use qemu_support::{guest_image, tail, Guest, BOOT_DEADLINE};
use uplink_vxlan_support::{daemon_in, kernel_vxlan_peer, mac, Netns, SocketDir};
use vmm_integration::launcher::DAEMON_BINARY_ENV;

const BINARY: &str = env!("CARGO_BIN_EXE_vhost-user-net");
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 2);
/// Our VTEP (in "host") and the kernel's (in "peer"), on a veth pair of MTU 1500.
const LOCAL_VTEP: &str = "192.0.2.1";
const REMOTE_VTEP: &str = "192.0.2.2";
/// The VIF's MTU: the 1500-byte underlay less the 50 bytes of VXLAN over IPv4.
const VIF_MTU: u16 = 1450;
/// The ICMP payload that fills [`VIF_MTU`]: 1450 - 20 (IPv4) - 8 (ICMP).
const FULL_PAYLOAD: u16 = VIF_MTU - 28;

/// A counter of the kernel's `vx0` in `ns` (sysfs, as `ip netns exec` mounts it there).
fn vx0_counter(ns: &Netns, counter: &str) -> u64 {
    let path = format!("/sys/class/net/vx0/statistics/{counter}");
    let out = ns.exec("cat", &[&path]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {text:?}: {e}"))
}

#[test]
fn linux_guest_under_qemu_pings_the_kernel_vxlan_through_the_daemon() {
    // Declared first, dropped last: the links go after QEMU and the daemon are gone.
    let host = Netns::new("qvxh");
    let peer = Netns::new("qvxp");
    let (guest_mac, peer_mac) = (mac(0x51), mac(0xee));
    kernel_vxlan_peer(
        &host,
        &peer,
        LOCAL_VTEP,
        REMOTE_VTEP,
        24,
        peer_mac,
        PEER_IP,
        (guest_mac, GUEST_IP),
    );
    let dir = SocketDir::new();
    let image = guest_image(dir.path());
    let socket = dir.path().join("vx.sock");
    let config = dir.path().join("vif.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[vif]]
id = "qemu-vx"
mac = "{guest_mac}"
socket = "{socket}"
mtu = {VIF_MTU}
uplink = {{ type = "vxlan", vni = 42, local = "{LOCAL_VTEP}", remotes = ["{REMOTE_VTEP}"], underlay_mtu = 1500 }}
"#,
            socket = socket.display(),
        ),
    )
    .expect("write the config");
    let log = dir.path().join("daemon.log");
    let binary = std::env::var_os(DAEMON_BINARY_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BINARY));
    let daemon = daemon_in(&host, &binary, &config, dir.path(), &log, &[&socket]);
    let rx_before = vx0_counter(&peer, "rx_packets");

    let mtu = format!("vif.mtu={VIF_MTU}");
    let sizes = format!("vif.sizes=56,{FULL_PAYLOAD}");
    let ip = format!("vif.ip={GUEST_IP}/24");
    let ping = format!("vif.ping={PEER_IP}");
    let guest = Guest::boot(
        dir.path(),
        &image,
        "vx",
        &socket,
        &guest_mac.to_string(),
        false,
        &[&ip, &mtu, &ping, "vif.peerwait=30", "vif.count=3", &sizes],
    );
    let status = guest.group.wait(BOOT_DEADLINE);
    let report = || {
        format!(
            "{}\n--- daemon (tail) ---\n{}",
            guest.report(),
            tail(&log, 30)
        )
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "guest: boot.sh exit {:?} (0 PASS, 1 FAIL, 3 no marker, 124 timeout; None: hung)\n{}",
        status.map(|s| s.code()),
        report()
    );
    let console = guest.console();
    let marker = format!("VIF-GUEST-RESULT: PASS ping56=3/3 ping{FULL_PAYLOAD}=3/3");
    assert!(console.contains(&marker), "guest marker\n{}", report());
    assert!(
        console.contains(&format!("mtu={VIF_MTU} ")),
        "the guest's eth0 must run at the VIF's MTU\n{}",
        report()
    );
    // The guest resolved the kernel's address by ARP across the tunnel, both ways.
    assert!(
        console.contains(&format!("{PEER_IP} lladdr {peer_mac}")),
        "the guest's neighbour table lacks the kernel's vx0\n{}",
        report()
    );
    drop(guest);

    // The kernel learned the guest's MAC behind our VTEP from our datagrams (RFC 7348 § 4.1).
    let fdb = peer.exec("bridge", &["fdb", "show", "dev", "vx0"]);
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(
        fdb.lines().any(|line| {
            line.starts_with(&guest_mac.to_string()) && line.contains(&format!("dst {LOCAL_VTEP}"))
        }),
        "kernel FDB:\n{fdb}"
    );
    // At least the 6 echo requests and the ARP request were decapsulated by the kernel.
    let received = vx0_counter(&peer, "rx_packets").saturating_sub(rx_before);
    assert!(received >= 7, "vx0 received {received} packets");

    let stopped = daemon.stop();
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        matches!(&stopped, Ok(Some(s)) if s.success()),
        "daemon stop: {stopped:?}\n{daemon_log}"
    );
    assert!(
        daemon_log.contains("vif qemu-vx: frontend connected"),
        "daemon log lacks the QEMU connection\n{daemon_log}"
    );
}
