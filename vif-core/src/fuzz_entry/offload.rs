//! The `offload` target: a guest's virtio-net header and frame through [`validate`], then
//! checksum completion, software segmentation and the receive plan, with the invariants that
//! must hold for any header `validate` accepted.
//!
//! Input layout: byte 0 picks the transmit caps, byte 1 the receiving guest's caps, the next 12
//! bytes are the `virtio_net_hdr_v1` (VIRTIO 1.2 § 5.1.6), the rest is the frame.

use super::headers::Addrs;
use crate::checksum;
use crate::offload::header::VIRTIO_NET_HDR_F_DATA_VALID;
use crate::offload::{
    complete_csum, rx_plan, validate, CsumRange, Gso, GsoKind, IpVersion, OffloadError,
    RxOffloadCaps, RxPlan, RxSource, SegmentCsum, Segmenter, TxOffload, TxOffloadCaps,
    VirtioNetHdr, VIRTIO_NET_HDR_LEN,
};
use crate::wire::frame::parse_frame;
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::ipv6::Ipv6Packet;

/// Most segments a fuzzed frame may expand to when bit 6 of the caps byte is set: exercises the
/// `TooManySegments` refusal and keeps some inputs cheap.
const SMALL_MAX_SEGMENTS: u16 = 64;

const TCP_FLAG_FIN: u8 = 0x01;
const TCP_FLAG_PSH: u8 = 0x08;
const TCP_FLAG_CWR: u8 = 0x80;

pub(super) fn run(data: &[u8]) {
    let [tx_bits, rx_bits, rest @ ..] = data else {
        return;
    };
    let Some(hdr) = VirtioNetHdr::from_slice(rest) else {
        return;
    };
    let frame = rest.get(VIRTIO_NET_HDR_LEN..).unwrap_or_default();
    let caps = tx_caps(*tx_bits);
    let guest = rx_caps(*rx_bits);
    plain_rx(&guest, rx_bits & 0x80 != 0);
    let Ok(offload) = validate(&hdr, frame, &caps) else {
        return;
    };
    // More caps never refuse what fewer accepted, and the normalised header means the same.
    let all = validate(&hdr, frame, &TxOffloadCaps::ALL);
    assert_eq!(all, Ok(offload), "validate under ALL caps");
    let normalised = validate(&offload.virtio_hdr(), frame, &TxOffloadCaps::ALL);
    assert_eq!(normalised, Ok(offload), "validate of virtio_hdr()");
    let mut segmenter = Segmenter::new();
    match offload {
        TxOffload::None => {}
        TxOffload::Csum(range) => completes(frame, range),
        TxOffload::Gso(gso) => {
            completes(frame, gso.csum());
            segments(&mut segmenter, frame, &gso, SegmentCsum::Full);
            segments(&mut segmenter, frame, &gso, SegmentCsum::Partial);
        }
    }
    rx(&mut segmenter, frame, &offload, &guest);
}

/// Bits 0..=5: CSUM, HOST_TSO4, HOST_TSO6, HOST_ECN, HOST_UFO, HOST_USO; bit 6: a small
/// segment limit.
fn tx_caps(bits: u8) -> TxOffloadCaps {
    let bit = |n: u8| bits & (1 << n) != 0;
    TxOffloadCaps {
        csum: bit(0),
        host_tso4: bit(1),
        host_tso6: bit(2),
        host_ecn: bit(3),
        host_ufo: bit(4),
        host_uso: bit(5),
        max_segments: if bit(6) { SMALL_MAX_SEGMENTS } else { u16::MAX },
    }
}

/// Bits 0..=6: GUEST_CSUM, TSO4, TSO6, ECN, UFO, USO4, USO6 (bit 7: a plain frame's checksum
/// was verified).
fn rx_caps(bits: u8) -> RxOffloadCaps {
    let bit = |n: u8| bits & (1 << n) != 0;
    RxOffloadCaps {
        guest_csum: bit(0),
        guest_tso4: bit(1),
        guest_tso6: bit(2),
        guest_ecn: bit(3),
        guest_ufo: bit(4),
        guest_uso4: bit(5),
        guest_uso6: bit(6),
    }
}

/// VIRTIO 1.2 § 5.1.6.4.1: DATA_VALID only for a verified checksum and a GUEST_CSUM guest.
fn plain_rx(guest: &RxOffloadCaps, csum_verified: bool) {
    let plan = rx_plan(RxSource::Plain { csum_verified }, guest);
    let flags = if csum_verified && guest.guest_csum {
        VIRTIO_NET_HDR_F_DATA_VALID
    } else {
        0
    };
    let expected = VirtioNetHdr {
        flags,
        ..VirtioNetHdr::default()
    };
    assert_eq!(plan, RxPlan::Deliver(expected), "plain frame plan");
}

/// RFC 1071 reference sum: 16-bit big-endian words one at a time, end-around carry.
fn reference_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// `complete_csum` on a validated range stores the complement of the reference sum from
/// `csum_start` (zero as 0xffff) and touches nothing else.
fn completes(frame: &[u8], range: CsumRange) {
    let mut copy = frame.to_vec();
    assert_eq!(complete_csum(&mut copy, range), Ok(()), "complete_csum");
    let start = usize::from(range.start);
    let field = range.field_offset();
    let expected = match !reference_sum(&frame[start..]) {
        0 => 0xffff,
        value => value,
    };
    assert_eq!(
        copy[field..field + 2],
        expected.to_be_bytes(),
        "completed checksum against the RFC 1071 reference"
    );
    assert_eq!(copy[..field], frame[..field], "bytes before the field");
    assert_eq!(
        copy[field + 2..],
        frame[field + 2..],
        "bytes after the field"
    );
}

/// The receive plan for a validated offload, carried out.
fn rx(segmenter: &mut Segmenter, frame: &[u8], offload: &TxOffload, guest: &RxOffloadCaps) {
    match rx_plan(RxSource::Offload(offload), guest) {
        RxPlan::Deliver(hdr) => {
            // What the guest is handed must be a header its own features allow, for this frame.
            let as_tx = TxOffloadCaps {
                csum: guest.guest_csum,
                host_tso4: guest.guest_tso4,
                host_tso6: guest.guest_tso6,
                host_ecn: guest.guest_ecn,
                host_ufo: guest.guest_ufo,
                host_uso: guest.guest_uso4 || guest.guest_uso6,
                max_segments: u16::MAX,
            };
            assert_eq!(hdr.flags & VIRTIO_NET_HDR_F_DATA_VALID, 0, "no DATA_VALID");
            let delivered = validate(&hdr, frame, &as_tx);
            assert!(delivered.is_ok(), "delivered header {hdr:?}: {delivered:?}");
        }
        RxPlan::CompleteCsumThen { csum, hdr } => {
            assert!(
                !guest.guest_csum,
                "completion only for a guest without GUEST_CSUM"
            );
            assert_eq!(
                hdr,
                VirtioNetHdr::default(),
                "a completed frame has no flags"
            );
            completes(frame, csum);
        }
        RxPlan::Segment { csum } => {
            let TxOffload::Gso(gso) = offload else {
                panic!("segment plan for {offload:?}");
            };
            if csum == SegmentCsum::Partial {
                assert!(guest.guest_csum, "partial segments only for GUEST_CSUM");
            }
            segments(segmenter, frame, gso, csum);
        }
    }
}

/// Segments `frame` and checks the result against the frame: count, sizes, reassembly, and the
/// rewritten fields.
fn segments(segmenter: &mut Segmenter, frame: &[u8], gso: &Gso, csum: SegmentCsum) {
    let out = match segmenter.segment(frame, gso, csum) {
        Ok(out) => out,
        // IPv6 extension headers, UFO with IPv4 options: documented as not implemented.
        Err(OffloadError::Unsupported { .. }) => return,
        Err(error) => panic!("segmenting a validated frame: {error}"),
    };
    assert_eq!(out.len(), usize::from(gso.segments()), "segment count");
    let seg_hdr = out.virtio_hdr();
    let list: Vec<&[u8]> = out.iter().collect();
    if gso.kind() == GsoKind::Ufo {
        fragments(frame, gso, &list);
        return;
    }
    let headers_len = usize::from(gso.headers_len());
    let gso_size = usize::from(gso.gso_size());
    let mut payload = Vec::with_capacity(frame.len());
    for (index, segment) in list.iter().enumerate() {
        assert!(segment.len() >= headers_len, "segment shorter than headers");
        assert!(
            segment.len() <= headers_len + gso_size,
            "segment over gso_size"
        );
        payload.extend_from_slice(&segment[headers_len..]);
        l4_segment(frame, gso, csum, index, list.len(), segment);
        if csum == SegmentCsum::Partial {
            let again = validate(&seg_hdr, segment, &TxOffloadCaps::ALL);
            assert_eq!(
                again,
                Ok(TxOffload::Csum(gso.csum())),
                "partial segment header"
            );
        }
    }
    assert_eq!(payload, frame[headers_len..], "segment payloads reassemble");
}

/// One TSO/USO segment: it parses, its IP length covers it, its fixed header fields are the
/// frame's, and the rewritten fields (IP length/ident/checksum, TCP seq/flags, UDP length, L4
/// checksum) are as Linux's GSO would write them.
fn l4_segment(frame: &[u8], gso: &Gso, csum: SegmentCsum, index: usize, count: usize, seg: &[u8]) {
    let layout = parse_frame(seg);
    let Ok(layout) = layout else {
        panic!("segment {index} does not parse: {layout:?}");
    };
    let (l3, l4) = (usize::from(gso.l3_offset()), usize::from(gso.l4_offset()));
    assert_eq!(layout.l3.end, seg.len(), "segment IP length");
    assert_eq!(layout.l4.map(|l| l.offset), Some(l4), "segment L4 offset");
    // Everything but the rewritten fields is copied from the frame's headers.
    let mut mask = vec![false; usize::from(gso.headers_len())];
    let mut rewritten = |range: core::ops::Range<usize>| mask[range].fill(true);
    let addrs = match gso.ip() {
        IpVersion::V4 => {
            rewritten(l3 + 2..l3 + 6);
            rewritten(l3 + 10..l3 + 12);
            let ip = Ipv4Packet::new_checked(&seg[l3..]);
            let Ok(ip) = ip else {
                panic!("segment IPv4 header: {ip:?}");
            };
            assert!(ip.verify_checksum(), "segment IPv4 header checksum");
            let base = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]);
            assert_eq!(ip.ident(), base.wrapping_add(index as u16), "IPv4 ident");
            Addrs::V4(ip.src_addr(), ip.dst_addr())
        }
        IpVersion::V6 => {
            rewritten(l3 + 4..l3 + 6);
            let ip = Ipv6Packet::new_checked(&seg[l3..]);
            let Ok(ip) = ip else {
                panic!("segment IPv6 header: {ip:?}");
            };
            Addrs::V6(ip.src_addr(), ip.dst_addr())
        }
    };
    let tcp = gso.kind().is_tcp();
    let field = if tcp {
        rewritten(l4 + 4..l4 + 8);
        rewritten(l4 + 13..l4 + 14);
        rewritten(l4 + 16..l4 + 18);
        let base = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
        let offset = index * usize::from(gso.gso_size());
        let seq = u32::from_be_bytes([seg[l4 + 4], seg[l4 + 5], seg[l4 + 6], seg[l4 + 7]]);
        assert_eq!(seq, base.wrapping_add(offset as u32), "TCP sequence number");
        let mut flags = frame[l4 + 13];
        if index + 1 < count {
            flags &= !(TCP_FLAG_FIN | TCP_FLAG_PSH);
        }
        if index > 0 {
            flags &= !TCP_FLAG_CWR;
        }
        assert_eq!(seg[l4 + 13], flags, "TCP flags of segment {index}");
        l4 + 16
    } else {
        rewritten(l4 + 4..l4 + 8);
        let len = u16::from_be_bytes([seg[l4 + 4], seg[l4 + 5]]);
        assert_eq!(usize::from(len), seg.len() - l4, "UDP length");
        l4 + 6
    };
    for (at, rewritten) in mask.iter().enumerate() {
        if !rewritten {
            assert_eq!(seg[at], frame[at], "header byte {at} copied");
        }
    }
    let protocol = if tcp {
        IpProtocol::TCP
    } else {
        IpProtocol::UDP
    };
    let pseudo = addrs.pseudo_sum(protocol, seg.len() - l4);
    let stored = u16::from_be_bytes([seg[field], seg[field + 1]]);
    match csum {
        SegmentCsum::Partial => assert_eq!(stored, pseudo, "partial checksum is the pseudo sum"),
        SegmentCsum::Full => {
            let sum = checksum::combine(&[pseudo, reference_sum(&seg[l4..])]);
            assert_eq!(sum, 0xffff, "segment {index} L4 checksum verifies");
            assert!(tcp || stored != 0, "a UDP checksum is never sent as zero");
        }
    }
}

/// UFO: the fragments' payloads reassemble into the datagram with its checksum completed, each
/// fragment's offset and More Fragments flag say where it goes, and every piece but the last
/// is the 8-byte-rounded `gso_size`.
fn fragments(frame: &[u8], gso: &Gso, list: &[&[u8]]) {
    let (l3, l4) = (usize::from(gso.l3_offset()), usize::from(gso.l4_offset()));
    let datagram = &frame[l4..];
    if list.len() == 1 && list[0].len() == frame.len() {
        // Fits whole: the frame, its UDP checksum completed.
        let seg = list[0];
        assert_eq!(seg[..l4 + 6], frame[..l4 + 6], "unfragmented UFO headers");
        assert_eq!(seg[l4 + 8..], frame[l4 + 8..], "unfragmented UFO payload");
        udp_verifies(frame, l3, gso.ip(), &seg[l4..]);
        return;
    }
    let unit = usize::from(gso.gso_size() & !7).max(8);
    let mut reassembled = Vec::with_capacity(datagram.len());
    let mut ident = None;
    for (index, seg) in list.iter().enumerate() {
        let more = index + 1 < list.len();
        let (offset, more_frags, piece) = match gso.ip() {
            IpVersion::V4 => {
                let ip = Ipv4Packet::new_checked(&seg[l3..]);
                let Ok(ip) = ip else {
                    panic!("fragment IPv4 header: {ip:?}");
                };
                assert!(ip.verify_checksum(), "fragment IPv4 header checksum");
                assert_eq!(
                    usize::from(ip.total_len()),
                    seg.len() - l3,
                    "fragment length"
                );
                (ip.frag_offset(), ip.more_frags(), &seg[l4..])
            }
            IpVersion::V6 => {
                let header = &seg[l4..l4 + 8];
                assert_eq!(seg[l3 + 6], 44, "next header is the fragment header");
                assert_eq!(header[0], 17, "fragment header's next header is UDP");
                let word = u16::from_be_bytes([header[2], header[3]]);
                let id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                assert_eq!(
                    *ident.get_or_insert(id),
                    id,
                    "one identification per datagram"
                );
                (word & !7, word & 1 != 0, &seg[l4 + 8..])
            }
        };
        assert_eq!(
            usize::from(offset),
            reassembled.len(),
            "fragment {index} offset"
        );
        assert_eq!(more_frags, more, "fragment {index} More Fragments");
        assert!(piece.len() <= unit, "fragment over the unit");
        if more {
            assert_eq!(piece.len(), unit, "non-last fragment is a whole unit");
        }
        reassembled.extend_from_slice(piece);
    }
    assert_eq!(reassembled[..6], datagram[..6], "reassembled UDP header");
    assert_eq!(reassembled[8..], datagram[8..], "reassembled UDP payload");
    udp_verifies(frame, l3, gso.ip(), &reassembled);
}

/// The UDP checksum of `datagram` verifies with the addresses of `frame`'s IP header at `l3`
/// (fragmentation leaves them as they are).
fn udp_verifies(frame: &[u8], l3: usize, ip: IpVersion, datagram: &[u8]) {
    let addrs = match ip {
        IpVersion::V4 => Ipv4Packet::new_checked(&frame[l3..])
            .ok()
            .map(|p| Addrs::V4(p.src_addr(), p.dst_addr())),
        IpVersion::V6 => Ipv6Packet::new_checked(&frame[l3..])
            .ok()
            .map(|p| Addrs::V6(p.src_addr(), p.dst_addr())),
    };
    let Some(addrs) = addrs else {
        panic!("a validated UFO frame's IP header does not parse");
    };
    let pseudo = addrs.pseudo_sum(IpProtocol::UDP, datagram.len());
    let sum = checksum::combine(&[pseudo, reference_sum(datagram)]);
    assert_eq!(sum, 0xffff, "UFO datagram checksum verifies");
}
