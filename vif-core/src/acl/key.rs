//! [`AclKey`]: what the policy engine reads of a frame — the [`FlowKey`] plus the two L4 fields
//! the flow key leaves out: the TCP flags (rules can match them, conntrack follows them) and the
//! ICMP echo identifier (conntrack keys echo flows on it, as Linux's `nf_conntrack_proto_icmp`).
//!
//! Extraction reuses the caller's [`FrameLayout`], so a datapath that already parsed the frame
//! reads only a few more bytes.

use crate::flow::{FlowIp, FlowKey};
use crate::wire::ethernet::EtherType;
use crate::wire::frame::{parse_frame, FrameLayout, IpFrag};
use crate::wire::ipv4::IpProtocol;
use crate::wire::tcp::TcpFlags;
use crate::wire::{Result, WireError};

/// ICMPv4 echo reply and request (RFC 792).
pub(crate) const ICMP_ECHO_REPLY: u16 = 0;
pub(crate) const ICMP_ECHO_REQUEST: u16 = 8;
/// ICMPv6 echo request and reply (RFC 4443 § 4.1, § 4.2).
pub(crate) const ICMPV6_ECHO_REQUEST: u16 = 128;
pub(crate) const ICMPV6_ECHO_REPLY: u16 = 129;

/// The fields of one frame the ACL engine, conntrack and anti-spoofing read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AclKey {
    pub flow: FlowKey,
    /// TCP only; empty otherwise.
    pub tcp_flags: TcpFlags,
    /// The identifier of an ICMP or ICMPv6 echo request or reply; 0 otherwise.
    pub icmp_echo_id: u16,
}

/// The IP version of a frame, as rules see it: the EtherType and the addresses must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum PacketFamily {
    /// Not IP (ARP included).
    None = 0,
    V4 = 1,
    V6 = 2,
}

impl AclKey {
    /// A key with no TCP flags and no echo identifier, e.g. for tests or non-TCP traffic.
    pub const fn from_flow(flow: FlowKey) -> AclKey {
        AclKey {
            flow,
            tcp_flags: TcpFlags::empty(),
            icmp_echo_id: 0,
        }
    }

    /// Parses `frame` and extracts its key.
    pub fn extract(frame: &[u8]) -> Result<AclKey> {
        let layout = parse_frame(frame)?;
        Self::extract_with_layout(frame, &layout)
    }

    /// Extracts the key of `frame`, whose layout the caller already has.
    pub fn extract_with_layout(frame: &[u8], layout: &FrameLayout) -> Result<AclKey> {
        let flow = FlowKey::extract_with_layout(frame, layout)?;
        let mut key = AclKey::from_flow(flow);
        let Some(l4) = layout.l4 else {
            return Ok(key);
        };
        let header = frame.get(l4.offset..).ok_or(WireError::BadField {
            header: "acl key",
            field: "l4 offset",
            value: 0,
            bound: "inside the frame (layout from another frame?)",
        })?;
        match l4.proto {
            // Byte 13 holds the flags (RFC 9293 § 3.1); parse_frame checked the whole header.
            IpProtocol::TCP => {
                if let Some(&flags) = header.get(13) {
                    key.tcp_flags = TcpFlags::from_bits(flags);
                }
            }
            // Bytes 4..6 hold the identifier of echo messages (RFC 792, RFC 4443 § 4.1).
            IpProtocol::ICMP | IpProtocol::ICMPV6 if key.is_echo() => {
                if let Some(id) = header.get(4..6) {
                    key.icmp_echo_id = u16::from_be_bytes([id[0], id[1]]);
                }
            }
            _ => {}
        }
        Ok(key)
    }

    pub(crate) fn family(&self) -> PacketFamily {
        match (self.flow.ethertype, self.flow.ip) {
            (EtherType::IPV4, FlowIp::V4 { .. }) => PacketFamily::V4,
            (EtherType::IPV6, FlowIp::V6 { .. }) => PacketFamily::V6,
            _ => PacketFamily::None,
        }
    }

    /// True when the L4 fields (ports, ICMP type and code, TCP flags) are known: an IP packet
    /// that is not a later fragment.
    pub(crate) fn has_l4(&self) -> bool {
        self.family() != PacketFamily::None && self.flow.frag != IpFrag::Later
    }

    /// An ICMPv4 echo request/reply or ICMPv6 echo request/reply with its header.
    pub(crate) fn is_echo(&self) -> bool {
        self.echo_kind().is_some()
    }

    /// `Some(true)` for a request, `Some(false)` for a reply.
    pub(crate) fn echo_kind(&self) -> Option<bool> {
        if !self.has_l4() {
            return None;
        }
        match (self.family(), self.flow.ip_proto, self.flow.src_port) {
            (PacketFamily::V4, 1, ICMP_ECHO_REQUEST) => Some(true),
            (PacketFamily::V4, 1, ICMP_ECHO_REPLY) => Some(false),
            (PacketFamily::V6, 58, ICMPV6_ECHO_REQUEST) => Some(true),
            (PacketFamily::V6, 58, ICMPV6_ECHO_REPLY) => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + ICMP echo request (id 0x1234, seq 1), laid out by hand from RFC 791
    /// and RFC 792; checksums are not looked at.
    fn echo_request() -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 20 + 8];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&28u16.to_be_bytes());
        frame[22] = 64;
        frame[23] = 1;
        frame[26..30].copy_from_slice(&[10, 0, 0, 1]);
        frame[30..34].copy_from_slice(&[10, 0, 0, 2]);
        frame[34] = 8;
        frame[38..40].copy_from_slice(&0x1234u16.to_be_bytes());
        frame[40..42].copy_from_slice(&1u16.to_be_bytes());
        frame
    }

    #[test]
    fn echo_id_and_tcp_flags_are_read() {
        let key = AclKey::extract(&echo_request()).unwrap();
        assert_eq!(key.icmp_echo_id, 0x1234);
        assert_eq!(key.echo_kind(), Some(true));
        assert_eq!(key.family(), PacketFamily::V4);

        // The same frame as TCP SYN|ACK to port 80: protocol 6, 20-byte header.
        let mut frame = echo_request();
        frame.resize(14 + 20 + 20, 0);
        frame[16..18].copy_from_slice(&40u16.to_be_bytes());
        frame[23] = 6;
        frame[34..38].copy_from_slice(&[0x30, 0x39, 0x00, 0x50]);
        frame[46] = 0x50;
        frame[47] = 0x12;
        let key = AclKey::extract(&frame).unwrap();
        assert_eq!(key.tcp_flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(key.icmp_echo_id, 0);
        assert_eq!(key.flow.dst_port, 80);
    }
}
