//! VXLAN encapsulation (RFC 7348 § 5): outer Ethernet, IPv4 or IPv6, UDP and VXLAN headers
//! written in place into the headroom of a backend-owned buffer, in front of the inner frame.
//! Decapsulation is in [`mod@decap`].
//!
//! Two ways to build the headers:
//! - [`EncapTemplate`], for the datapath: built once per (VIF, remote) from a [`VxlanEncap`], it
//!   holds the finished header bytes and their partial checksums. Per packet it copies 50 or 70
//!   bytes and patches the lengths, the IPv4 identification and header checksum (two words added
//!   to a precomputed sum), the UDP source port and, over IPv6, the flow label and UDP checksum.
//! - [`VxlanEncap::write`], which builds a template and writes it once, for the control path
//!   and tests.
//!
//! Choices, all per RFC 7348 § 5 unless noted: DF is set, so a too-big frame is the underlay's
//! problem to report, never ours to fragment. The outer UDP checksum is zero over IPv4, which the
//! RFC allows; over IPv6 it is computed, because a zero checksum is invalid there (RFC 8200
//! § 8.1) and Linux's vxlan drops zero-checksum IPv6 UDP unless `udp6zerocsumrx` is set
//! (RFC 6935/6936 make that opt-in). The source port comes from a hash of the inner flow mapped
//! into the dynamic range 49152..=65535 ([`source_port`]), so underlay ECMP spreads flows; the
//! IPv6 flow label comes from the same hash (RFC 6438 § 3). The outer ECN field is Not-ECT: RFC
//! 6040 § 4.1 "compatibility mode", which needs no look at the inner header. An outer VLAN tag
//! for the underlay is not written here; the uplink can push one with [`super::vlan::push_tag`].

use std::net::IpAddr;

use super::ethernet::{self, EtherType, EthernetFrame, EthernetRepr};
use super::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use super::ipv6::{Ipv6Packet, Ipv6Repr};
use super::udp::{self, UdpPacket};
use super::vxlan::{self, VxlanPacket, VxlanRepr};
use super::{Csum, MacAddr, Result, Vni, WireError};
use crate::checksum;

pub mod decap;
pub use decap::{decap, Decapped, Decapper};

const HEADER: &str = "vxlan encap";

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// Bytes added in front of the inner frame over an IPv4 underlay: 14 + 20 + 8 + 8.
pub const OVERHEAD_V4: usize =
    ethernet::HEADER_LEN + IPV4_HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;

/// Bytes added in front of the inner frame over an IPv6 underlay: 14 + 40 + 8 + 8.
pub const OVERHEAD_V6: usize =
    ethernet::HEADER_LEN + IPV6_HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;

/// The headroom a buffer needs for either underlay.
pub const MAX_OVERHEAD: usize = OVERHEAD_V6;

/// First port of the dynamic range (RFC 6335 § 6) from which source ports are drawn.
pub const SOURCE_PORT_MIN: u16 = 49152;

/// Offsets inside the outer headers, from the outer start.
mod offset {
    use crate::wire::ethernet::HEADER_LEN as L3;
    pub const IP: usize = L3;
    /// IPv4 total length, identification and header checksum.
    pub const V4_TOTAL_LEN: usize = IP + 2;
    pub const V4_IDENT: usize = IP + 4;
    pub const V4_CHECKSUM: usize = IP + 10;
    pub const V4_UDP: usize = IP + 20;
    /// IPv6 first word (version, traffic class, flow label) and payload length.
    pub const V6_FIRST_WORD: usize = IP;
    pub const V6_PAYLOAD_LEN: usize = IP + 4;
    pub const V6_UDP: usize = IP + 40;
    /// Within the UDP header.
    pub const UDP_SRC_PORT: usize = 0;
    pub const UDP_LENGTH: usize = 4;
    pub const UDP_CHECKSUM: usize = 6;
}

/// Maps a hash of the inner flow to a UDP source port in 49152..=65535 (RFC 7348 § 5). Uses the
/// high bits of the hash through a multiply-shift, as Linux's `udp_flow_src_port` does, so a
/// hash that is weak in its low bits still spreads.
pub const fn source_port(flow_hash: u32) -> u16 {
    let span = (u16::MAX - SOURCE_PORT_MIN) as u64 + 1;
    SOURCE_PORT_MIN + ((flow_hash as u64 * span) >> 32) as u16
}

/// The IPv6 flow label for an inner flow (RFC 6438 § 3): 20 bits of its hash, never zero (zero
/// means "no label", RFC 6437 § 2).
pub const fn flow_label(flow_hash: u32) -> u32 {
    let label = (flow_hash ^ (flow_hash >> 20)) & 0x000f_ffff;
    if label == 0 {
        1
    } else {
        label
    }
}

/// The fields that change from packet to packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketFields {
    /// The outer UDP source port; see [`source_port`].
    pub src_port: u16,
    /// The IPv4 identification. Any value will do on a DF datagram that is never fragmented
    /// (RFC 6864 § 4.1). Ignored over IPv6.
    pub ipv4_ident: u16,
    /// The IPv6 flow label (20 bits); see [`flow_label`]. Ignored over IPv4.
    pub flow_label: u32,
}

impl PacketFields {
    /// Source port and flow label from one inner-flow hash; identification 0.
    pub const fn from_flow_hash(flow_hash: u32) -> PacketFields {
        PacketFields {
            src_port: source_port(flow_hash),
            ipv4_ident: 0,
            flow_label: flow_label(flow_hash),
        }
    }
}

/// Where frames for one VNI go: the outer addresses and header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanEncap {
    pub outer_src_mac: MacAddr,
    /// The next hop's MAC on the underlay: the remote VTEP or the gateway towards it.
    pub outer_dst_mac: MacAddr,
    /// Local VTEP address; same family as `dst`.
    pub src: IpAddr,
    /// Remote VTEP address.
    pub dst: IpAddr,
    /// UDP destination port, [`vxlan::VXLAN_PORT`] unless the remote says otherwise.
    pub dst_port: u16,
    pub vni: Vni,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// 6-bit DSCP of the outer header (RFC 2474).
    pub dscp: u8,
}

impl VxlanEncap {
    /// Bytes added in front of the inner frame: [`OVERHEAD_V4`] or [`OVERHEAD_V6`].
    pub const fn overhead(&self) -> usize {
        match self.dst {
            IpAddr::V4(_) => OVERHEAD_V4,
            IpAddr::V6(_) => OVERHEAD_V6,
        }
    }

    /// Builds the per-remote template: the one place the configuration is validated.
    pub fn template(&self) -> Result<EncapTemplate> {
        EncapTemplate::new(self)
    }

    /// Writes the outer headers in the `overhead()` bytes before `inner_start` and returns the
    /// outer start; the encapsulated frame is `buf[start..inner_start + inner_len]`. Builds a
    /// template each call: on the datapath keep an [`EncapTemplate`] instead.
    pub fn write(
        &self,
        buf: &mut [u8],
        inner_start: usize,
        inner_len: usize,
        fields: PacketFields,
    ) -> Result<usize> {
        self.template()?.write(buf, inner_start, inner_len, fields)
    }
}

/// The underlay family of a template, with the sums precomputed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Underlay {
    /// One's-complement sum of the IPv4 header with total length, identification and checksum
    /// zero: per packet, add those two words and complement.
    V4 { header_sum: u16 },
    /// Sum of the pseudo-header addresses and next header, the UDP destination port and the
    /// VXLAN header: per packet, add the lengths, the source port and the inner frame.
    V6 { fixed_sum: u16, first_word: u32 },
}

/// Outer headers for one (VIF, remote), ready to be copied in front of each inner frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncapTemplate {
    headers: [u8; MAX_OVERHEAD],
    len: usize,
    underlay: Underlay,
}

impl EncapTemplate {
    /// Builds the headers of `encap` with zero lengths, identification and source port.
    pub fn new(encap: &VxlanEncap) -> Result<EncapTemplate> {
        if encap.dscp > 0x3f {
            return Err(WireError::BadField {
                header: HEADER,
                field: "dscp",
                value: encap.dscp.into(),
                bound: "<= 63",
            });
        }
        let mut headers = [0u8; MAX_OVERHEAD];
        let len = encap.overhead();
        let (ethertype, udp_at) = match encap.dst {
            IpAddr::V4(_) => (EtherType::IPV4, offset::V4_UDP),
            IpAddr::V6(_) => (EtherType::IPV6, offset::V6_UDP),
        };
        EthernetRepr {
            src_addr: encap.outer_src_mac,
            dst_addr: encap.outer_dst_mac,
            ethertype,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut headers[..]))?;
        let vxlan_at = udp_at + udp::HEADER_LEN;
        let mut udp_header = UdpPacket::new_unchecked(&mut headers[udp_at..vxlan_at]);
        udp_header.set_src_port(0);
        udp_header.set_dst_port(encap.dst_port);
        udp_header.set_length(0);
        udp_header.set_checksum(0);
        VxlanRepr { vni: encap.vni }
            .emit(&mut VxlanPacket::new_unchecked(&mut headers[vxlan_at..len]))?;

        let ip = &mut headers[offset::IP..udp_at];
        let underlay = match (encap.src, encap.dst) {
            (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
                let mut packet = Ipv4Packet::new_unchecked(&mut *ip);
                Ipv4Repr {
                    src_addr,
                    dst_addr,
                    protocol: IpProtocol::UDP,
                    payload_len: 0,
                    ttl: encap.ttl,
                    dscp: encap.dscp,
                    ecn: 0,
                    ident: 0,
                    dont_frag: true,
                    more_frags: false,
                    frag_offset: 0,
                }
                .emit(&mut packet, Csum::Ignore)?;
                packet.set_total_len(0);
                packet.set_checksum(0);
                Underlay::V4 {
                    header_sum: checksum::data(ip),
                }
            }
            (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
                Ipv6Repr {
                    src_addr,
                    dst_addr,
                    next_header: IpProtocol::UDP,
                    payload_len: 0,
                    hop_limit: encap.ttl,
                    traffic_class: encap.dscp << 2,
                    flow_label: 0,
                }
                .emit(&mut Ipv6Packet::new_unchecked(&mut *ip))?;
                let pseudo = checksum::pseudo_header_v6(&src_addr, &dst_addr, 17, 0);
                let first_word = u32::from_be_bytes([ip[0], ip[1], ip[2], ip[3]]);
                Underlay::V6 {
                    fixed_sum: checksum::combine(&[pseudo, checksum::data(&headers[udp_at..len])]),
                    first_word,
                }
            }
            _ => {
                return Err(WireError::Unsupported {
                    header: HEADER,
                    what: "source and destination of different IP families",
                })
            }
        };
        Ok(EncapTemplate {
            headers,
            len,
            underlay,
        })
    }

    /// Bytes added in front of the inner frame.
    pub const fn overhead(&self) -> usize {
        self.len
    }

    /// The header bytes as built, with zero lengths, identification and source port.
    pub fn headers(&self) -> &[u8] {
        &self.headers[..self.len]
    }

    /// Writes the outer headers in the [`overhead`](Self::overhead) bytes before `inner_start`
    /// and returns the outer start; the encapsulated frame is `buf[start..inner_start +
    /// inner_len]`. Fails, writing nothing, without enough headroom, when the inner frame is
    /// not inside `buf`, or when the outer datagram would exceed 65535 bytes.
    pub fn write(
        &self,
        buf: &mut [u8],
        inner_start: usize,
        inner_len: usize,
        fields: PacketFields,
    ) -> Result<usize> {
        let inner_end = match inner_start.checked_add(inner_len) {
            Some(end) if end <= buf.len() => end,
            _ => {
                return Err(WireError::Truncated {
                    header: HEADER,
                    need: inner_start.saturating_add(inner_len),
                    len: buf.len(),
                })
            }
        };
        let Some(outer_start) = inner_start.checked_sub(self.len) else {
            return Err(WireError::Truncated {
                header: "vxlan encap headroom",
                need: self.len,
                len: inner_start,
            });
        };
        // The IP datagram is everything after the outer Ethernet header.
        let ip_len = inner_len + (self.len - ethernet::HEADER_LEN);
        let Ok(ip_len) = u16::try_from(ip_len) else {
            return Err(WireError::BadField {
                header: HEADER,
                field: "inner frame length",
                value: u32::try_from(inner_len).unwrap_or(u32::MAX),
                bound: "small enough for a 65535-byte outer IP datagram",
            });
        };
        let (outer, rest) = buf.split_at_mut(inner_start);
        let outer = &mut outer[outer_start..];
        let inner = &rest[..inner_end - inner_start];
        outer.copy_from_slice(&self.headers[..self.len]);
        match self.underlay {
            Underlay::V4 { header_sum } => {
                let udp_len = ip_len - IPV4_HEADER_LEN as u16;
                let sum = checksum::combine(&[header_sum, ip_len, fields.ipv4_ident]);
                put_u16(outer, offset::V4_TOTAL_LEN, ip_len);
                put_u16(outer, offset::V4_IDENT, fields.ipv4_ident);
                put_u16(outer, offset::V4_CHECKSUM, checksum::finish(sum));
                put_u16(
                    outer,
                    offset::V4_UDP + offset::UDP_SRC_PORT,
                    fields.src_port,
                );
                put_u16(outer, offset::V4_UDP + offset::UDP_LENGTH, udp_len);
                // The UDP checksum stays zero (RFC 7348 § 5).
            }
            Underlay::V6 {
                fixed_sum,
                first_word,
            } => {
                let udp_len = ip_len - IPV6_HEADER_LEN as u16;
                let word = first_word | (fields.flow_label & 0x000f_ffff);
                outer[offset::V6_FIRST_WORD..offset::V6_FIRST_WORD + 4]
                    .copy_from_slice(&word.to_be_bytes());
                put_u16(outer, offset::V6_PAYLOAD_LEN, udp_len);
                put_u16(
                    outer,
                    offset::V6_UDP + offset::UDP_SRC_PORT,
                    fields.src_port,
                );
                put_u16(outer, offset::V6_UDP + offset::UDP_LENGTH, udp_len);
                // The length counts twice: once in the pseudo-header, once in the UDP header.
                let sum = checksum::combine(&[
                    fixed_sum,
                    udp_len,
                    udp_len,
                    fields.src_port,
                    checksum::data(inner),
                ]);
                let udp_checksum = match checksum::finish(sum) {
                    0 => 0xffff,
                    value => value,
                };
                put_u16(outer, offset::V6_UDP + offset::UDP_CHECKSUM, udp_checksum);
            }
        }
        Ok(outer_start)
    }
}

/// Writes `value` big-endian at `at`; callers pass offsets inside the template length.
fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::vxlan::VXLAN_PORT;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn encap_v4() -> VxlanEncap {
        VxlanEncap {
            outer_src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            outer_dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            src: Ipv4Addr::new(192, 0, 2, 1).into(),
            dst: Ipv4Addr::new(192, 0, 2, 2).into(),
            dst_port: VXLAN_PORT,
            vni: Vni::new(42).unwrap(),
            ttl: 64,
            dscp: 0,
        }
    }

    fn encap_v6() -> VxlanEncap {
        VxlanEncap {
            src: "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            dst: "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
            dscp: 46,
            ..encap_v4()
        }
    }

    /// Outer headers for a 60-byte inner frame over IPv4 (VNI 42, source port 0xc123), built by
    /// hand from the RFC 7348 § 5 layout; the IPv4 header checksum 0xb689 was computed with a
    /// separate 16-bit-word Python reference.
    const OUTER_V4: [u8; 50] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x60, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb6, 0x89, 0xc0, 0x00, 0x02, 0x01,
        0xc0, 0x00, 0x02, 0x02, 0xc1, 0x23, 0x12, 0xb5, 0x00, 0x4c, 0x00, 0x00, 0x08, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x2a, 0x00,
    ];

    fn fields(src_port: u16) -> PacketFields {
        PacketFields {
            src_port,
            ..PacketFields::default()
        }
    }

    #[test]
    fn writes_ipv4_fixture() {
        let mut buf = [0xeeu8; 64 + 60];
        let start = encap_v4().write(&mut buf, 64, 60, fields(0xc123)).unwrap();
        assert_eq!(start, 14);
        assert_eq!(&buf[14..64], &OUTER_V4);
        assert!(
            buf[64..].iter().all(|&b| b == 0xee),
            "inner frame untouched"
        );
        assert!(
            buf[..14].iter().all(|&b| b == 0xee),
            "nothing before the headroom used"
        );
    }

    #[test]
    fn overheads() {
        assert_eq!((OVERHEAD_V4, OVERHEAD_V6), (50, 70));
        assert_eq!(encap_v4().overhead(), 50);
        assert_eq!(encap_v6().template().unwrap().overhead(), 70);
    }

    #[test]
    fn ipv6_headers_and_checksum_verify_from_scratch() {
        let inner: Vec<u8> = (0..61u8).collect();
        let mut buf = vec![0u8; 70 + inner.len()];
        buf[70..].copy_from_slice(&inner);
        let fields = PacketFields::from_flow_hash(0xdead_beef);
        let start = encap_v6().write(&mut buf, 70, inner.len(), fields).unwrap();
        assert_eq!(start, 0);
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::IPV6);
        let ip = Ipv6Packet::new_checked(frame.payload()).unwrap();
        assert_eq!(usize::from(ip.payload_len()), 16 + inner.len());
        assert_eq!((ip.hop_limit(), ip.dscp(), ip.ecn()), (64, 46, 0));
        assert_eq!(ip.flow_label(), flow_label(0xdead_beef));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.src_port(), source_port(0xdead_beef));
        assert_ne!(udp.checksum(), 0);
        let pseudo = ip.pseudo_header_sum(IpProtocol::UDP, udp.length().into());
        assert!(udp.verify_checksum(pseudo));
    }

    #[test]
    fn refuses_bad_configs_and_buffers() {
        let mixed = VxlanEncap {
            dst: Ipv6Addr::LOCALHOST.into(),
            ..encap_v4()
        };
        assert!(matches!(
            mixed.template(),
            Err(WireError::Unsupported { .. })
        ));
        let loud = VxlanEncap {
            dscp: 64,
            ..encap_v4()
        };
        assert!(loud.template().is_err());

        let template = encap_v4().template().unwrap();
        let mut buf = [0u8; 100];
        // Not enough headroom.
        assert!(matches!(
            template.write(&mut buf, 49, 14, fields(1)),
            Err(WireError::Truncated {
                need: 50,
                len: 49,
                ..
            })
        ));
        // Inner frame past the buffer, and an overflowing range.
        assert!(template.write(&mut buf, 50, 51, fields(1)).is_err());
        assert!(template.write(&mut buf, usize::MAX, 2, fields(1)).is_err());
        assert_eq!(buf, [0u8; 100], "nothing written on error");
        // An inner frame too big for a 65535-byte outer datagram.
        let mut big = vec![0u8; 50 + 65500];
        assert!(matches!(
            template.write(&mut big, 50, 65500, fields(1)),
            Err(WireError::BadField { .. })
        ));
        assert_eq!(template.write(&mut big, 50, 65535 - 36, fields(1)), Ok(0));
    }

    #[test]
    fn source_port_spans_dynamic_range() {
        assert_eq!(source_port(0), 49152);
        assert_eq!(source_port(u32::MAX), 65535);
        assert_ne!(flow_label(0), 0);
        assert_eq!(flow_label(0x0000_0001), 1);
    }

    proptest! {
        #[test]
        fn source_port_in_range(hash in any::<u32>()) {
            prop_assert!(source_port(hash) >= SOURCE_PORT_MIN);
            prop_assert!((1..=0xfffff).contains(&flow_label(hash)));
        }

        #[test]
        fn template_reuse_matches_fresh_build(
            lens in proptest::collection::vec(14usize..300, 1..4),
            ident in any::<u16>(),
            hash in any::<u32>(),
            v6 in any::<bool>(),
        ) {
            let encap = if v6 { encap_v6() } else { encap_v4() };
            let template = encap.template().unwrap();
            let fields = PacketFields { ipv4_ident: ident, ..PacketFields::from_flow_hash(hash) };
            for len in lens {
                let inner: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut a = vec![0u8; MAX_OVERHEAD + len];
                a[MAX_OVERHEAD..].copy_from_slice(&inner);
                let mut b = a.clone();
                let sa = template.write(&mut a, MAX_OVERHEAD, len, fields).unwrap();
                let sb = encap.write(&mut b, MAX_OVERHEAD, len, fields).unwrap();
                prop_assert_eq!(sa, sb);
                prop_assert_eq!(&a, &b);
                if !v6 {
                    // From scratch: the IPv4 header checksum verifies; the UDP checksum is 0.
                    let ip = Ipv4Packet::new_checked(&a[sa + 14..]).unwrap();
                    prop_assert!(ip.verify_checksum());
                    prop_assert!(ip.dont_frag() && !ip.more_frags());
                    prop_assert_eq!(ip.ident(), ident);
                    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
                    prop_assert_eq!(udp.checksum(), 0);
                    prop_assert_eq!(usize::from(udp.length()), len + 16);
                }
            }
        }

        #[test]
        fn arbitrary_ranges_never_panic(
            size in 0usize..200,
            start in 0usize..256,
            len in 0usize..256,
            v6 in any::<bool>(),
        ) {
            let encap = if v6 { encap_v6() } else { encap_v4() };
            let mut buf = vec![0u8; size];
            if let Ok(outer) = encap.write(&mut buf, start, len, fields(7)) {
                prop_assert_eq!(outer + encap.overhead(), start);
                prop_assert!(start + len <= size);
            }
        }
    }
}
