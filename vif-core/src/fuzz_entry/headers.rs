//! Per-header checks for the `wire_frame` target: each view's `new_checked` and accessors, and a
//! `parse → emit → parse` round trip of each `Repr`, over the bytes a [`FrameLayout`] points at.
//!
//! A `Repr` that parsed must emit (it came from a valid header) and must parse back to itself;
//! the asserts here fire on exactly that, so a failure is an asymmetry between `parse` and
//! `emit`, not a rejected input. Scratch buffers are allocated per call: this is test code, and a
//! fresh zeroed buffer makes sure nothing of the input leaks into the re-parse.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::wire::arp::{ArpPacket, ArpRepr};
use crate::wire::ethernet::EtherType;
use crate::wire::ethernet::{self, EthernetFrame, EthernetRepr};
use crate::wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use crate::wire::icmpv6::{Icmpv6Packet, Icmpv6Repr, NdpRepr};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{Ipv6FragmentHeader, Ipv6FragmentRepr, Ipv6Packet, Ipv6Repr};
use crate::wire::tcp::{TcpPacket, TcpRepr};
use crate::wire::udp::{UdpPacket, UdpRepr, ZeroChecksum};
use crate::wire::vlan::{VlanPacket, VlanRepr};
use crate::wire::vxlan::{VxlanPacket, VxlanRepr};
use crate::wire::Csum;

/// The addresses of the enclosing IP header, for L4 pseudo-header sums.
#[derive(Debug, Clone, Copy)]
pub(super) enum Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Addrs {
    /// The pseudo-header sum for `len` bytes of `protocol`. The same function serves emit and
    /// re-parse, so a length past 16 bits (impossible under IPv4) only needs to be consistent.
    pub(super) fn pseudo_sum(self, protocol: IpProtocol, len: usize) -> u16 {
        match self {
            Addrs::V4(src, dst) => checksum::pseudo_header_v4(
                &src,
                &dst,
                protocol.0,
                u16::try_from(len).unwrap_or(u16::MAX),
            ),
            Addrs::V6(src, dst) => checksum::pseudo_header_v6(
                &src,
                &dst,
                protocol.0,
                u32::try_from(len).unwrap_or(u32::MAX),
            ),
        }
    }
}

/// Ethernet II header: accessors and the repr round trip.
pub(super) fn ethernet(bytes: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(bytes) else {
        return;
    };
    let _ = (frame.dst_addr(), frame.src_addr(), frame.payload().len());
    let ethertype = frame.ethertype();
    let _ = (ethertype.is_vlan_tpid(), ethertype.is_length());
    let repr = EthernetRepr::parse(&frame).expect("a checked Ethernet frame parses");
    let mut scratch = [0u8; ethernet::HEADER_LEN];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut scratch[..]))
        .expect("EthernetRepr emits into its buffer_len");
    let again = EthernetFrame::new_checked(&scratch[..]).and_then(|f| EthernetRepr::parse(&f));
    assert_eq!(again, Ok(repr), "EthernetRepr round trip");
}

/// One VLAN tag whose TCI starts at `bytes[0]`, announced by `tpid`. Returns the parsed tag.
pub(super) fn vlan_tag(tpid: EtherType, bytes: &[u8]) -> Option<VlanRepr> {
    let packet = VlanPacket::new_checked(bytes).ok()?;
    let _ = (packet.tci(), packet.pcp(), packet.dei(), packet.vid_raw());
    let _ = (packet.vid(), packet.ethertype(), packet.payload().len());
    let repr = VlanRepr::parse(tpid, &packet).ok()?;
    let mut scratch = [0u8; 4];
    repr.emit(&mut VlanPacket::new_unchecked(&mut scratch[..]))
        .expect("VlanRepr emits into its buffer_len");
    let again = VlanRepr::parse(tpid, &VlanPacket::new_unchecked(&scratch[..]));
    assert_eq!(again, Ok(repr), "VlanRepr round trip");
    assert_eq!(
        &repr.to_bytes()[2..],
        &scratch[..2],
        "VlanRepr::to_bytes agrees with emit"
    );
    Some(repr)
}

/// ARP: accessors and, for Ethernet/IPv4 ARP, the repr round trip.
pub(super) fn arp(bytes: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(bytes) else {
        return;
    };
    let _ = (packet.hardware_type(), packet.protocol_type());
    let _ = (
        packet.hardware_len(),
        packet.protocol_len(),
        packet.operation(),
    );
    let _ = (packet.packet_len(), packet.sender_hardware_addr().len());
    let _ = (
        packet.sender_protocol_addr().len(),
        packet.target_hardware_addr().len(),
    );
    let _ = packet.target_protocol_addr().len();
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };
    let _ = repr.is_gratuitous();
    let mut scratch = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut scratch[..]))
        .expect("ArpRepr emits into its buffer_len");
    let again = ArpPacket::new_checked(&scratch[..]).and_then(|p| ArpRepr::parse(&p));
    assert_eq!(again, Ok(repr), "ArpRepr round trip");
}

/// IPv4 header: accessors, the options walk and the repr round trip (checksum verified).
/// Returns the addresses and the upper-layer bytes, for the L4 checks.
pub(super) fn ipv4(bytes: &[u8]) -> Option<(Addrs, IpProtocol, &[u8])> {
    let packet = Ipv4Packet::new_checked(bytes).ok()?;
    let _ = (
        packet.version(),
        packet.dscp(),
        packet.ecn(),
        packet.ident(),
    );
    let _ = (
        packet.dont_frag(),
        packet.more_frags(),
        packet.frag_offset(),
    );
    let _ = (
        packet.is_fragment(),
        packet.is_first_fragment(),
        packet.ttl(),
    );
    let _ = (
        packet.checksum(),
        packet.verify_checksum(),
        packet.options().len(),
    );
    let _ = packet.option_iter().count();
    let _ = packet.check_options();
    let _ = packet.pseudo_header_sum(packet.payload_len());
    let addrs = Addrs::V4(packet.src_addr(), packet.dst_addr());
    // Sliced from `bytes`, not the view, so it outlives the view; check_len proved the range.
    let payload = bytes.get(packet.header_len()..usize::from(packet.total_len()));
    let upper = (addrs, packet.protocol(), payload.unwrap_or_default());
    assert_eq!(
        usize::from(packet.payload_len()),
        packet.payload().len(),
        "Ipv4Packet payload_len"
    );
    for csum in [Csum::Verify, Csum::Ignore] {
        let Ok(repr) = Ipv4Repr::parse(&packet, csum) else {
            continue;
        };
        let mut scratch = vec![0u8; repr.buffer_len() + usize::from(repr.payload_len)];
        repr.emit(
            &mut Ipv4Packet::new_unchecked(&mut scratch[..]),
            Csum::Verify,
        )
        .expect("a parsed Ipv4Repr emits");
        let again =
            Ipv4Packet::new_checked(&scratch[..]).and_then(|p| Ipv4Repr::parse(&p, Csum::Verify));
        assert_eq!(again, Ok(repr), "Ipv4Repr round trip");
    }
    Some(upper)
}

/// IPv6 header: accessors, the extension-header walk, the fragment header and the repr round
/// trip. Returns the addresses, upper-layer protocol and bytes (after the extension headers).
pub(super) fn ipv6(bytes: &[u8]) -> Option<(Addrs, IpProtocol, &[u8])> {
    let packet = Ipv6Packet::new_checked(bytes).ok()?;
    let _ = (
        packet.version(),
        packet.traffic_class(),
        packet.dscp(),
        packet.ecn(),
    );
    let _ = (packet.flow_label(), packet.hop_limit(), packet.total_len());
    let addrs = Addrs::V6(packet.src_addr(), packet.dst_addr());
    let _ = packet.pseudo_header_sum(IpProtocol::TCP, u32::from(packet.payload_len()));
    if packet.next_header() == IpProtocol::IPV6_FRAG {
        ipv6_fragment_header(packet.payload());
    }
    if let Ok(repr) = Ipv6Repr::parse(&packet) {
        let mut scratch = vec![0u8; repr.buffer_len() + usize::from(repr.payload_len)];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut scratch[..]))
            .expect("a parsed Ipv6Repr emits");
        let again = Ipv6Packet::new_checked(&scratch[..]).and_then(|p| Ipv6Repr::parse(&p));
        assert_eq!(again, Ok(repr), "Ipv6Repr round trip");
    }
    let upper = packet.upper_layer().ok()?;
    let _ = upper.has_upper_header();
    let start = Ipv6Packet::<&[u8]>::HEADER_LEN + upper.offset;
    let rest = bytes.get(start..packet.total_len());
    assert!(rest.is_some(), "Ipv6Upper offset lies inside the payload");
    Some((addrs, upper.protocol, rest.unwrap_or_default()))
}

fn ipv6_fragment_header(bytes: &[u8]) {
    let Ok(header) = Ipv6FragmentHeader::new_checked(bytes) else {
        return;
    };
    let _ = (header.frag_offset(), header.more_frags(), header.ident());
    let Ok(repr) = Ipv6FragmentRepr::parse(&header) else {
        return;
    };
    let mut scratch = [0u8; 8];
    repr.emit(&mut Ipv6FragmentHeader::new_unchecked(&mut scratch[..]))
        .expect("a parsed Ipv6FragmentRepr emits");
    let again =
        Ipv6FragmentHeader::new_checked(&scratch[..]).and_then(|h| Ipv6FragmentRepr::parse(&h));
    assert_eq!(again, Ok(repr), "Ipv6FragmentRepr round trip");
}

/// TCP segment: accessors, options walk, and the repr round trip with a fresh checksum.
pub(super) fn tcp(bytes: &[u8], addrs: Addrs) {
    let Ok(packet) = TcpPacket::new_checked(bytes) else {
        return;
    };
    let _ = (packet.src_port(), packet.dst_port(), packet.seq_number());
    let _ = (packet.ack_number(), packet.data_offset(), packet.reserved());
    let _ = (packet.flags(), packet.window_len(), packet.checksum());
    let _ = (
        packet.urgent_at(),
        packet.options().len(),
        packet.option_iter().count(),
    );
    let pseudo = addrs.pseudo_sum(IpProtocol::TCP, bytes.len());
    let _ = packet.verify_checksum(pseudo);
    let _ = TcpRepr::parse(&packet, pseudo, Csum::Verify);
    let Ok(repr) = TcpRepr::parse(&packet, pseudo, Csum::Ignore) else {
        return;
    };
    assert_eq!(
        repr.payload_len,
        packet.payload().len(),
        "TcpRepr payload_len"
    );
    let mut scratch = vec![0u8; repr.buffer_len()];
    let header_len = repr.header_len();
    scratch[header_len..].copy_from_slice(packet.payload());
    let pseudo = addrs.pseudo_sum(IpProtocol::TCP, scratch.len());
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut scratch[..]),
        pseudo,
        Csum::Verify,
    )
    .expect("a parsed TcpRepr emits");
    let again = TcpPacket::new_checked(&scratch[..]).and_then(|p| {
        TcpRepr::parse(&p, pseudo, Csum::Verify).map(|r| (r, p.payload() == packet.payload()))
    });
    assert_eq!(again, Ok((repr, true)), "TcpRepr round trip");
}

/// UDP datagram: accessors and the repr round trip. Returns the payload when the datagram
/// parses, for VXLAN.
pub(super) fn udp(bytes: &[u8], addrs: Addrs) -> Option<(u16, &[u8])> {
    let packet = UdpPacket::new_checked(bytes).ok()?;
    let _ = (
        packet.src_port(),
        packet.checksum(),
        packet.datagram().len(),
    );
    let len = usize::from(packet.length());
    let pseudo = addrs.pseudo_sum(IpProtocol::UDP, len);
    let _ = packet.verify_checksum(pseudo);
    let _ = UdpRepr::parse(&packet, pseudo, Csum::Verify, ZeroChecksum::Absent);
    let _ = UdpRepr::parse(&packet, pseudo, Csum::Verify, ZeroChecksum::Invalid);
    let repr = UdpRepr::parse(&packet, pseudo, Csum::Ignore, ZeroChecksum::Absent).ok()?;
    assert_eq!(
        repr.buffer_len(),
        len,
        "UdpRepr buffer_len is the length field"
    );
    let mut scratch = vec![0u8; repr.buffer_len()];
    scratch[8..].copy_from_slice(packet.payload());
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut scratch[..]),
        pseudo,
        Csum::Verify,
    )
    .expect("a parsed UdpRepr emits");
    // A computed zero is sent as 0xffff (RFC 768), so the re-parse may treat zero as invalid.
    let again = UdpPacket::new_checked(&scratch[..]).and_then(|p| {
        UdpRepr::parse(&p, pseudo, Csum::Verify, ZeroChecksum::Invalid)
            .map(|r| (r, p.payload() == packet.payload()))
    });
    assert_eq!(again, Ok((repr, true)), "UdpRepr round trip");
    Some((packet.dst_port(), bytes.get(8..len).unwrap_or_default()))
}

/// ICMPv4 message: accessors and the repr round trip.
pub(super) fn icmpv4(bytes: &[u8]) {
    let Ok(packet) = Icmpv4Packet::new_checked(bytes) else {
        return;
    };
    let _ = (packet.msg_type(), packet.msg_code(), packet.checksum());
    let _ = (
        packet.echo_ident(),
        packet.echo_seq_no(),
        packet.next_hop_mtu(),
    );
    let _ = (packet.rest_of_header().len(), packet.data().len());
    let _ = (packet.verify_checksum(), packet.msg_type().is_error());
    let _ = Icmpv4Repr::parse(&packet, Csum::Verify);
    let Ok(repr) = Icmpv4Repr::parse(&packet, Csum::Ignore) else {
        return;
    };
    let mut scratch = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut scratch[..]),
        Csum::Verify,
    )
    .expect("a parsed Icmpv4Repr emits");
    let again = Icmpv4Packet::new_checked(&scratch[..])
        .and_then(|p| Icmpv4Repr::parse(&p, Csum::Verify).map(|r| r == repr));
    assert_eq!(again, Ok(true), "Icmpv4Repr round trip");
}

/// ICMPv6 message: accessors (NDP ones included) and the repr round trip.
pub(super) fn icmpv6(bytes: &[u8], addrs: Addrs) {
    let Addrs::V6(src, dst) = addrs else {
        return;
    };
    let Ok(packet) = Icmpv6Packet::new_checked(bytes) else {
        return;
    };
    let _ = (packet.msg_type(), packet.msg_code(), packet.checksum());
    let _ = (
        packet.echo_ident(),
        packet.echo_seq_no(),
        packet.mtu_or_pointer(),
    );
    let _ = (packet.data().len(), packet.verify_checksum(&src, &dst));
    let _ = (packet.msg_type().is_error(), packet.msg_type().is_ndp());
    let _ = (packet.target_addr(), packet.neighbor_flags());
    let _ = packet.ndp_options().count();
    let _ = (packet.source_lladdr(), packet.target_lladdr());
    if let Ok(ndp) = NdpRepr::parse(&packet) {
        let _ = ndp.message();
    }
    let _ = Icmpv6Repr::parse(&src, &dst, &packet, Csum::Verify);
    let Ok(repr) = Icmpv6Repr::parse(&src, &dst, &packet, Csum::Ignore) else {
        return;
    };
    let mut scratch = vec![0u8; repr.buffer_len()];
    repr.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(&mut scratch[..]),
        Csum::Verify,
    )
    .expect("a parsed Icmpv6Repr emits");
    let again = Icmpv6Packet::new_checked(&scratch[..])
        .and_then(|p| Icmpv6Repr::parse(&src, &dst, &p, Csum::Verify).map(|r| r == repr));
    assert_eq!(again, Ok(true), "Icmpv6Repr round trip");
}

/// VXLAN header: accessors and the repr round trip. Returns the inner frame when the header
/// parses.
pub(super) fn vxlan(bytes: &[u8]) -> Option<&[u8]> {
    let packet = VxlanPacket::new_checked(bytes).ok()?;
    let _ = (packet.flags(), packet.i_flag(), packet.vni());
    let _ = (packet.reserved1(), packet.reserved2());
    let repr = VxlanRepr::parse(&packet).ok()?;
    let mut scratch = [0u8; 8];
    repr.emit(&mut VxlanPacket::new_unchecked(&mut scratch[..]))
        .expect("a parsed VxlanRepr emits");
    assert_eq!(
        scratch,
        repr.to_bytes(),
        "VxlanRepr::to_bytes agrees with emit"
    );
    let again = VxlanPacket::new_checked(&scratch[..]).and_then(|p| VxlanRepr::parse(&p));
    assert_eq!(again, Ok(repr), "VxlanRepr round trip");
    bytes.get(8..)
}
