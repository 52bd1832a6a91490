//! One test per refusal class of [`validate`], the accepted cases around each bound, and a
//! property that no header and no frame can make validation, completion or segmentation panic.

use proptest::prelude::*;

use super::*;
use crate::offload::csum::complete_csum;
use crate::offload::header::{VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM};
use crate::offload::segment::{SegmentCsum, Segmenter};
use crate::offload::testframe::{build, gso_hdr, Built, Spec};

const ALL: TxOffloadCaps = TxOffloadCaps::ALL;

fn tcp4(payload_len: usize) -> Built {
    build(&Spec::new(IpVersion::V4, true, vec![0x5a; payload_len]))
}

fn tso4(built: &Built, gso_size: u16) -> VirtioNetHdr {
    gso_hdr(built, GsoType::TcpV4, gso_size)
}

fn gso_of(offload: TxOffload) -> Gso {
    match offload {
        TxOffload::Gso(gso) => gso,
        other => panic!("expected GSO, got {other:?}"),
    }
}

#[test]
fn plain_frame_ignores_csum_fields() {
    // § 5.1.6.2.2: without NEEDS_CSUM the device must not use csum_start/csum_offset, and an
    // unknown flag bit (DATA_VALID is receive-only) is ignored.
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_DATA_VALID,
        csum_start: 9999,
        csum_offset: 9999,
        hdr_len: 9999,
        ..VirtioNetHdr::default()
    };
    assert_eq!(
        validate(&hdr, &[0; 60], &TxOffloadCaps::NONE),
        Ok(TxOffload::None)
    );
}

#[test]
fn partial_csum_is_accepted_inside_the_frame() {
    let built = tcp4(100);
    let mut hdr = tso4(&built, 0);
    hdr.gso_type = GsoType::NONE;
    assert_eq!(
        validate(&hdr, &built.frame, &ALL),
        Ok(TxOffload::Csum(CsumRange {
            start: 34,
            offset: 16
        }))
    );
}

#[test]
fn needs_csum_without_csum_feature() {
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        ..VirtioNetHdr::default()
    };
    let caps = TxOffloadCaps { csum: false, ..ALL };
    assert_eq!(
        validate(&hdr, &[0; 60], &caps),
        Err(OffloadError::NeedsCsumNotNegotiated)
    );
}

#[test]
fn csum_start_past_frame() {
    // CVE-2024-11614: csum_start beyond the packet.
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 60,
        ..VirtioNetHdr::default()
    };
    assert_eq!(
        validate(&hdr, &[0; 60], &ALL),
        Err(OffloadError::CsumStartPastFrame {
            csum_start: 60,
            frame_len: 60
        })
    );
}

#[test]
fn csum_field_past_frame() {
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 50,
        csum_offset: u16::MAX,
        ..VirtioNetHdr::default()
    };
    assert_eq!(
        validate(&hdr, &[0; 60], &ALL),
        Err(OffloadError::CsumFieldPastFrame {
            csum_start: 50,
            csum_offset: u16::MAX,
            frame_len: 60
        })
    );
    // The last two bytes are a valid field.
    let hdr = VirtioNetHdr {
        csum_offset: 8,
        ..hdr
    };
    assert!(validate(&hdr, &[0; 60], &ALL).is_ok());
}

#[test]
fn gso_csum_must_be_the_l4_checksum() {
    let built = tcp4(3000);
    let mut hdr = tso4(&built, 1448);
    hdr.csum_offset = 6; // UDP's field inside a TCP header
    assert_eq!(
        validate(&hdr, &built.frame, &ALL),
        Err(OffloadError::GsoCsumNotL4 {
            csum_start: 34,
            csum_offset: 6,
            l4_offset: 34,
            l4_csum_offset: 16
        })
    );
    let mut hdr = tso4(&built, 1448);
    hdr.csum_start = 14;
    assert!(matches!(
        validate(&hdr, &built.frame, &ALL),
        Err(OffloadError::GsoCsumNotL4 { csum_start: 14, .. })
    ));
}

#[test]
fn gso_type_undefined() {
    for gso_type in [2, 0x7f, 0x82] {
        let hdr = VirtioNetHdr {
            gso_type,
            ..VirtioNetHdr::default()
        };
        assert_eq!(
            validate(&hdr, &[0; 60], &ALL),
            Err(OffloadError::GsoTypeUndefined { gso_type })
        );
    }
}

#[test]
fn gso_type_not_negotiated() {
    let built = tcp4(3000);
    let cases = [
        (GsoType::TcpV4, "HOST_TSO4"),
        (GsoType::TcpV6, "HOST_TSO6"),
        (GsoType::Udp, "HOST_UFO"),
        (GsoType::UdpL4, "HOST_USO"),
    ];
    let caps = TxOffloadCaps {
        csum: true,
        ..TxOffloadCaps::NONE
    };
    for (gso_type, feature) in cases {
        let hdr = gso_hdr(&built, gso_type, 1448);
        assert_eq!(
            validate(&hdr, &built.frame, &caps),
            Err(OffloadError::GsoTypeNotNegotiated { gso_type, feature })
        );
    }
}

#[test]
fn ecn_not_negotiated_or_not_tcp() {
    let built = tcp4(3000);
    let mut hdr = tso4(&built, 1448);
    hdr.gso_type |= GsoType::ECN;
    let caps = TxOffloadCaps {
        host_ecn: false,
        ..ALL
    };
    assert_eq!(
        validate(&hdr, &built.frame, &caps),
        Err(OffloadError::EcnNotNegotiated)
    );
    assert!(gso_of(validate(&hdr, &built.frame, &ALL).unwrap()).ecn());
    let udp = build(&Spec::new(IpVersion::V4, false, vec![1; 3000]));
    let mut hdr = gso_hdr(&udp, GsoType::UdpL4, 1400);
    hdr.gso_type |= GsoType::ECN;
    assert_eq!(
        validate(&hdr, &udp.frame, &ALL),
        Err(OffloadError::EcnWithoutTcp {
            gso_type: GsoType::UdpL4
        })
    );
}

#[test]
fn cwr_in_the_tcp_header_counts_as_ecn() {
    let mut spec = Spec::new(IpVersion::V4, true, vec![0; 3000]);
    spec.tcp_flags |= TCP_FLAG_CWR;
    let built = build(&spec);
    let gso = gso_of(validate(&tso4(&built, 1448), &built.frame, &ALL).unwrap());
    assert!(gso.ecn());
}

#[test]
fn gso_without_needs_csum() {
    let built = tcp4(3000);
    let mut hdr = tso4(&built, 1448);
    hdr.flags = 0;
    assert_eq!(
        validate(&hdr, &built.frame, &ALL),
        Err(OffloadError::GsoWithoutNeedsCsum {
            gso_type: GsoType::TcpV4
        })
    );
}

#[test]
fn gso_size_zero() {
    let built = tcp4(3000);
    assert_eq!(
        validate(&tso4(&built, 0), &built.frame, &ALL),
        Err(OffloadError::GsoSizeZero {
            gso_type: GsoType::TcpV4
        })
    );
}

#[test]
fn ufo_gso_size_below_fragment_unit() {
    let udp = build(&Spec::new(IpVersion::V4, false, vec![1; 100]));
    assert_eq!(
        validate(&gso_hdr(&udp, GsoType::Udp, 7), &udp.frame, &ALL),
        Err(OffloadError::UfoGsoSizeBelowUnit {
            gso_size: 7,
            min: 8
        })
    );
    assert!(validate(&gso_hdr(&udp, GsoType::Udp, 8), &udp.frame, &ALL).is_ok());
}

#[test]
fn gso_type_must_match_the_frame() {
    let tcp6 = build(&Spec::new(IpVersion::V6, true, vec![0; 3000]));
    let udp4 = build(&Spec::new(IpVersion::V4, false, vec![0; 3000]));
    let tcp = tcp4(3000);
    let cases = [
        (&tcp6, GsoType::TcpV4, 0x86dd, Some(6)),
        (&udp4, GsoType::TcpV4, 0x0800, Some(17)),
        (&tcp, GsoType::TcpV6, 0x0800, Some(6)),
        (&tcp, GsoType::Udp, 0x0800, Some(6)),
        (&tcp6, GsoType::UdpL4, 0x86dd, Some(6)),
    ];
    for (built, gso_type, ethertype, ip_protocol) in cases {
        let hdr = gso_hdr(built, gso_type, 1000);
        assert_eq!(
            validate(&hdr, &built.frame, &ALL),
            Err(OffloadError::GsoProtocolMismatch {
                gso_type,
                ethertype,
                ip_protocol
            }),
            "{gso_type:?} on {ethertype:#x}/{ip_protocol:?}"
        );
    }
    // ARP is not IP at all.
    let mut arp = tcp.frame.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(
        validate(&tso4(&tcp, 1000), &arp, &ALL),
        Err(OffloadError::GsoProtocolMismatch {
            gso_type: GsoType::TcpV4,
            ethertype: 0x0806,
            ip_protocol: None
        })
    );
}

#[test]
fn gso_on_ipv4_fragment() {
    let mut built = tcp4(3000);
    built.frame[20] |= 0x20; // MF
    assert_eq!(
        validate(&tso4(&built, 1448), &built.frame, &ALL),
        Err(OffloadError::GsoOnFragment {
            frag: IpFrag::First
        })
    );
}

#[test]
fn hdr_len_is_a_hint_but_not_past_the_frame() {
    let built = tcp4(3000);
    let mut hdr = tso4(&built, 1448);
    hdr.hdr_len = (built.frame.len() + 1) as u16;
    assert_eq!(
        validate(&hdr, &built.frame, &ALL),
        Err(OffloadError::HdrLenPastFrame {
            hdr_len: hdr.hdr_len,
            frame_len: built.frame.len()
        })
    );
    // Smaller than the real headers (Linux accepts it), or zero: headers_len comes from the
    // frame either way.
    for hint in [0, 14, 54, 200] {
        hdr.hdr_len = hint;
        let gso = gso_of(validate(&hdr, &built.frame, &ALL).unwrap());
        assert_eq!(gso.headers_len(), 54);
    }
}

#[test]
fn headers_len_counts_tcp_options_and_vlan_tags() {
    let mut spec = Spec::new(IpVersion::V6, true, vec![0; 5000]);
    spec.vlan = true;
    spec.tcp_options = 12;
    let built = build(&spec);
    let gso = gso_of(validate(&gso_hdr(&built, GsoType::TcpV6, 1428), &built.frame, &ALL).unwrap());
    assert_eq!(
        (gso.l3_offset(), gso.l4_offset(), gso.headers_len()),
        (18, 58, 90)
    );
    assert_eq!(
        (gso.kind(), gso.ip(), gso.segments()),
        (GsoKind::TcpV6, IpVersion::V6, 4)
    );
    assert_eq!(
        gso.csum(),
        CsumRange {
            start: 58,
            offset: 16
        }
    );
}

#[test]
fn payload_within_gso_size_is_one_segment() {
    for payload in [0, 1, 1448] {
        let built = tcp4(payload);
        let gso = gso_of(validate(&tso4(&built, 1448), &built.frame, &ALL).unwrap());
        assert_eq!(gso.segments(), 1, "payload {payload}");
    }
    let built = tcp4(1449);
    let gso = gso_of(validate(&tso4(&built, 1448), &built.frame, &ALL).unwrap());
    assert_eq!(gso.segments(), 2);
}

#[test]
fn ip_length_must_cover_the_frame() {
    let mut built = tcp4(3000);
    built.frame.extend_from_slice(&[0; 4]); // trailing bytes past the IP total length
    assert_eq!(
        validate(&tso4(&built, 1448), &built.frame, &ALL),
        Err(OffloadError::GsoLengthMismatch {
            ip_end: built.frame.len() - 4,
            frame_len: built.frame.len()
        })
    );
}

#[test]
fn truncated_headers_are_a_frame_error() {
    let built = tcp4(0);
    let frame = &built.frame[..built.frame.len() - 1];
    let mut hdr = tso4(&built, 1448);
    hdr.hdr_len = 0;
    assert!(matches!(
        validate(&hdr, frame, &ALL),
        Err(OffloadError::Frame(_))
    ));
}

#[test]
fn segment_count_is_bounded() {
    let built = tcp4(3000);
    let caps = TxOffloadCaps {
        max_segments: 2,
        ..ALL
    };
    assert_eq!(
        validate(&tso4(&built, 1000), &built.frame, &caps),
        Err(OffloadError::TooManySegments {
            segments: 3,
            max: 2
        })
    );
    assert!(validate(&tso4(&built, 1500), &built.frame, &caps).is_ok());
}

#[test]
fn ipv6_ufo_fragment_must_fit_the_payload_length() {
    // 65535 bytes of IPv6 payload: a first fragment of 65528 bytes plus the 8-byte fragment
    // header would need a payload length of 65536.
    let built = build(&Spec::new(IpVersion::V6, false, vec![0; 65535 - 8]));
    assert_eq!(
        validate(&gso_hdr(&built, GsoType::Udp, 65528), &built.frame, &ALL),
        Err(OffloadError::SegmentTooLong {
            ip_len: 65536,
            max: u16::MAX
        })
    );
    assert!(validate(&gso_hdr(&built, GsoType::Udp, 65520), &built.frame, &ALL).is_ok());
}

#[test]
fn caps_from_feature_bits() {
    use crate::model::offloads::feature::{CSUM, HOST_TSO6, HOST_USO};
    let acked = (1 << CSUM) | (1 << HOST_TSO6) | (1u64 << HOST_USO);
    let caps = TxOffloadCaps::from_features(acked);
    assert!(caps.csum && caps.host_tso6 && caps.host_uso);
    assert!(!caps.host_tso4 && !caps.host_ecn && !caps.host_ufo);
}

/// Runs everything downstream of an accepted header; none of it may panic.
fn exercise(hdr: &VirtioNetHdr, frame: &[u8]) {
    match validate(hdr, frame, &ALL) {
        Ok(TxOffload::Csum(csum)) => {
            let mut copy = frame.to_vec();
            complete_csum(&mut copy, csum).expect("validated range fits");
        }
        Ok(TxOffload::Gso(gso)) => {
            let mut segmenter = Segmenter::new();
            for csum in [SegmentCsum::Full, SegmentCsum::Partial] {
                if let Ok(segments) = segmenter.segment(frame, &gso, csum) {
                    assert_eq!(segments.len(), usize::from(gso.segments()));
                }
            }
            let mut copy = frame.to_vec();
            complete_csum(&mut copy, gso.csum()).expect("validated range fits");
        }
        Ok(TxOffload::None) | Err(_) => {}
    }
}

proptest! {
    #[test]
    fn arbitrary_header_and_frame_never_panic(
        header in any::<[u8; 12]>(),
        frame in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        exercise(&VirtioNetHdr::from_bytes(&header), &frame);
    }

    #[test]
    fn mutated_real_frames_never_panic(
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        vlan in any::<bool>(),
        payload_len in 0usize..3000,
        gso_type in prop::sample::select(vec![0u8, 1, 3, 4, 5, 0x81, 0x84]),
        gso_size in any::<u16>(),
        flips in proptest::collection::vec((0usize..120, any::<u8>()), 0..4),
    ) {
        let ip = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let mut spec = Spec::new(ip, tcp, vec![0x33; payload_len]);
        spec.vlan = vlan;
        let mut built = build(&spec);
        let mut hdr = gso_hdr(&built, GsoType::None, gso_size);
        hdr.gso_type = gso_type;
        for (at, value) in flips {
            if let Some(byte) = built.frame.get_mut(at) {
                *byte = value;
            }
        }
        exercise(&hdr, &built.frame);
    }
}
