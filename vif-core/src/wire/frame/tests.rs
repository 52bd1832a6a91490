//! Tests for `parse_frame`: frames built from reprs and header specs, malformed lengths, and
//! arbitrary or mutated bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::ids::VlanId;
use crate::mac::MacAddr;
use crate::wire::ethernet::{EthernetFrame, EthernetRepr};
use crate::wire::ipv4::Ipv4Repr;
use crate::wire::ipv6::{Ipv6Fragment, Ipv6Packet as V6};
use crate::wire::ipv6::{Ipv6FragmentHeader, Ipv6FragmentRepr, Ipv6Repr};
use crate::wire::Csum;
use proptest::prelude::*;

/// The L4 header a test frame carries.
#[derive(Debug, Clone, Copy)]
enum L4Spec {
    /// TCP with this many 32-bit option words (data offset 5 + words).
    Tcp(u8),
    Udp,
    Icmp,
    Sctp,
    /// A protocol `parse_frame` does not know (GRE).
    Unknown,
}

impl L4Spec {
    fn protocol(self, v6: bool) -> IpProtocol {
        match self {
            L4Spec::Tcp(_) => IpProtocol::TCP,
            L4Spec::Udp => IpProtocol::UDP,
            L4Spec::Icmp if v6 => IpProtocol::ICMPV6,
            L4Spec::Icmp => IpProtocol::ICMP,
            L4Spec::Sctp => IpProtocol::SCTP,
            L4Spec::Unknown => IpProtocol::GRE,
        }
    }

    /// The header bytes, with the UDP length covering `payload_len` bytes of payload.
    fn header(self, payload_len: usize) -> Vec<u8> {
        match self {
            L4Spec::Tcp(words) => {
                let mut tcp = vec![0u8; 20 + 4 * usize::from(words)];
                tcp[..4].copy_from_slice(&[0x04, 0xd2, 0x00, 0x50]); // 1234 -> 80
                tcp[12] = (5 + words) << 4;
                tcp[13] = 0x02; // SYN
                for option in tcp[20..].iter_mut() {
                    *option = 1; // NOP padding is a valid option list
                }
                tcp
            }
            L4Spec::Udp => {
                let len = (8 + payload_len) as u16;
                let mut udp = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0]; // 12345 -> 53
                udp[4..6].copy_from_slice(&len.to_be_bytes());
                udp
            }
            L4Spec::Icmp => vec![8, 0, 0, 0, 0x12, 0x34, 0, 1],
            L4Spec::Sctp => vec![0x0b, 0x59, 0x0b, 0x59, 0, 0, 0, 1, 0, 0, 0, 0],
            L4Spec::Unknown => vec![0, 0, 0x08, 0x00],
        }
    }
}

const SRC_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const DST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 0xef]);

/// Ethernet header (from `EthernetRepr`), then the tags, then `ethertype` and `l3`.
fn ethernet(tags: &[VlanRepr], ethertype: EtherType, l3: &[u8]) -> Vec<u8> {
    let first = tags.first().map_or(ethertype, |tag| tag.tpid);
    let mut frame = vec![0u8; 14];
    EthernetRepr {
        src_addr: SRC_MAC,
        dst_addr: DST_MAC,
        ethertype: first,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]))
    .unwrap();
    frame.truncate(12);
    for tag in tags {
        frame.extend_from_slice(&tag.to_bytes());
    }
    frame.extend_from_slice(&ethertype.0.to_be_bytes());
    frame.extend_from_slice(l3);
    frame
}

/// An IPv4 packet from `Ipv4Repr` with `option_words` NOP words, carrying `upper`.
fn ipv4(
    protocol: IpProtocol,
    option_words: usize,
    frag_offset: u16,
    more: bool,
    upper: &[u8],
) -> Vec<u8> {
    let header_len = 20 + 4 * option_words;
    let mut packet = vec![0u8; header_len + upper.len()];
    let repr = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        protocol,
        payload_len: (header_len - 20 + upper.len()) as u16,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 7,
        dont_frag: false,
        more_frags: more,
        frag_offset,
    };
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    repr.emit(&mut view, Csum::Ignore).unwrap();
    // Ipv4Repr writes a 20-byte header; grow IHL over the NOP options.
    view.set_header_len(header_len);
    view.options_mut().fill(1);
    view.fill_checksum();
    packet[header_len..].copy_from_slice(upper);
    packet
}

/// An IPv6 packet from `Ipv6Repr`, with `ext_headers` destination-options headers and an
/// optional fragment header before `upper`.
fn ipv6(
    protocol: IpProtocol,
    ext_headers: usize,
    fragment: Option<Ipv6Fragment>,
    upper: &[u8],
) -> Vec<u8> {
    let mut chain = Vec::new();
    let mut next = protocol;
    if let Some(fragment) = fragment {
        let mut header = [0u8; 8];
        Ipv6FragmentRepr {
            next_header: next,
            fragment,
        }
        .emit(&mut Ipv6FragmentHeader::new_unchecked(&mut header[..]))
        .unwrap();
        chain.splice(0..0, header);
        next = IpProtocol::IPV6_FRAG;
    }
    for _ in 0..ext_headers {
        // Destination options, 8 bytes, one PadN option (RFC 8200 § 4.2).
        chain.splice(0..0, [next.0, 0, 1, 4, 0, 0, 0, 0]);
        next = IpProtocol::IPV6_OPTS;
    }
    let repr = Ipv6Repr {
        src_addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        dst_addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
        next_header: next,
        payload_len: (chain.len() + upper.len()) as u16,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    };
    let mut packet = vec![0u8; 40];
    repr.emit(&mut V6::new_unchecked(&mut packet[..])).unwrap();
    packet.extend_from_slice(&chain);
    packet.extend_from_slice(upper);
    packet
}

fn c_tag(vid: u16) -> VlanRepr {
    VlanRepr::c_tag(VlanId::new(vid).ok(), 0)
}

#[test]
fn tcp_over_qinq_ipv4_with_options() {
    let tcp = L4Spec::Tcp(3).header(0);
    let l3 = ipv4(IpProtocol::TCP, 2, 0, false, &tcp);
    let tags = [VlanRepr::s_tag(VlanId::new(100).ok(), 0), c_tag(200)];
    let mut frame = ethernet(&tags, EtherType::IPV4, &l3);
    frame.extend_from_slice(&[0; 6]); // Ethernet padding
    let layout = parse_frame(&frame).unwrap();
    assert_eq!(layout.l2_len, 22);
    assert_eq!(layout.s_tag.and_then(|t| t.vid).map(VlanId::get), Some(100));
    assert_eq!(layout.c_tag.and_then(|t| t.vid).map(VlanId::get), Some(200));
    assert_eq!(layout.ethertype, EtherType::IPV4);
    assert_eq!(
        layout.l3,
        L3 {
            kind: L3Kind::Ipv4,
            offset: 22,
            header_len: 28,
            end: 22 + 28 + 32,
            protocol: Some(IpProtocol::TCP),
            frag: IpFrag::No,
        }
    );
    let expected = L4 {
        proto: IpProtocol::TCP,
        offset: 50,
        header_len: 32,
    };
    assert_eq!(layout.l4, Some(expected));
    assert_eq!(layout.payload_offset, 82);
    assert_eq!((layout.l4_len(), layout.payload_len()), (Some(32), 0));
}

#[test]
fn udp_over_ipv6_extension_headers() {
    let udp = L4Spec::Udp.header(5);
    let mut upper = udp.clone();
    upper.extend_from_slice(b"hello");
    let frame = ethernet(
        &[c_tag(5)],
        EtherType::IPV6,
        &ipv6(IpProtocol::UDP, 2, None, &upper),
    );
    let layout = parse_frame(&frame).unwrap();
    assert_eq!(
        (layout.l3.kind, layout.l3.offset, layout.l3.header_len),
        (L3Kind::Ipv6, 18, 56)
    );
    let l4 = layout.l4.unwrap();
    assert_eq!(
        (l4.proto, l4.offset, l4.header_len),
        (IpProtocol::UDP, 74, 8)
    );
    assert_eq!(layout.payload_offset, 82);
    assert_eq!(layout.payload_len(), 5);
}

#[test]
fn fragments() {
    // IPv4 first fragment: L4 parsed; UDP length is not checked against the fragment.
    let udp = L4Spec::Udp.header(1000);
    let first = ethernet(
        &[],
        EtherType::IPV4,
        &ipv4(IpProtocol::UDP, 0, 0, true, &udp),
    );
    let layout = parse_frame(&first).unwrap();
    assert_eq!(layout.l3.frag, IpFrag::First);
    assert_eq!(layout.l4.map(|l4| l4.offset), Some(34));
    // IPv4 later fragment: no L4, payload right after the IP header.
    let later = ethernet(
        &[],
        EtherType::IPV4,
        &ipv4(IpProtocol::UDP, 0, 1480, false, &[0xff; 8]),
    );
    let layout = parse_frame(&later).unwrap();
    assert_eq!(
        (layout.l3.frag, layout.l4, layout.payload_offset),
        (IpFrag::Later, None, 34)
    );
    // IPv6 later fragment.
    let fragment = Ipv6Fragment {
        offset: 1448,
        more_frags: true,
        ident: 9,
    };
    let frame = ethernet(
        &[],
        EtherType::IPV6,
        &ipv6(IpProtocol::TCP, 1, Some(fragment), &[0; 16]),
    );
    let layout = parse_frame(&frame).unwrap();
    assert_eq!(layout.l3.frag, IpFrag::Later);
    assert_eq!(layout.l3.protocol, Some(IpProtocol::TCP));
    assert_eq!((layout.l4, layout.payload_offset), (None, 14 + 40 + 8 + 8));
    // IPv6 atomic fragment (offset 0, no M, RFC 6946) counts as unfragmented.
    let atomic = Ipv6Fragment {
        offset: 0,
        more_frags: false,
        ident: 9,
    };
    let tcp = L4Spec::Tcp(0).header(0);
    let frame = ethernet(
        &[],
        EtherType::IPV6,
        &ipv6(IpProtocol::TCP, 0, Some(atomic), &tcp),
    );
    let layout = parse_frame(&frame).unwrap();
    assert_eq!(layout.l3.frag, IpFrag::No);
    assert_eq!(layout.l4.map(|l4| l4.offset), Some(14 + 48));
}

#[test]
fn arp_and_unknown_ethertypes() {
    // RFC 826 request, Ethernet/IPv4: who has 10.0.0.2, tell 10.0.0.1.
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    arp.extend_from_slice(&SRC_MAC.0);
    arp.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    arp.extend_from_slice(&[0; 18]); // padding to 60 bytes
    let layout = parse_frame(&ethernet(&[], EtherType::ARP, &arp)).unwrap();
    assert_eq!(
        (layout.l3.kind, layout.l3.header_len, layout.l3.end),
        (L3Kind::Arp, 28, 42)
    );
    assert_eq!((layout.l4, layout.payload_offset), (None, 42));
    // LLDP is not an error: the layout stops after L2.
    let layout = parse_frame(&ethernet(&[], EtherType(0x88cc), &[1, 2, 3])).unwrap();
    assert_eq!((layout.l3.kind, layout.payload_offset), (L3Kind::Other, 14));
    // Nor is an unknown IP protocol, or ESP at the end of an IPv6 chain.
    let gre = ethernet(
        &[],
        EtherType::IPV4,
        &ipv4(IpProtocol::GRE, 0, 0, false, &[0; 4]),
    );
    assert_eq!(parse_frame(&gre).unwrap().l4, None);
    let esp = ethernet(
        &[],
        EtherType::IPV6,
        &ipv6(IpProtocol::ESP, 1, None, &[0; 16]),
    );
    let layout = parse_frame(&esp).unwrap();
    assert_eq!(
        (layout.l3.protocol, layout.l4),
        (Some(IpProtocol::ESP), None)
    );
}

/// Sets byte `at` of a frame, then expects `parse_frame` to fail.
fn rejects(mut frame: Vec<u8>, at: usize, value: u8) {
    frame[at] = value;
    assert!(
        parse_frame(&frame).is_err(),
        "byte {at} = {value:#x} accepted"
    );
}

#[test]
fn malformed_lengths_are_rejected() {
    let tcp = L4Spec::Tcp(0).header(0);
    let v4 = ethernet(
        &[],
        EtherType::IPV4,
        &ipv4(IpProtocol::TCP, 0, 0, false, &tcp),
    );
    assert!(parse_frame(&v4).is_ok());
    rejects(v4.clone(), 14, 0x44); // IHL 4
    rejects(v4.clone(), 14, 0x4f); // IHL 15: header past the packet
    rejects(v4.clone(), 17, 41); // total length past the frame
    rejects(v4.clone(), 17, 19); // total length below the header
    rejects(v4.clone(), 34 + 12, 0x40); // TCP data offset 4
    rejects(v4.clone(), 34 + 12, 0x60); // TCP data offset 6: past the packet
    let udp = L4Spec::Udp.header(0);
    let v4_udp = ethernet(
        &[],
        EtherType::IPV4,
        &ipv4(IpProtocol::UDP, 0, 0, false, &udp),
    );
    rejects(v4_udp.clone(), 34 + 5, 7); // UDP length below 8
    rejects(v4_udp, 34 + 5, 9); // UDP length past the IP payload
    let v6 = ethernet(&[], EtherType::IPV6, &ipv6(IpProtocol::TCP, 1, None, &tcp));
    assert!(parse_frame(&v6).is_ok());
    rejects(v6.clone(), 14 + 5, 29); // payload length past the frame
    rejects(v6.clone(), 14 + 40 + 1, 4); // extension header (40 bytes) walks off the payload
    rejects(v6, 14, 0x40); // version 4 in an IPv6 EtherType
    assert!(parse_frame(&v4[..13]).is_err());
    assert!(parse_frame(&v4[..33]).is_err());
}

#[test]
fn fragment_evasions_are_rejected() {
    // RFC 1858 § 3.1: a first fragment holding only 8 bytes of a TCP header.
    let tiny = ethernet(
        &[],
        EtherType::IPV4,
        &ipv4(IpProtocol::TCP, 0, 0, true, &[0; 8]),
    );
    assert!(matches!(
        parse_frame(&tiny),
        Err(WireError::Truncated { .. })
    ));
    // RFC 1858 § 3.2: a TCP fragment at offset 8.
    let overlap = ethernet(
        &[],
        EtherType::IPV4,
        &ipv4(IpProtocol::TCP, 0, 8, false, &[0; 12]),
    );
    assert!(parse_frame(&overlap).is_err());
    // RFC 7112: an IPv6 first fragment without the whole header chain.
    let first = Ipv6Fragment {
        offset: 0,
        more_frags: true,
        ident: 1,
    };
    let frame = ethernet(
        &[],
        EtherType::IPV6,
        &ipv6(IpProtocol::TCP, 0, Some(first), &[0; 12]),
    );
    assert!(parse_frame(&frame).is_err());
}

#[test]
fn third_vlan_tag_is_rejected() {
    let tags = [VlanRepr::s_tag(VlanId::new(1).ok(), 0), c_tag(2), c_tag(3)];
    assert!(parse_frame(&ethernet(&tags, EtherType::IPV4, &[0; 40])).is_err());
}

fn arb_l4() -> impl Strategy<Value = L4Spec> {
    prop_oneof![
        (0u8..=10).prop_map(L4Spec::Tcp),
        Just(L4Spec::Udp),
        Just(L4Spec::Icmp),
        Just(L4Spec::Sctp),
        Just(L4Spec::Unknown),
    ]
}

/// A valid frame from its parts, and the layout `parse_frame` must find.
fn build(
    tags: usize,
    v6: bool,
    ip_extra: usize,
    l4: L4Spec,
    payload_len: usize,
    padding: usize,
) -> (Vec<u8>, usize, usize, Option<usize>) {
    let header = l4.header(payload_len);
    let mut upper = header.clone();
    upper.resize(header.len() + payload_len, 0xab);
    let protocol = l4.protocol(v6);
    let (ethertype, l3) = if v6 {
        (EtherType::IPV6, ipv6(protocol, ip_extra % 4, None, &upper))
    } else {
        (EtherType::IPV4, ipv4(protocol, ip_extra, 0, false, &upper))
    };
    let stack = [VlanRepr::s_tag(VlanId::new(10).ok(), 3), c_tag(20)];
    let tags = &stack[2 - tags..];
    let mut frame = ethernet(tags, ethertype, &l3);
    frame.resize(frame.len() + padding, 0);
    let l2_len = 14 + 4 * tags.len();
    let l3_header = if v6 {
        40 + 8 * (ip_extra % 4)
    } else {
        20 + 4 * ip_extra
    };
    let known = !matches!(l4, L4Spec::Unknown);
    (frame, l2_len, l3_header, known.then_some(header.len()))
}

proptest! {
    #[test]
    fn finds_the_offsets_of_built_frames(
        tags in 0usize..=2, v6 in any::<bool>(), ip_extra in 0usize..=10, l4 in arb_l4(),
        payload_len in 0usize..64, padding in 0usize..16,
    ) {
        let (frame, l2_len, l3_header, l4_header) = build(tags, v6, ip_extra, l4, payload_len, padding);
        let layout = parse_frame(&frame).unwrap();
        prop_assert_eq!(layout.l2_len, l2_len);
        prop_assert_eq!(layout.l3.header_len, l3_header);
        prop_assert_eq!(layout.l3.end, frame.len() - padding);
        prop_assert_eq!(layout.l4.map(|l4| (l4.offset, l4.header_len)), l4_header.map(|h| (l2_len + l3_header, h)));
        if l4_header.is_some() {
            prop_assert_eq!(layout.payload_len(), payload_len);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(layout) = parse_frame(&bytes) {
            prop_assert!(layout.payload_offset <= layout.l3.end && layout.l3.end <= bytes.len());
        }
    }

    #[test]
    fn mutated_frames_never_panic_and_stay_inside(
        tags in 0usize..=2, v6 in any::<bool>(), ip_extra in 0usize..=10, l4 in arb_l4(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<proptest::sample::Index>(),
    ) {
        let (mut frame, ..) = build(tags, v6, ip_extra, l4, 8, 0);
        for (at, value) in edits {
            let at = at.index(frame.len());
            frame[at] = value;
        }
        frame.truncate(cut.index(frame.len() + 1));
        if let Ok(layout) = parse_frame(&frame) {
            prop_assert!(layout.l3.offset + layout.l3.header_len <= layout.l3.end);
            prop_assert!(layout.payload_offset <= layout.l3.end && layout.l3.end <= frame.len());
            if let Some(l4) = layout.l4 {
                prop_assert!(l4.offset + l4.header_len <= layout.l3.end);
            }
        }
    }
}
