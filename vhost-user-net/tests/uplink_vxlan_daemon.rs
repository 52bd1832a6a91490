//! The daemon binary with a VXLAN VIF from its config file: started inside a network namespace
//! (`ip netns exec`, which execs it, so the launcher's pid is the daemon's), it binds the VTEP
//! of the VIF's `local` address there, and a virtual guest on the VIF's socket pings the kernel's
//! `vxlan` device in a second namespace, as in `uplink_vxlan_kernel.rs`. Proves the wiring from
//! `uplink = { type = "vxlan", ... }` to a VNI segment with its uplink port.

mod uplink_vxlan_support;

use std::net::Ipv4Addr;

use uplink_vxlan_support::*;

const BINARY: &str = env!("CARGO_BIN_EXE_vhost-user-net");
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 2);

#[test]
fn daemon_binary_serves_a_vxlan_vif_that_pings_the_kernel() {
    let host = Netns::new("vxdh");
    let peer = Netns::new("vxdp");
    let (guest_mac, peer_mac) = (mac(1), mac(0xee));
    kernel_vxlan_peer(
        &host,
        &peer,
        "192.0.2.1",
        "192.0.2.2",
        24,
        peer_mac,
        PEER_IP,
        (guest_mac, GUEST_IP),
    );
    let dir = SocketDir::new();
    let socket = dir.path().join("vx.sock");
    let config = dir.path().join("vif.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[vif]]
id = "vx-guest"
mac = "{guest_mac}"
socket = "{}"
mtu = 1450
uplink = {{ type = "vxlan", vni = 42, local = "192.0.2.1", remotes = ["192.0.2.2"] }}
"#,
            socket.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = daemon_in(
        &host,
        BINARY.as_ref(),
        &config,
        dir.path(),
        &log,
        &[&socket],
    );
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut guest = GuestVif::connect(&socket, guest_mac);
    for seq_no in 1..=3 {
        ping_once(&mut guest, (peer_mac, PEER_IP), GUEST_IP, seq_no);
    }
    // The kernel learned the guest's MAC behind our VTEP from our datagrams.
    let fdb = peer.exec("bridge", &["fdb", "show", "dev", "vx0"]);
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(
        fdb.lines()
            .any(|line| line.starts_with(&guest_mac.to_string()) && line.contains("192.0.2.1")),
        "kernel FDB:\n{fdb}"
    );
    drop(guest);
    let status = daemon.stop().expect("stop the daemon");
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon exit {status:?}\n{}",
        daemon_log()
    );
}
