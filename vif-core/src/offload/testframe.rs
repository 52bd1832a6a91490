//! Test-only frame builder and independent checksum verifiers for the offload tests.
//!
//! Frames are laid out by hand from RFC 791 / RFC 8200 / RFC 9293 / RFC 768 (not with the wire
//! views), so that a bug shared by the views and the offload code cannot hide. Checksums are
//! verified from scratch: a pseudo-header assembled byte by byte plus `checksum::data`.

use super::header::{GsoType, VirtioNetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM};
use super::validate::IpVersion;
use crate::checksum;

pub const SRC4: [u8; 4] = [192, 0, 2, 1];
pub const DST4: [u8; 4] = [198, 51, 100, 7];
pub const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub vlan: bool,
    pub ip: IpVersion,
    pub tcp: bool,
    /// Bytes of TCP options (a multiple of 4, at most 40): NOPs.
    pub tcp_options: usize,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ident: u16,
    /// IPv6 only: an 8-byte hop-by-hop header (one PadN option) before L4 (RFC 8200 § 4.3).
    pub ipv6_hop_by_hop: bool,
    pub payload: Vec<u8>,
}

impl Spec {
    pub fn new(ip: IpVersion, tcp: bool, payload: Vec<u8>) -> Spec {
        Spec {
            vlan: false,
            ip,
            tcp,
            tcp_options: 0,
            tcp_flags: 0x18, // PSH|ACK, as a sender's last write
            seq: 0x1000_0000,
            ident: 0x4242,
            ipv6_hop_by_hop: false,
            payload,
        }
    }
}

/// A built frame and where its headers are.
#[derive(Debug, Clone)]
pub struct Built {
    pub frame: Vec<u8>,
    pub l3: usize,
    pub l4: usize,
    pub headers_len: usize,
    pub spec: Spec,
}

/// Builds Ethernet (+ 802.1Q tag) + IP + TCP/UDP + payload. The L4 checksum field holds the
/// pseudo-header sum, as a virtio driver leaves it with NEEDS_CSUM; the IPv4 header checksum is
/// complete.
pub fn build(spec: &Spec) -> Built {
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if spec.vlan {
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]); // VID 100
    }
    let ethertype: u16 = match spec.ip {
        IpVersion::V4 => 0x0800,
        IpVersion::V6 => 0x86dd,
    };
    frame.extend_from_slice(&ethertype.to_be_bytes());
    let l3 = frame.len();
    let l4_header_len = if spec.tcp { 20 + spec.tcp_options } else { 8 };
    let l4_len = l4_header_len + spec.payload.len();
    let protocol = if spec.tcp { 6 } else { 17 };
    match spec.ip {
        IpVersion::V4 => {
            let total = (20 + l4_len) as u16;
            frame.extend_from_slice(&[0x45, 0]);
            frame.extend_from_slice(&total.to_be_bytes());
            frame.extend_from_slice(&spec.ident.to_be_bytes());
            frame.extend_from_slice(&[0x40, 0, 64, protocol, 0, 0]); // DF
            frame.extend_from_slice(&SRC4);
            frame.extend_from_slice(&DST4);
            let sum = !checksum::data(&frame[l3..l3 + 20]);
            frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
        }
        IpVersion::V6 => {
            let ext_len = if spec.ipv6_hop_by_hop { 8 } else { 0 };
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&((ext_len + l4_len) as u16).to_be_bytes());
            let next_header = if spec.ipv6_hop_by_hop { 0 } else { protocol };
            frame.extend_from_slice(&[next_header, 64]);
            frame.extend_from_slice(&SRC6);
            frame.extend_from_slice(&DST6);
            if spec.ipv6_hop_by_hop {
                frame.extend_from_slice(&[protocol, 0, 1, 4, 0, 0, 0, 0]);
            }
        }
    }
    let l4 = frame.len();
    if spec.tcp {
        frame.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50]); // 40000 -> 80
        frame.extend_from_slice(&spec.seq.to_be_bytes());
        frame.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
        frame.push(((l4_header_len / 4) as u8) << 4);
        frame.push(spec.tcp_flags);
        frame.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
        frame.extend(std::iter::repeat_n(1u8, spec.tcp_options)); // NOP
    } else {
        frame.extend_from_slice(&[0x13, 0x88, 0x00, 0x35]); // 5000 -> 53
        frame.extend_from_slice(&(l4_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
    }
    let headers_len = frame.len();
    frame.extend_from_slice(&spec.payload);
    let field = l4 + if spec.tcp { 16 } else { 6 };
    let pseudo = pseudo_sum(&frame, l3, spec.ip, protocol, l4_len);
    frame[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
    Built {
        frame,
        l3,
        l4,
        headers_len,
        spec: spec.clone(),
    }
}

/// The header a Linux guest sends with `built`.
pub fn gso_hdr(built: &Built, gso_type: GsoType, gso_size: u16) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: gso_type.to_raw(),
        hdr_len: built.headers_len as u16,
        gso_size,
        csum_start: built.l4 as u16,
        csum_offset: if built.spec.tcp { 16 } else { 6 },
        num_buffers: 0,
    }
}

/// The pseudo-header sum, assembled byte by byte from the addresses in the IP header at `l3`.
pub fn pseudo_sum(frame: &[u8], l3: usize, ip: IpVersion, protocol: u8, l4_len: usize) -> u16 {
    let mut pseudo = Vec::new();
    match ip {
        IpVersion::V4 => {
            pseudo.extend_from_slice(&frame[l3 + 12..l3 + 20]);
            pseudo.extend_from_slice(&[0, protocol]);
            pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
        }
        IpVersion::V6 => {
            pseudo.extend_from_slice(&frame[l3 + 8..l3 + 40]);
            pseudo.extend_from_slice(&(l4_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, protocol]);
        }
    }
    checksum::data(&pseudo)
}

/// True when the TCP/UDP checksum of the L4 packet `frame[l4..]` verifies from scratch.
pub fn l4_verifies(frame: &[u8], l3: usize, l4: usize, ip: IpVersion, protocol: u8) -> bool {
    let l4_bytes = &frame[l4..];
    let pseudo = pseudo_sum(frame, l3, ip, protocol, l4_bytes.len());
    checksum::combine(&[pseudo, checksum::data(l4_bytes)]) == 0xffff
}

/// True when the IPv4 header at `l3` verifies (RFC 791 § 3.1).
pub fn ipv4_header_verifies(frame: &[u8], l3: usize) -> bool {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    checksum::data(&frame[l3..l3 + ihl]) == 0xffff
}

pub fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
