//! Guest A → guest B: two `VirtualGuest`s (vhost-user frontends over memfd memory) driven from
//! one thread, whichever backend connects them (vif's segment or DPDK's `net_vhost` ports).
//!
//! One polling loop does A's transmit and B's receive, like testpmd's one forwarding core does
//! for its ports in the DPDK anchor ("p2p1" in /work/shared/rigs/ovs-dpdk/RESULTS.md): two
//! generator threads on one core would measure the scheduler, not the switch. Both sides use the
//! guest's zero-allocation burst API: A queues one-descriptor chains that all point at one frame
//! written once ([`VirtualGuest::send_burst`]), B counts and re-posts its buffers without copying
//! ([`VirtualGuest::recv_count`]). Notifications follow the negotiated `EVENT_IDX` rules, so the
//! backend sees kicks only when it asked for them, as from a Linux guest.
//!
//! Frames are IPv4/UDP, shaped like testpmd's txonly frames (TEST-NET-1 addresses, RFC 5737),
//! so the switch parses what it would parse from the DPDK generator.

use std::path::Path;
use std::time::{Duration, Instant};

use vif::core::checksum;
use vif::core::mac::MacAddr;
use vif::core::offload::VirtioNetHdr;
use vif::vmm::guest::{GuestConfig, GuestError, PreparedFrame, VirtualGuest};

/// Guest A's and guest B's MACs (locally administered), as in the DPDK anchors.
pub const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
pub const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
/// Chains A queues per loop turn: testpmd's default burst.
const BURST: usize = 32;
/// B's receive buffers: one 1500-byte frame plus header fits, as with Linux's mergeable
/// buffers.
const RX_BUF_LEN: u32 = 2048;
/// Ethernet + IPv4 + UDP headers.
pub const MIN_FRAME_LEN: usize = 14 + 20 + 8;

/// An Ethernet II / IPv4 / UDP frame of `len` bytes (no FCS) from `src` to `dst`: addresses
/// 192.0.2.1 → 192.0.2.2, ports 4000 → 5000, IPv4 header checksum filled, UDP checksum 0 (no
/// checksum, RFC 768), zero payload. `len` below [`MIN_FRAME_LEN`] is raised to it.
pub fn udp_frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let len = len.max(MIN_FRAME_LEN);
    let ip_len = u16::try_from(len - 14).unwrap_or(u16::MAX);
    let mut frame = vec![0u8; len];
    frame[0..6].copy_from_slice(dst.as_bytes());
    frame[6..12].copy_from_slice(src.as_bytes());
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip[0] = 0x45; // version 4, IHL 5
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    ip[16..20].copy_from_slice(&[192, 0, 2, 2]);
    let sum = checksum::finish(checksum::data(ip));
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut frame[34..42];
    udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&ip_len.saturating_sub(20).to_be_bytes());
    frame
}

/// What one measuring window saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Chains A queued (not necessarily consumed yet).
    pub queued: u64,
    /// Complete packets B received.
    pub received: u64,
    pub secs: f64,
}

impl Window {
    pub fn received_mpps(&self) -> f64 {
        if self.secs > 0.0 {
            self.received as f64 / self.secs / 1e6
        } else {
            0.0
        }
    }
}

/// Guest A (sender) and guest B (receiver).
pub struct Pair {
    a: VirtualGuest,
    b: VirtualGuest,
    frames: Vec<PreparedFrame>,
}

impl Pair {
    /// Connects A to `socket_a` and B to `socket_b` (each retried until `connect_timeout` while
    /// the backend is still creating its socket), posts B's receive ring full, and lets B
    /// announce its MAC once (a learning switch then forwards A's frames to B alone, as after
    /// an ARP exchange). A's frames are `frame_len` bytes to B.
    pub fn connect(
        socket_a: &Path,
        socket_b: &Path,
        frame_len: usize,
        connect_timeout: Duration,
    ) -> Result<Pair, GuestError> {
        let config = GuestConfig {
            reply_timeout: connect_timeout,
            ..GuestConfig::default()
        };
        let mut a = VirtualGuest::connect(socket_a, config.clone())?;
        let mut b = VirtualGuest::connect(socket_b, config)?;
        a.fill_rx(0, RX_BUF_LEN)?;
        b.fill_rx(0, RX_BUF_LEN)?;
        let hdr = VirtioNetHdr::default();
        b.send(0, &hdr, &udp_frame(MAC_A, MAC_B, 64))?;
        let frames = vec![a.prepare_frame(&hdr, &udp_frame(MAC_B, MAC_A, frame_len))?];
        Ok(Pair { a, b, frames })
    }

    /// Runs the loop for `window`: A queues up to a burst, B counts what arrived, repeat.
    pub fn drive(&mut self, window: Duration) -> Result<Window, GuestError> {
        let start = Instant::now();
        let mut seen = Window::default();
        for turn in 0u64.. {
            seen.queued += self.a.send_burst(0, &self.frames, BURST)? as u64;
            seen.received += self.b.recv_count(0)?.packets;
            // The clock every 16 turns: a turn can be a few dozen nanoseconds when both rings
            // are idle, and reading the clock would then be a large part of it.
            if turn % 16 == 0 {
                let elapsed = start.elapsed();
                if elapsed >= window {
                    seen.secs = elapsed.as_secs_f64();
                    break;
                }
            }
        }
        Ok(seen)
    }
}
