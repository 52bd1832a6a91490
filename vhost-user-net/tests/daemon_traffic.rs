//! Traffic through the real daemon between two virtual guests on one local segment, across a
//! daemon crash and restart: the VMs keep running (their rings resume, as QEMU's do), and the
//! daemon reattaches in both modes.

mod daemon_support;

use daemon_support::{start, Scratch, DEADLINE};
use vif_core::offload::VirtioNetHdr;
use vmm_integration::guest::{GuestConfig, Reconnect, VirtualGuest};

const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0a];

/// An ARP request (RFC 826) from A for 192.0.2.11, broadcast, padded to the 60-byte Ethernet
/// minimum; built by hand field by field.
fn arp_request(sender_ip_last: u8) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&[0xff; 6]); // destination: broadcast
    frame.extend_from_slice(&MAC_A); // source
    frame.extend_from_slice(&[0x08, 0x06]); // EtherType ARP
    frame.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    frame.extend_from_slice(&MAC_A); // sender hardware address
    frame.extend_from_slice(&[192, 0, 2, sender_ip_last]); // sender protocol address
    frame.extend_from_slice(&[0; 6]); // target hardware address: unknown
    frame.extend_from_slice(&[192, 0, 2, 11]); // target protocol address
    frame.resize(60, 0);
    frame
}

fn guest_config() -> GuestConfig {
    GuestConfig {
        reply_timeout: DEADLINE,
        op_timeout: DEADLINE,
        ..GuestConfig::default()
    }
}

/// Sends from A and expects exactly that frame at B.
fn exchange(a: &mut VirtualGuest, b: &mut VirtualGuest, frame: &[u8], log: impl Fn() -> String) {
    a.send(0, &VirtioNetHdr::default(), frame)
        .unwrap_or_else(|e| panic!("send: {e}\n{}", log()));
    let (_, received) = b
        .recv_timeout(0, DEADLINE)
        .unwrap_or_else(|e| panic!("receive: {e}\n{}", log()));
    assert_eq!(received, frame);
}

#[test]
fn traffic_resumes_after_the_daemon_is_killed_and_restarted() {
    let scratch = Scratch::new();
    let socket_a = scratch.join("a.sock");
    let vm_socket_b = scratch.join("vm-b.sock");
    let config = scratch.write(
        "vif.toml",
        r#"
[[vif]]
id = "a"
mac = "52:54:00:00:00:0a"
socket = "a.sock"
uplink = { type = "local", segment = "lab" }

[[vif]]
id = "b"
mac = "52:54:00:00:00:0b"
socket = "vm-b.sock"
mode = "client"
uplink = { type = "local", segment = "lab" }
"#,
    );
    // VM B listens (QEMU server=on) before the daemon exists, as a VMM started first would.
    let listener_b = VirtualGuest::listen(&vm_socket_b, guest_config()).unwrap();
    let launcher = scratch.daemon().config(&config);
    let daemon = start(&scratch, launcher.clone(), &[&socket_a]);

    let mut b = listener_b.accept(DEADLINE).unwrap();
    let mut a = VirtualGuest::connect(&socket_a, guest_config()).unwrap();
    b.post_rx_buffers(0, 16, 2048).unwrap();
    let log = || scratch.log();
    exchange(&mut a, &mut b, &arp_request(10), log);

    // A crash: nothing is cleaned up; both VMs keep their rings.
    daemon.kill().unwrap();
    let restarted = start(&scratch, launcher, &[&socket_a]);
    // A's VMM dials the restarted daemon; B's VMM is dialled by it.
    a.reconnect(Reconnect::Resume)
        .unwrap_or_else(|e| panic!("A reconnect: {e}\n{}", log()));
    b.accept_reconnect(Reconnect::Resume, DEADLINE)
        .unwrap_or_else(|e| panic!("B reattach: {e}\n{}", log()));
    exchange(&mut a, &mut b, &arp_request(12), log);

    assert!(restarted.stop().unwrap().is_some_and(|s| s.success()));
    assert!(!socket_a.exists());
}
