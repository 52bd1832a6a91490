//! Segmentation checked against an independent reference: the segments' payloads concatenate to
//! the original, none exceeds `gso_size`, and every IPv4 header checksum and L4 checksum verifies
//! when recomputed from scratch (pseudo-header assembled byte by byte in `testframe`).

use proptest::prelude::*;

use super::*;
use crate::offload::csum::complete_csum;
use crate::offload::header::GsoType;
use crate::offload::testframe::{
    be16, be32, build, gso_hdr, ipv4_header_verifies, l4_verifies, pseudo_sum, Built, Spec,
};
use crate::offload::validate::{validate, TxOffload, TxOffloadCaps};

const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const CWR: u8 = 0x80;

fn validated(built: &Built, gso_type: GsoType, gso_size: u16) -> Gso {
    let hdr = gso_hdr(built, gso_type, gso_size);
    match validate(&hdr, &built.frame, &TxOffloadCaps::ALL) {
        Ok(TxOffload::Gso(gso)) => gso,
        other => panic!("{gso_type:?} gso_size {gso_size}: {other:?}"),
    }
}

/// Checks TSO/USO segments of `built` against the original; returns the segment count.
fn check_l4_segments(built: &Built, gso_size: u16, csum: SegmentCsum) -> usize {
    let tcp = built.spec.tcp;
    let ip = built.spec.ip;
    let gso_type = match (tcp, ip) {
        (true, IpVersion::V4) => GsoType::TcpV4,
        (true, IpVersion::V6) => GsoType::TcpV6,
        (false, _) => GsoType::UdpL4,
    };
    let gso = validated(built, gso_type, gso_size);
    let mut segmenter = Segmenter::new();
    let segments = segmenter.segment(&built.frame, &gso, csum).unwrap();
    assert_eq!(segments.len(), usize::from(gso.segments()));
    let (l3, l4, headers_len) = (built.l3, built.l4, built.headers_len);
    let original = &built.frame;
    let protocol = if tcp { 6 } else { 17 };
    let count = segments.len();
    let mut payload = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == count;
        let seg_payload = &segment[headers_len..];
        assert!(seg_payload.len() <= usize::from(gso_size));
        if !last {
            assert_eq!(seg_payload.len(), usize::from(gso_size));
        }
        // L2 is copied unchanged, VLAN tag included.
        assert_eq!(segment[..l3], original[..l3]);
        match ip {
            IpVersion::V4 => {
                assert_eq!(usize::from(be16(segment, l3 + 2)), segment.len() - l3);
                let ident = be16(original, l3 + 4).wrapping_add(index as u16);
                assert_eq!(be16(segment, l3 + 4), ident, "IP ids are consecutive");
                assert!(ipv4_header_verifies(segment, l3));
            }
            IpVersion::V6 => {
                assert_eq!(usize::from(be16(segment, l3 + 4)), segment.len() - l3 - 40);
            }
        }
        if tcp {
            let seq = be32(original, l4 + 4).wrapping_add(payload.len() as u32);
            assert_eq!(
                be32(segment, l4 + 4),
                seq,
                "sequence numbers advance by payload"
            );
            let flags = original[l4 + 13];
            let mut expected = flags;
            if !last {
                expected &= !(FIN | PSH);
            }
            if index > 0 {
                expected &= !CWR;
            }
            assert_eq!(segment[l4 + 13], expected, "flags of segment {index}");
        } else {
            assert_eq!(usize::from(be16(segment, l4 + 4)), segment.len() - l4);
        }
        let field = l4 + if tcp { 16 } else { 6 };
        match csum {
            SegmentCsum::Full => {
                assert!(l4_verifies(segment, l3, l4, ip, protocol));
                assert_ne!(be16(segment, field), 0);
            }
            SegmentCsum::Partial => {
                let pseudo = pseudo_sum(segment, l3, ip, protocol, segment.len() - l4);
                assert_eq!(be16(segment, field), pseudo);
                let mut completed = segment.to_vec();
                complete_csum(&mut completed, gso.csum()).unwrap();
                assert!(l4_verifies(&completed, l3, l4, ip, protocol));
            }
        }
        payload.extend_from_slice(seg_payload);
    }
    assert_eq!(payload, original[headers_len..], "payloads concatenate");
    let hdr = segments.virtio_hdr();
    assert_eq!(hdr.needs_csum(), csum == SegmentCsum::Partial);
    assert_eq!(hdr.gso_type, GsoType::NONE);
    count
}

fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

#[test]
fn tso4_three_segments() {
    let mut spec = Spec::new(IpVersion::V4, true, patterned(3000));
    spec.tcp_flags = FIN | PSH | ACK | CWR;
    spec.ident = 0xffff; // the id wraps
    spec.seq = u32::MAX - 100; // the sequence number wraps
    let built = build(&spec);
    assert_eq!(check_l4_segments(&built, 1448, SegmentCsum::Full), 3);
    assert_eq!(check_l4_segments(&built, 1448, SegmentCsum::Partial), 3);
}

#[test]
fn tso6_with_vlan_and_options() {
    let mut spec = Spec::new(IpVersion::V6, true, patterned(4000));
    spec.vlan = true;
    spec.tcp_options = 12;
    let built = build(&spec);
    assert_eq!(check_l4_segments(&built, 1000, SegmentCsum::Full), 4);
}

#[test]
fn uso_over_both_ip_versions() {
    for ip in [IpVersion::V4, IpVersion::V6] {
        let built = build(&Spec::new(ip, false, patterned(2500)));
        assert_eq!(check_l4_segments(&built, 1200, SegmentCsum::Full), 3);
        assert_eq!(check_l4_segments(&built, 1200, SegmentCsum::Partial), 3);
    }
}

/// Reassembles UFO fragments and checks offsets, flags, lengths and the datagram checksum.
fn check_fragments(built: &Built, gso_size: u16) -> usize {
    let gso = validated(built, GsoType::Udp, gso_size);
    let mut segmenter = Segmenter::new().with_fragment_id_seed(0x0102_0304);
    let segments = segmenter
        .segment(&built.frame, &gso, SegmentCsum::Full)
        .unwrap();
    let (l3, l4) = (built.l3, built.l4);
    let ip = built.spec.ip;
    let unit = usize::from(gso_size & !7);
    let count = segments.len();
    let mut datagram = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let more = index + 1 < count;
        assert_eq!(segment[..l3], built.frame[..l3]);
        let piece = match (ip, count) {
            (_, 1) => &segment[l4..],
            (IpVersion::V4, _) => {
                assert!(ipv4_header_verifies(segment, l3));
                assert_eq!(usize::from(be16(segment, l3 + 2)), segment.len() - l3);
                assert_eq!(
                    be16(segment, l3 + 4),
                    built.spec.ident,
                    "one datagram, one id"
                );
                let word = be16(segment, l3 + 6);
                assert_eq!(word & 0x2000 != 0, more, "MF");
                assert_eq!(word & 0x4000, 0, "DF cleared");
                assert_eq!(usize::from(word & 0x1fff) * 8, datagram.len());
                &segment[l4..]
            }
            (IpVersion::V6, _) => {
                assert_eq!(segment[l3 + 6], 44, "next header is the fragment header");
                assert_eq!(usize::from(be16(segment, l3 + 4)), segment.len() - l3 - 40);
                let fragment = &segment[l3 + 40..l3 + 48];
                assert_eq!(fragment[0], 17);
                let word = be16(fragment, 2);
                assert_eq!(word & 1 != 0, more, "M");
                assert_eq!(usize::from(word & !7), datagram.len());
                assert_eq!(be32(fragment, 4), 0x0102_0304);
                &segment[l3 + 48..]
            }
        };
        if more {
            assert_eq!(piece.len(), unit);
        }
        datagram.extend_from_slice(piece);
    }
    // The reassembled datagram is the original with its checksum completed.
    let original = &built.frame[l4..];
    assert_eq!(datagram.len(), original.len());
    assert_eq!(datagram[..6], original[..6]);
    assert_eq!(datagram[8..], original[8..]);
    let mut reassembled = built.frame[..l4].to_vec();
    reassembled.extend_from_slice(&datagram);
    assert!(l4_verifies(&reassembled, l3, l4, ip, 17));
    count
}

#[test]
fn ufo4_fragments_in_8_byte_units() {
    let built = build(&Spec::new(IpVersion::V4, false, patterned(4000)));
    // gso_size 1477 cuts at 1472 (8-byte unit): 4008 bytes of UDP -> 3 fragments.
    assert_eq!(check_fragments(&built, 1477), 3);
    assert_eq!(check_fragments(&built, 4008), 1);
}

#[test]
fn ufo6_inserts_a_fragment_header() {
    let mut spec = Spec::new(IpVersion::V6, false, patterned(3000));
    spec.vlan = true;
    let built = build(&spec);
    assert_eq!(check_fragments(&built, 1448), 3);
}

#[test]
fn ipv6_extension_headers_are_unsupported() {
    let mut spec = Spec::new(IpVersion::V6, true, patterned(3000));
    spec.ipv6_hop_by_hop = true;
    let built = build(&spec);
    let gso = validated(&built, GsoType::TcpV6, 1000);
    assert_eq!(
        Segmenter::new()
            .segment(&built.frame, &gso, SegmentCsum::Full)
            .map(|segments| segments.len()),
        Err(OffloadError::Unsupported {
            what: "IPv6 extension headers"
        })
    );
}

#[test]
fn another_frame_is_refused() {
    let built = build(&Spec::new(IpVersion::V4, true, patterned(3000)));
    let gso = validated(&built, GsoType::TcpV4, 1000);
    let shorter = &built.frame[..built.frame.len() - 1];
    assert_eq!(
        Segmenter::new()
            .segment(shorter, &gso, SegmentCsum::Full)
            .map(|segments| segments.len()),
        Err(OffloadError::FrameMismatch {
            need: built.frame.len(),
            frame_len: built.frame.len() - 1
        })
    );
}

#[test]
fn steady_state_does_not_allocate() {
    let built = build(&Spec::new(IpVersion::V4, true, patterned(20000)));
    let gso = validated(&built, GsoType::TcpV4, 1448);
    let mut segmenter = Segmenter::new();
    segmenter
        .segment(&built.frame, &gso, SegmentCsum::Full)
        .unwrap();
    let (out, ranges) = (segmenter.out.as_ptr(), segmenter.ranges.as_ptr());
    let capacity = (segmenter.out.capacity(), segmenter.ranges.capacity());
    for _ in 0..3 {
        segmenter
            .segment(&built.frame, &gso, SegmentCsum::Full)
            .unwrap();
    }
    assert_eq!(
        (segmenter.out.capacity(), segmenter.ranges.capacity()),
        capacity
    );
    assert_eq!(
        (segmenter.out.as_ptr(), segmenter.ranges.as_ptr()),
        (out, ranges)
    );
}

/// MSS values that stress the edges: 1, small, and typical.
fn gso_sizes() -> impl Strategy<Value = u16> {
    prop_oneof![Just(1u16), 1u16..64, 64u16..1500]
}

/// Payload lengths around `gso_size`: within it, exact multiples, and arbitrary, bounded so
/// that MSS 1 stays cheap.
fn payload_len(gso_size: u16) -> impl Strategy<Value = usize> {
    let gso_size = usize::from(gso_size);
    let cap = (gso_size * 40).min(6000);
    prop_oneof![
        0..=gso_size,
        (1..=cap / gso_size).prop_map(move |k| k * gso_size),
        0..=cap,
    ]
}

proptest! {
    #[test]
    fn tso_and_uso_segments_match_the_reference(
        (gso_size, len) in gso_sizes().prop_flat_map(|m| (Just(m), payload_len(m))),
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        vlan in any::<bool>(),
        flags in prop::sample::select(vec![ACK, ACK | PSH, ACK | FIN | PSH, ACK | CWR, 0xff]),
        seq in any::<u32>(),
        ident in any::<u16>(),
        partial in any::<bool>(),
    ) {
        let ip = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let mut spec = Spec::new(ip, tcp, patterned(len));
        spec.vlan = vlan;
        spec.tcp_flags = flags;
        spec.seq = seq;
        spec.ident = ident;
        let built = build(&spec);
        let csum = if partial { SegmentCsum::Partial } else { SegmentCsum::Full };
        let count = check_l4_segments(&built, gso_size, csum);
        prop_assert_eq!(count, len.div_ceil(usize::from(gso_size)).max(1));
    }

    #[test]
    fn ufo_fragments_reassemble(
        units in 1u16..200,
        extra in 0u16..8,
        len in 0usize..5000,
        v6 in any::<bool>(),
    ) {
        let ip = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let built = build(&Spec::new(ip, false, patterned(len)));
        let gso_size = units * 8 + extra;
        let count = check_fragments(&built, gso_size);
        let l4_len = len + 8;
        let expected = if l4_len <= usize::from(gso_size) {
            1
        } else {
            l4_len.div_ceil(usize::from(units) * 8)
        };
        prop_assert_eq!(count, expected);
    }
}
