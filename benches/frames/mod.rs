//! Frames the benchmarks work on, built with vif-core's own `Repr::emit` so that every length
//! and checksum is right: TCP over IPv4 (optionally 802.1Q-tagged) and IPv6 at a chosen frame
//! length, and a 64 KiB TSO frame as a Linux guest hands it to the device. Shared by
//! `benches/{flow,tso,instructions}.rs` through `mod frames;`.
#![allow(dead_code)] // Each bench uses a subset.

use std::net::{Ipv4Addr, Ipv6Addr};

use vif::core::checksum;
use vif::core::ids::VlanId;
use vif::core::mac::MacAddr;
use vif::core::offload::{GsoType, VirtioNetHdr};
use vif::core::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use vif::core::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use vif::core::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use vif::core::wire::tcp::{TcpFlags, TcpPacket, TcpRepr, TcpTimestamps};
use vif::core::wire::vlan::{push_tag, VlanRepr};
use vif::core::wire::Csum;

// Documentation addresses (RFC 5737, RFC 3849).
const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Linux's MSS on a 1500-byte MTU with TCP timestamps: 1500 − 20 − 32.
pub const MSS: u16 = 1448;
/// Ethernet + IPv4 + TCP with the timestamps option (NOP, NOP, TS: 12 bytes).
pub const TSO_HEADERS_LEN: usize = 14 + 20 + 32;
/// The TSO frame's IP packet is the largest IPv4 allows.
pub const TSO_FRAME_LEN: usize = 14 + 65535;

fn tcp_repr(payload_len: usize, timestamps: bool) -> TcpRepr {
    TcpRepr {
        src_port: 40000,
        dst_port: 5201,
        seq_number: 0x1234_5678,
        ack_number: 0x0bad_cafe,
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window_len: 501,
        urgent_at: 0,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        timestamps: timestamps.then_some(TcpTimestamps {
            tsval: 1_000,
            tsecr: 2_000,
        }),
        payload_len,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn ethernet(ethertype: EtherType, l3: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + l3.len()];
    EthernetRepr {
        src_addr: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        dst_addr: MacAddr([0x52, 0x54, 0x00, 0x65, 0x43, 0x21]),
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]))
    .expect("ethernet header");
    frame[14..].copy_from_slice(l3);
    frame
}

/// TCP/IPv4 carrying `tcp_payload` bytes; `csum` Partial leaves the pseudo-header sum in the TCP
/// checksum, as a guest does with `NEEDS_CSUM`.
fn ipv4_tcp(tcp_payload: usize, timestamps: bool, csum: Csum) -> Vec<u8> {
    let repr = tcp_repr(tcp_payload, timestamps);
    let mut packet = vec![0u8; 20 + repr.buffer_len()];
    let tcp_len = repr.buffer_len();
    packet[20 + repr.header_len()..].copy_from_slice(&payload(tcp_payload));
    let pseudo = checksum::pseudo_header_v4(&SRC4, &DST4, 6, tcp_len as u16);
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut packet[20..]),
        pseudo,
        csum,
    )
    .expect("tcp header");
    Ipv4Repr {
        src_addr: SRC4,
        dst_addr: DST4,
        protocol: IpProtocol::TCP,
        payload_len: tcp_len as u16,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0x4242,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(
        &mut Ipv4Packet::new_unchecked(&mut packet[..]),
        Csum::Verify,
    )
    .expect("ipv4 header");
    ethernet(EtherType::IPV4, &packet)
}

/// An untagged TCP/IPv4 frame of `frame_len` bytes (at least 54), checksums complete.
pub fn tcp_ipv4(frame_len: usize) -> Vec<u8> {
    ipv4_tcp(frame_len - 54, false, Csum::Verify)
}

/// A TCP/IPv4 frame with an 802.1Q tag (VID 100), `frame_len` bytes in all (at least 58).
pub fn vlan_tcp_ipv4(frame_len: usize) -> Vec<u8> {
    let inner = tcp_ipv4(frame_len - 4);
    let mut buf = vec![0u8; 4 + inner.len()];
    buf[4..].copy_from_slice(&inner);
    let tag = VlanRepr::c_tag(VlanId::new(100).ok(), 0);
    let start = push_tag(&mut buf, 4, inner.len(), tag).expect("vlan tag");
    buf[start..].to_vec()
}

/// An untagged TCP/IPv6 frame of `frame_len` bytes (at least 74), checksum complete.
pub fn tcp_ipv6(frame_len: usize) -> Vec<u8> {
    let tcp_payload = frame_len - 74;
    let repr = tcp_repr(tcp_payload, false);
    let mut packet = vec![0u8; 40 + repr.buffer_len()];
    let tcp_len = repr.buffer_len();
    packet[40 + repr.header_len()..].copy_from_slice(&payload(tcp_payload));
    let pseudo = checksum::pseudo_header_v6(&SRC6, &DST6, 6, tcp_len as u32);
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut packet[40..]),
        pseudo,
        Csum::Verify,
    )
    .expect("tcp header");
    Ipv6Repr {
        src_addr: SRC6,
        dst_addr: DST6,
        next_header: IpProtocol::TCP,
        payload_len: tcp_len as u16,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0x1_2345,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]))
    .expect("ipv6 header");
    ethernet(EtherType::IPV6, &packet)
}

/// A 64 KiB TSO frame (IPv4 total length 65535, TCP timestamps) with the partial checksum a
/// Linux guest leaves, and its `virtio_net_hdr`: TCPV4, MSS 1448, `NEEDS_CSUM` at 34 / 16.
pub fn tso_ipv4_64k() -> (Vec<u8>, VirtioNetHdr) {
    let frame = ipv4_tcp(TSO_FRAME_LEN - TSO_HEADERS_LEN, true, Csum::Partial);
    let hdr = VirtioNetHdr {
        flags: 1,
        gso_type: GsoType::TCPV4,
        hdr_len: TSO_HEADERS_LEN as u16,
        gso_size: MSS,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    (frame, hdr)
}
