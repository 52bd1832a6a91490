//! VXLAN decapsulation (RFC 7348 § 5): validate the outer Ethernet, IPv4/IPv6, UDP and VXLAN
//! headers of a frame received from the underlay and say where the inner frame is.
//!
//! Everything is checked through the `new_checked` views, so no input can make it panic:
//! outer VLAN tags (at most S then C, [`walk_tags`]), the IPv4 header checksum (20 bytes, always
//! verified: nothing offloads it), no fragments (vif does not reassemble; with DF set on both
//! ends they mean a misconfigured underlay), UDP as the upper layer (after IPv6 extension
//! headers if any), the destination port, the UDP checksum (see [`Decapper`]), the I flag, and an
//! inner frame of at least an Ethernet header. What is left to the caller: whether the outer
//! destination MAC and IP are ours, whether `src_ip` is a known remote for `vni`, RFC 6040 ECN
//! handling with [`Decapped::outer_ecn`], and RFC 7348 § 5's advice to drop inner frames that
//! carry a VLAN tag.

use std::net::IpAddr;
use std::ops::Range;

use crate::checksum;
use crate::wire::ethernet::{self, EtherType};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::udp::{self, UdpPacket, UdpRepr, ZeroChecksum};
use crate::wire::vlan::walk_tags;
use crate::wire::vxlan::{self, VxlanPacket, VxlanRepr};
use crate::wire::{Csum, Result, Vni, WireError};

const HEADER: &str = "vxlan decap";

/// What a valid VXLAN frame carries besides the inner frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decapped {
    pub vni: Vni,
    /// The remote VTEP.
    pub src_ip: IpAddr,
    /// Our address as the remote addressed it.
    pub dst_ip: IpAddr,
    /// The outer UDP source port (the remote's flow hash).
    pub src_port: u16,
    /// The outer ECN bits, for RFC 6040 § 4.2 decapsulation if the caller applies it.
    pub outer_ecn: u8,
    /// The inner Ethernet frame inside the received frame.
    pub inner: Range<usize>,
}

/// How strictly to decapsulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapper {
    /// The UDP destination port to accept, usually [`vxlan::VXLAN_PORT`].
    pub port: u16,
    /// [`Csum::Verify`] checks a non-zero UDP checksum (RFC 7348 § 5 allows it; it costs a pass
    /// over the frame). [`Csum::Partial`] and [`Csum::Ignore`] skip it, e.g. when the NIC or the
    /// kernel already validated it (AF_PACKET `TP_STATUS_CSUM_VALID`).
    pub csum: Csum,
    /// What a zero UDP checksum means over IPv6: [`ZeroChecksum::Invalid`] by default, as Linux
    /// does without `udp6zerocsumrx`; [`ZeroChecksum::Absent`] to accept peers that use RFC 6935.
    /// Over IPv4 zero always means "no checksum" (RFC 768).
    pub ipv6_zero_checksum: ZeroChecksum,
}

impl Decapper {
    /// Checksums verified, zero UDP checksums refused over IPv6.
    pub const fn new(port: u16) -> Decapper {
        Decapper {
            port,
            csum: Csum::Verify,
            ipv6_zero_checksum: ZeroChecksum::Invalid,
        }
    }

    /// Validates the outer headers of `frame` (which starts at the outer destination MAC).
    pub fn decap(&self, frame: &[u8]) -> Result<Decapped> {
        let tags = walk_tags(frame)?;
        let l3_start = tags.payload_offset;
        let l3 = frame.get(l3_start..).unwrap_or_default();
        // (UDP range in the frame, pseudo-header sum without the length, zero-checksum rule, ...)
        let (udp_range, pseudo_no_len, zero, src_ip, dst_ip, outer_ecn) = match tags.ethertype {
            EtherType::IPV4 => {
                let ip = Ipv4Packet::new_checked(l3)?;
                if !ip.verify_checksum() {
                    return Err(WireError::BadChecksum { header: "ipv4" });
                }
                if ip.is_fragment() {
                    return Err(unsupported("a fragmented outer IPv4 packet"));
                }
                if ip.protocol() != IpProtocol::UDP {
                    return Err(unsupported("an outer IPv4 protocol other than UDP"));
                }
                let start = l3_start + ip.header_len();
                let end = l3_start + usize::from(ip.total_len());
                let pseudo = checksum::pseudo_header_v4(&ip.src_addr(), &ip.dst_addr(), 17, 0);
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                (start..end, pseudo, ZeroChecksum::Absent, src, dst, ip.ecn())
            }
            EtherType::IPV6 => {
                let ip = Ipv6Packet::new_checked(l3)?;
                let upper = ip.upper_layer()?;
                if upper.fragment.is_some() {
                    return Err(unsupported("a fragmented outer IPv6 packet"));
                }
                if upper.protocol != IpProtocol::UDP {
                    return Err(unsupported("an outer IPv6 upper layer other than UDP"));
                }
                let start = l3_start + Ipv6Packet::<&[u8]>::HEADER_LEN + upper.offset;
                let end = l3_start + ip.total_len();
                let pseudo = checksum::pseudo_header_v6(&ip.src_addr(), &ip.dst_addr(), 17, 0);
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                (
                    start..end,
                    pseudo,
                    self.ipv6_zero_checksum,
                    src,
                    dst,
                    ip.ecn(),
                )
            }
            _ => return Err(unsupported("an outer EtherType other than IPv4 or IPv6")),
        };
        // The IP views proved both ends inside the frame and start <= end.
        let udp_bytes = frame.get(udp_range.clone()).unwrap_or_default();
        let udp = UdpPacket::new_checked(udp_bytes)?;
        if udp.dst_port() != self.port {
            return Err(WireError::BadField {
                header: HEADER,
                field: "udp dst port",
                value: udp.dst_port().into(),
                bound: "the configured VXLAN port",
            });
        }
        let pseudo_sum = checksum::combine(&[pseudo_no_len, udp.length()]);
        UdpRepr::parse(&udp, pseudo_sum, self.csum, zero)?;
        let vxlan = VxlanRepr::parse(&VxlanPacket::new_checked(udp.payload())?)?;
        let inner_start = udp_range.start + udp::HEADER_LEN + vxlan::HEADER_LEN;
        let inner_end = udp_range.start + usize::from(udp.length());
        let inner_len = inner_end.saturating_sub(inner_start);
        if inner_len < ethernet::HEADER_LEN {
            return Err(WireError::Truncated {
                header: "vxlan inner frame",
                need: ethernet::HEADER_LEN,
                len: inner_len,
            });
        }
        Ok(Decapped {
            vni: vxlan.vni,
            src_ip,
            dst_ip,
            src_port: udp.src_port(),
            outer_ecn,
            inner: inner_start..inner_end,
        })
    }
}

/// [`Decapper::new`]`(port).decap(frame)`: checksums verified, strict over IPv6.
pub fn decap(frame: &[u8], port: u16) -> Result<Decapped> {
    Decapper::new(port).decap(frame)
}

fn unsupported(what: &'static str) -> WireError {
    WireError::Unsupported {
        header: HEADER,
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encap::{PacketFields, VxlanEncap, MAX_OVERHEAD};
    use crate::wire::vlan::{push_tag, VlanRepr};
    use crate::wire::vxlan::VXLAN_PORT;
    use crate::wire::{MacAddr, VlanId};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn encap(src: IpAddr, dst: IpAddr, vni: u32) -> VxlanEncap {
        VxlanEncap {
            outer_src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            outer_dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            src,
            dst,
            dst_port: VXLAN_PORT,
            vni: Vni::new(vni).unwrap(),
            ttl: 64,
            dscp: 0,
        }
    }

    fn v4() -> VxlanEncap {
        encap(
            Ipv4Addr::new(192, 0, 2, 1).into(),
            Ipv4Addr::new(192, 0, 2, 2).into(),
            42,
        )
    }

    fn v6() -> VxlanEncap {
        encap(Ipv6Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into(), 7)
    }

    /// `inner` encapsulated with `encap`: the whole buffer, starting with the outer headers.
    fn encapsulated(encap: &VxlanEncap, inner: &[u8]) -> Vec<u8> {
        let overhead = encap.overhead();
        let mut buf = vec![0u8; overhead + inner.len()];
        buf[overhead..].copy_from_slice(inner);
        let fields = PacketFields::from_flow_hash(0x1234_5678);
        assert_eq!(encap.write(&mut buf, overhead, inner.len(), fields), Ok(0));
        buf
    }

    /// A 60-byte inner frame built by hand: broadcast, 52:54:00:00:00:01, ARP, then filler.
    fn inner_frame() -> Vec<u8> {
        let mut inner = vec![0xffu8; 6];
        inner.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06]);
        inner.resize(60, 0xab);
        inner
    }

    #[test]
    fn decaps_ipv4_and_ipv6() {
        for encap in [v4(), v6()] {
            let frame = encapsulated(&encap, &inner_frame());
            let got = decap(&frame, VXLAN_PORT).unwrap();
            assert_eq!(got.vni, encap.vni);
            assert_eq!((got.src_ip, got.dst_ip), (encap.src, encap.dst));
            assert_eq!(got.inner, encap.overhead()..frame.len());
            assert_eq!(&frame[got.inner], &inner_frame()[..]);
        }
    }

    #[test]
    fn accepts_tagged_underlay_and_padding() {
        let inner = inner_frame();
        let mut frame = vec![0u8; 4];
        frame.extend_from_slice(&encapsulated(&v4(), &inner));
        let len = frame.len() - 4;
        let tag = VlanRepr::c_tag(Some(VlanId::new(10).unwrap()), 0);
        assert_eq!(push_tag(&mut frame, 4, len, tag), Ok(0));
        frame.extend_from_slice(&[0, 0, 0]);
        let got = decap(&frame, VXLAN_PORT).unwrap();
        assert_eq!(&frame[got.inner], &inner[..]);
    }

    #[test]
    fn refuses_what_is_not_ours() {
        let good = encapsulated(&v4(), &inner_frame());
        assert!(matches!(
            decap(&good, 4790),
            Err(WireError::BadField {
                field: "udp dst port",
                value: 4789,
                ..
            })
        ));
        // I flag cleared (outer UDP checksum is 0 over IPv4, so nothing else changes).
        let mut no_i = good.clone();
        no_i[42] = 0;
        assert!(matches!(
            decap(&no_i, VXLAN_PORT),
            Err(WireError::BadField {
                header: "vxlan",
                ..
            })
        ));
        // IPv4 header checksum broken.
        let mut bad_ip = good.clone();
        bad_ip[22] ^= 1;
        assert_eq!(
            decap(&bad_ip, VXLAN_PORT),
            Err(WireError::BadChecksum { header: "ipv4" })
        );
        // Inner frame shorter than an Ethernet header.
        let short = encapsulated(&v4(), &inner_frame()[..13]);
        assert!(matches!(
            decap(&short, VXLAN_PORT),
            Err(WireError::Truncated {
                header: "vxlan inner frame",
                ..
            })
        ));
        // Not IP.
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(matches!(
            decap(&arp, VXLAN_PORT),
            Err(WireError::Unsupported { .. })
        ));
    }

    #[test]
    fn udp_checksum_rules() {
        let mut frame = encapsulated(&v6(), &inner_frame());
        // Corrupt the inner frame: the IPv6 UDP checksum catches it unless told to skip.
        frame[80] ^= 0xff;
        assert_eq!(
            decap(&frame, VXLAN_PORT),
            Err(WireError::BadChecksum { header: "udp" })
        );
        let lenient = Decapper {
            csum: Csum::Ignore,
            ..Decapper::new(VXLAN_PORT)
        };
        assert!(lenient.decap(&frame).is_ok());
        // A zero checksum over IPv6 is refused by default and accepted on request (RFC 6935).
        frame[80] ^= 0xff;
        frame[60..62].copy_from_slice(&[0, 0]);
        assert!(decap(&frame, VXLAN_PORT).is_err());
        let zero_ok = Decapper {
            ipv6_zero_checksum: ZeroChecksum::Absent,
            ..Decapper::new(VXLAN_PORT)
        };
        assert!(zero_ok.decap(&frame).is_ok());
        // Over IPv4 a non-zero checksum is verified.
        let mut frame = encapsulated(&v4(), &inner_frame());
        frame[40..42].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(
            decap(&frame, VXLAN_PORT),
            Err(WireError::BadChecksum { header: "udp" })
        );
    }

    #[test]
    fn refuses_fragments() {
        let mut frame = encapsulated(&v4(), &inner_frame());
        // Set MF and fix the header checksum so only the fragment check can fail.
        frame[20] |= 0x20;
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..34]);
        ip.fill_checksum();
        assert!(matches!(
            decap(&frame, VXLAN_PORT),
            Err(WireError::Unsupported { .. })
        ));
    }

    fn any_ip(v6: bool, bits: u128) -> IpAddr {
        if v6 {
            Ipv6Addr::from(bits).into()
        } else {
            Ipv4Addr::from(bits as u32).into()
        }
    }

    proptest! {
        #[test]
        fn encap_then_decap(
            use_v6 in any::<bool>(),
            src in any::<u128>(),
            dst in any::<u128>(),
            vni in 0u32..=Vni::MAX,
            hash in any::<u32>(),
            ident in any::<u16>(),
            inner in proptest::collection::vec(any::<u8>(), 14..200),
        ) {
            let encap = encap(any_ip(use_v6, src), any_ip(use_v6, dst), vni);
            let mut buf = vec![0u8; MAX_OVERHEAD + inner.len()];
            buf[MAX_OVERHEAD..].copy_from_slice(&inner);
            let fields = PacketFields { ipv4_ident: ident, ..PacketFields::from_flow_hash(hash) };
            let start = encap.write(&mut buf, MAX_OVERHEAD, inner.len(), fields).unwrap();
            let got = decap(&buf[start..], VXLAN_PORT).unwrap();
            prop_assert_eq!(got.vni.get(), vni);
            prop_assert_eq!(got.src_ip, encap.src);
            prop_assert_eq!(got.src_port, fields.src_port);
            prop_assert_eq!(&buf[start..][got.inner], &inner[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..160),
            use_v6 in any::<bool>(),
        ) {
            // Half the cases start from valid outer headers so the deeper checks are reached.
            if bytes.len() > 80 && bytes[0] & 1 == 0 {
                let encap = if use_v6 { v6() } else { v4() };
                let overhead = encap.overhead();
                let len = bytes.len() - overhead;
                let _ = encap.write(&mut bytes, overhead, len, PacketFields::default());
                let flip = usize::from(bytes[1]) % bytes.len();
                bytes[flip] ^= bytes[2] | 1;
            }
            let lenient = Decapper {
                csum: Csum::Ignore,
                ipv6_zero_checksum: ZeroChecksum::Absent,
                ..Decapper::new(VXLAN_PORT)
            };
            for decapper in [Decapper::new(VXLAN_PORT), lenient] {
                if let Ok(got) = decapper.decap(&bytes) {
                    prop_assert!(got.inner.start + 14 <= got.inner.end);
                    prop_assert!(got.inner.end <= bytes.len());
                }
            }
        }
    }
}
