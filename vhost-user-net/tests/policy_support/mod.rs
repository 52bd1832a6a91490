//! Helpers of the policy tests: frames built field by field (Ethernet, IPv4, TCP, UDP, ARP),
//! each VIF's counters through the control socket, and waits that poll with a deadline.
//!
//! Addresses: VIF `n` has MAC 52:54:00:00:00:n (as `control_support::vif_table` gives it) and
//! IPv4 192.0.2.n (TEST-NET-1, RFC 5737). Checksums are left 0: the daemon does not verify the
//! checksums of frames without offload flags (VIRTIO 1.2 § 5.1.6.2.2), and the guests compare
//! bytes.

#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;
use std::time::{Duration, Instant};

use vhost_user_net::control::protocol::{DirectionCounters, Request, VifCounters};
use vif_core::offload::VirtioNetHdr;
use vmm_integration::guest::VirtualGuest;

use crate::control_support::ok;
use crate::daemon_support::DEADLINE;

/// How long to wait for a frame that must not arrive. Not a timing assertion: a frame that
/// should have been dropped but arrives later than this is still caught by the drop counters.
pub const QUIET: Duration = Duration::from_millis(300);

pub fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x00, 0x00, n]
}

pub fn ip(n: u8) -> [u8; 4] {
    [192, 0, 2, n]
}

/// TCP flags (RFC 9293 § 3.1).
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const SYN_ACK: u8 = SYN | ACK;

/// One IPv4 frame: `src_mac` → `dst_mac`, `src_ip` → `dst_ip`, protocol `proto`, L4 header
/// `l4` then `payload`. IHL 5, TTL 64, DF clear.
fn ipv4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    proto: u8,
    l4: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let total = 20 + l4.len() + payload.len();
    let mut frame = Vec::with_capacity(14 + total);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&[0x45, 0x00]);
    frame.extend_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0]);
    frame.extend_from_slice(&src_ip);
    frame.extend_from_slice(&dst_ip);
    frame.extend_from_slice(l4);
    frame.extend_from_slice(payload);
    frame
}

/// A TCP segment from VIF `from` to VIF `to` (addresses as in the module docs), ports
/// `sport` → `dport`, `flags`, carrying `payload`.
pub fn tcp(from: u8, to: u8, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_from(mac(from), ip(from), to, sport, dport, flags, payload)
}

/// [`tcp`] with an explicit source MAC and IP (spoofing tests).
pub fn tcp_from(
    src_mac: [u8; 6],
    src_ip: [u8; 4],
    to: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut header = [0u8; 20];
    header[0..2].copy_from_slice(&sport.to_be_bytes());
    header[2..4].copy_from_slice(&dport.to_be_bytes());
    header[12] = 0x50; // data offset 5
    header[13] = flags;
    header[14..16].copy_from_slice(&64240u16.to_be_bytes());
    ipv4(src_mac, mac(to), src_ip, ip(to), 6, &header, payload)
}

/// A UDP datagram from VIF `from` to VIF `to`, ports `sport` → `dport`.
pub fn udp(from: u8, to: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 8];
    header[0..2].copy_from_slice(&sport.to_be_bytes());
    header[2..4].copy_from_slice(&dport.to_be_bytes());
    header[4..6].copy_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    ipv4(mac(from), mac(to), ip(from), ip(to), 17, &header, payload)
}

/// An ARP request (RFC 826) broadcast with Ethernet source `eth_src`, sender `sender_mac` /
/// `sender_ip`, asking for `target_ip`; padded to 60 bytes.
pub fn arp(
    eth_src: [u8; 6],
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_ip: [u8; 4],
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&eth_src);
    frame.extend_from_slice(&[0x08, 0x06]);
    frame.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender_ip);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target_ip);
    frame.resize(60, 0);
    frame
}

/// Sends `frame` with an all-zero virtio-net header.
pub fn send(guest: &mut VirtualGuest, frame: &[u8]) {
    guest
        .send(0, &VirtioNetHdr::default(), frame)
        .unwrap_or_else(|e| panic!("send: {e}"));
}

/// The next frame `guest` receives, within [`DEADLINE`].
pub fn receive(guest: &mut VirtualGuest, log: impl Fn() -> String) -> Vec<u8> {
    guest
        .recv_timeout(0, DEADLINE)
        .unwrap_or_else(|e| panic!("receive: {e}\n{}", log()))
        .1
}

/// True if `guest` receives a frame within [`QUIET`].
pub fn receives_any(guest: &mut VirtualGuest) -> bool {
    guest.recv_timeout(0, QUIET).is_ok()
}

/// The counters of `vif`.
pub fn counters(control: &Path, vif: &str) -> VifCounters {
    let result = ok(
        control,
        &Request::Stats {
            vif: Some(vif.to_owned()),
        },
    );
    let mut all: Vec<VifCounters> = serde_json::from_value(result).expect("stats result");
    all.pop().expect("one VIF's counters")
}

pub fn drops(counters: &DirectionCounters, reason: &str) -> u64 {
    counters.drops.get(reason).copied().unwrap_or(0)
}

/// Polls `vif`'s counters until `check` accepts them; fails with the last ones at
/// [`DEADLINE`]. Counters are published once per batch, after the frames moved.
pub fn counters_until(
    control: &Path,
    vif: &str,
    what: &str,
    check: impl Fn(&VifCounters) -> bool,
) -> VifCounters {
    let start = Instant::now();
    loop {
        let now = counters(control, vif);
        if check(&now) {
            return now;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "vif {vif} counters never showed {what}: {now:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
