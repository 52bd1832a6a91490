//! One pass over a frame: where each header starts and what it is.
//!
//! [`parse_frame`] is the shared entry point of the datapath: the offload engine checks a
//! guest's `csum_start`/`hdr_len` against it, the flow key reads through it, the fuzzers drive
//! it. It walks Ethernet, at most two VLAN tags (S-tag then C-tag, [`super::vlan::walk_tags`]),
//! ARP / IPv4 (options, fragments) / IPv6 (extension headers, [`super::ipv6::ext`]) and the L4
//! header (TCP data offset, UDP, ICMPv4, ICMPv6, SCTP), through the checked views, reading only
//! length and type fields. It allocates nothing and never panics: every offset it returns lies
//! inside the frame.
//!
//! What is an error: a frame too short for a header it announces, or a length field that
//! contradicts the buffer (IHL < 5, total length past the frame, an extension header past the
//! payload, TCP data offset < 5 or past the packet, UDP length outside 8..=IP payload when not
//! fragmented). Also two classic ACL evasions: a first fragment too short to hold its whole L4
//! header (RFC 1858 § 3.1, RFC 7112 for IPv6), and a TCP fragment at offset 8 that would
//! overwrite the flags of the first one (RFC 1858 § 3.2). What is not: an unknown EtherType or
//! IP protocol (the layout stops there), IPv4 options (not walked: forwarded as they are),
//! checksums (not looked at), Ethernet padding after the IP packet (excluded via `l3.end`).

use crate::wire::arp::ArpPacket;
use crate::wire::ethernet::EtherType;
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use crate::wire::vlan::{self, VlanRepr};
use crate::wire::{ensure_len, Result, WireError};

/// What the L3 header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3Kind {
    Ipv4,
    Ipv6,
    Arp,
    /// An EtherType vif does not parse (or an 802.3 length): no L3 fields are known.
    Other,
}

/// Whether the IP packet is a fragment, as Open vSwitch's `nw_frag` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpFrag {
    /// Not a fragment (including IPv6 atomic fragments, offset 0 without M: RFC 6946).
    #[default]
    No,
    /// Offset 0 with more to come: carries the L4 header.
    First,
    /// Offset > 0: no L4 header, so ACLs can match it on L3 only.
    Later,
}

/// The network-layer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L3 {
    pub kind: L3Kind,
    /// Offset from the start of the frame: [`FrameLayout::l2_len`].
    pub offset: usize,
    /// IPv4: IHL × 4. IPv6: 40 plus the extension headers up to the upper layer (for a later
    /// fragment, up to the end of the fragment header). ARP: the packet. Other: 0.
    pub header_len: usize,
    /// Where the L3 packet ends in the frame (IP total length, ARP packet length); bytes after
    /// it are Ethernet padding. The frame length for `Other`.
    pub end: usize,
    /// IP only: the upper-layer protocol (IPv4 protocol, end of the IPv6 chain; for an IPv6
    /// later fragment, the fragment header's next header).
    pub protocol: Option<IpProtocol>,
    pub frag: IpFrag,
}

/// The transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L4 {
    pub proto: IpProtocol,
    /// Offset from the start of the frame: where a checksum offload's `csum_start` must point.
    pub offset: usize,
    /// TCP: data offset × 4. UDP and ICMP: 8. SCTP: the 12-byte common header.
    pub header_len: usize,
}

/// Offsets and kinds of the headers of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameLayout {
    /// Ethernet header and tags: 14, 18 or 22.
    pub l2_len: usize,
    /// The outer 802.1ad tag.
    pub s_tag: Option<VlanRepr>,
    /// The 802.1Q tag: the only one, or the one inside the S-tag.
    pub c_tag: Option<VlanRepr>,
    /// The EtherType after the tags.
    pub ethertype: EtherType,
    pub l3: L3,
    /// `None` for later fragments, protocols without a parsed header (unknown, ESP, no next
    /// header), ARP and other EtherTypes.
    pub l4: Option<L4>,
    /// Where the innermost parsed header ends: after L4, else after L3, else after L2.
    pub payload_offset: usize,
}

impl FrameLayout {
    /// Bytes from the L4 header to the end of the IP packet: the length in the L4
    /// pseudo-header (RFC 793 § 3.1, RFC 8200 § 8.1).
    pub fn l4_len(&self) -> Option<usize> {
        self.l4.map(|l4| self.l3.end.saturating_sub(l4.offset))
    }

    /// Bytes of L4 payload: from [`Self::payload_offset`] to the end of the IP packet.
    pub fn payload_len(&self) -> usize {
        self.l3.end.saturating_sub(self.payload_offset)
    }
}

/// Parses the headers of `frame` in one pass. See the module docs for what is an error.
pub fn parse_frame(frame: &[u8]) -> Result<FrameLayout> {
    let tags = vlan::walk_tags(frame)?;
    let l2_len = tags.payload_offset;
    let mut layout = FrameLayout {
        l2_len,
        s_tag: tags.s_tag,
        c_tag: tags.c_tag,
        ethertype: tags.ethertype,
        l3: L3 {
            kind: L3Kind::Other,
            offset: l2_len,
            header_len: 0,
            end: frame.len(),
            protocol: None,
            frag: IpFrag::No,
        },
        l4: None,
        payload_offset: l2_len,
    };
    let l3_bytes = frame.get(l2_len..).unwrap_or_default();
    match tags.ethertype {
        EtherType::IPV4 => parse_ipv4(l3_bytes, &mut layout)?,
        EtherType::IPV6 => parse_ipv6(l3_bytes, &mut layout)?,
        EtherType::ARP => {
            let arp = ArpPacket::new_checked(l3_bytes)?;
            layout.l3.kind = L3Kind::Arp;
            layout.l3.header_len = arp.packet_len();
            layout.l3.end = l2_len + arp.packet_len();
        }
        _ => {}
    }
    layout.payload_offset = match layout.l4 {
        Some(l4) => l4.offset + l4.header_len,
        None => layout.l3.offset + layout.l3.header_len,
    };
    Ok(layout)
}

fn parse_ipv4(bytes: &[u8], layout: &mut FrameLayout) -> Result<()> {
    let ip = Ipv4Packet::new_checked(bytes)?;
    let protocol = ip.protocol();
    let frag = if !ip.is_fragment() {
        IpFrag::No
    } else if ip.is_first_fragment() {
        IpFrag::First
    } else {
        IpFrag::Later
    };
    check_tcp_overlap("ipv4", protocol, ip.frag_offset())?;
    let header_len = ip.header_len();
    let end = usize::from(ip.total_len());
    layout.l3 = L3 {
        kind: L3Kind::Ipv4,
        offset: layout.l2_len,
        header_len,
        end: layout.l2_len + end,
        protocol: Some(protocol),
        frag,
    };
    if frag != IpFrag::Later {
        let upper = bytes.get(header_len..end).unwrap_or_default();
        layout.l4 = parse_l4(protocol, upper, layout.l2_len + header_len, frag)?;
    }
    Ok(())
}

fn parse_ipv6(bytes: &[u8], layout: &mut FrameLayout) -> Result<()> {
    let ip = Ipv6Packet::new_checked(bytes)?;
    let upper = ip.upper_layer()?;
    let frag = match upper.fragment {
        None => IpFrag::No,
        Some(fragment) if fragment.offset == 0 && !fragment.more_frags => IpFrag::No,
        Some(fragment) if fragment.is_first() => IpFrag::First,
        Some(fragment) => {
            check_tcp_overlap("ipv6", upper.protocol, fragment.offset)?;
            IpFrag::Later
        }
    };
    let header_len = Ipv6Packet::<&[u8]>::HEADER_LEN + upper.offset;
    layout.l3 = L3 {
        kind: L3Kind::Ipv6,
        offset: layout.l2_len,
        header_len,
        end: layout.l2_len + ip.total_len(),
        protocol: Some(upper.protocol),
        frag,
    };
    if upper.has_upper_header() {
        let l4_bytes = bytes.get(header_len..ip.total_len()).unwrap_or_default();
        layout.l4 = parse_l4(upper.protocol, l4_bytes, layout.l2_len + header_len, frag)?;
    }
    Ok(())
}

/// RFC 1858 § 3.2: a TCP fragment at offset 8 can rewrite the flags that an ACL matched in the
/// first fragment. No legitimate stack sends one (the first fragment carries at least 8 bytes of
/// payload and the TCP header is 20), so it is rejected.
fn check_tcp_overlap(header: &'static str, protocol: IpProtocol, frag_offset: u16) -> Result<()> {
    if protocol == IpProtocol::TCP && frag_offset == 8 {
        return Err(WireError::BadField {
            header,
            field: "TCP fragment offset",
            value: 8,
            bound: "not 8 bytes (RFC 1858 3.2)",
        });
    }
    Ok(())
}

/// Finds the L4 header of `protocol` at the start of `bytes` (the upper-layer bytes, bounded
/// by the IP length), which sit at `offset` in the frame. A first fragment must hold the whole
/// header (RFC 1858 § 3.1, RFC 7112); only an unfragmented UDP datagram must match its length
/// field, since a fragment holds part of the datagram.
fn parse_l4(protocol: IpProtocol, bytes: &[u8], offset: usize, frag: IpFrag) -> Result<Option<L4>> {
    let header_len = match protocol {
        IpProtocol::TCP => TcpPacket::new_checked(bytes)?.header_len(),
        IpProtocol::UDP if frag == IpFrag::No => {
            UdpPacket::new_checked(bytes)?;
            UDP_HEADER_LEN
        }
        IpProtocol::UDP => {
            ensure_len("udp", bytes, UDP_HEADER_LEN)?;
            UDP_HEADER_LEN
        }
        IpProtocol::ICMP => {
            ensure_len("icmpv4", bytes, ICMP_HEADER_LEN)?;
            ICMP_HEADER_LEN
        }
        IpProtocol::ICMPV6 => {
            ensure_len("icmpv6", bytes, ICMP_HEADER_LEN)?;
            ICMP_HEADER_LEN
        }
        IpProtocol::SCTP => {
            ensure_len("sctp", bytes, SCTP_HEADER_LEN)?;
            SCTP_HEADER_LEN
        }
        _ => return Ok(None),
    };
    Ok(Some(L4 {
        proto: protocol,
        offset,
        header_len,
    }))
}

/// RFC 768.
const UDP_HEADER_LEN: usize = 8;
/// The fixed part of every ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) message: type, code,
/// checksum and one 32-bit word.
const ICMP_HEADER_LEN: usize = 8;
/// The SCTP common header: ports, verification tag, checksum (RFC 9260 § 3.1).
const SCTP_HEADER_LEN: usize = 12;

#[cfg(test)]
mod tests;
