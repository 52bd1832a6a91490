//! IPv6 fixed header (RFC 8200 § 3): the view and a typed `Ipv6Repr`.
//!
//! `check_len` proves version 6 and 40 + payload length ≤ buffer; bytes past the payload length
//! (Ethernet padding) are not payload. The extension-header chain that may sit between this
//! header and the upper layer is walked by [`ext`], bounded in count and length; jumbograms
//! (RFC 2675, payload length 0 with a hop-by-hop jumbo option) are not supported: virtio caps a
//! frame at 64 KiB, so a zero payload length means an empty payload.

use std::net::Ipv6Addr;

use crate::checksum;
use crate::wire::ipv4::IpProtocol;
use crate::wire::{ensure_len, Result, WireError};

pub mod ext;

pub use ext::{Ipv6Fragment, Ipv6FragmentHeader, Ipv6FragmentRepr, Ipv6Upper, MAX_EXT_HEADERS};

mod field {
    use crate::wire::field::*;
    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

const HEADER: &str = "ipv6";
const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

/// A read/write view of an IPv6 header and its payload (extension headers included).
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const HEADER_LEN: usize = field::DST_ADDR.end;

    /// Wraps `buffer` without checks; accessors may panic until [`Self::check_len`] succeeds.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps untrusted bytes: fails unless every accessor is safe to call.
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Proves version 6 and the payload length within the buffer (RFC 8200 § 3).
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        ensure_len(HEADER, buf, Self::HEADER_LEN)?;
        if self.version() != 6 {
            return Err(WireError::BadField {
                header: HEADER,
                field: "version",
                value: self.version().into(),
                bound: "6",
            });
        }
        ensure_len(HEADER, buf, self.total_len())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// The 8-bit traffic class: DSCP (RFC 2474) in the high 6 bits, ECN (RFC 3168) in the low 2.
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// The 20-bit flow label (RFC 6437).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & FLOW_LABEL_MASK
    }

    /// Bytes after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Fixed header plus payload length: where the packet ends inside the buffer.
    pub fn total_len(&self) -> usize {
        Self::HEADER_LEN + usize::from(self.payload_len())
    }

    /// The first next-header value: an extension header or the upper-layer protocol.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read16(&self.buffer.as_ref()[field::SRC_ADDR]))
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read16(&self.buffer.as_ref()[field::DST_ADDR]))
    }

    /// The bytes after the fixed header up to the payload length: extension headers and the
    /// upper layer.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..self.total_len()]
    }

    /// Walks the extension headers to the upper layer (RFC 8200 § 4); offsets in the result are
    /// relative to [`Self::payload`].
    pub fn upper_layer(&self) -> Result<Ipv6Upper> {
        ext::walk(self.next_header(), self.payload())
    }

    /// The pseudo-header sum (RFC 8200 § 8.1) for `length` bytes of upper-layer `protocol`, not
    /// complemented. RFC 8200 § 8.1 wants the *final* destination when a routing header is
    /// present; this uses the destination field, which is the final one unless segments are left.
    pub fn pseudo_header_sum(&self, protocol: IpProtocol, length: u32) -> u16 {
        checksum::pseudo_header_v6(&self.src_addr(), &self.dst_addr(), protocol.0, length)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_first_word(&mut self, word: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    pub fn set_version(&mut self, version: u8) {
        let word = self.first_word();
        self.set_first_word((word & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28));
    }

    pub fn set_traffic_class(&mut self, class: u8) {
        let word = self.first_word();
        self.set_first_word((word & 0xf00f_ffff) | (u32::from(class) << 20));
    }

    /// Sets the flow label; bits above the 20th are dropped.
    pub fn set_flow_label(&mut self, label: u32) {
        let word = self.first_word();
        self.set_first_word((word & !FLOW_LABEL_MASK) | (label & FLOW_LABEL_MASK));
    }

    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_next_header(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = protocol.0;
    }

    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[Self::HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Copies sixteen bytes out of a slice that the caller's field range already sized to sixteen.
fn read16(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(bytes);
    out
}

/// A typed IPv6 fixed header. IPv6 has no header checksum (RFC 8200 § 3), so unlike the other
/// `Repr`s, `parse` and `emit` take no [`crate::wire::Csum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    /// The first next-header value.
    pub next_header: IpProtocol,
    /// Bytes after the fixed header, extension headers included.
    pub payload_len: u16,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        Ipv6Packet::<&[u8]>::HEADER_LEN
    }

    /// Writes the fixed header (the payload is left alone). Fails, writing nothing, if the
    /// buffer is shorter than the header or the flow label has more than 20 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) -> Result<()> {
        ensure_len(HEADER, packet.buffer.as_ref(), self.buffer_len())?;
        if self.flow_label > FLOW_LABEL_MASK {
            return Err(WireError::BadField {
                header: HEADER,
                field: "flow_label",
                value: self.flow_label,
                bound: "<= 0xfffff",
            });
        }
        packet.set_first_word(0x6000_0000);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hand-built per RFC 8200 § 3 with Python `struct`: traffic class 0xb8 (DSCP 46), flow
    /// label 0x12345, payload length 12, next header UDP, hop limit 64, 2001:db8::1 ->
    /// 2001:db8::2, then a 12-byte UDP datagram ("ping", checksum left 0) and 4 bytes of padding.
    const PACKET_BYTES: [u8; 56] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x0c, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x04,
        0xd2, 0x16, 0x2e, 0x00, 0x0c, 0x00, 0x00, 0x70, 0x69, 0x6e, 0x67, 0, 0, 0, 0,
    ];

    #[test]
    fn reads_fixture() {
        let packet = Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!((packet.traffic_class(), packet.dscp()), (0xb8, 46));
        assert_eq!(packet.flow_label(), 0x12345);
        assert_eq!(packet.payload_len(), 12);
        assert_eq!(packet.next_header(), IpProtocol::UDP);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(
            packet.src_addr(),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            packet.dst_addr(),
            "2001:db8::2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(packet.payload().len(), 12, "padding is not payload");
        let upper = packet.upper_layer().unwrap();
        assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 0));
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut long = PACKET_BYTES;
        long[5] = 17; // 40 + 17 > 56
        assert!(matches!(
            Ipv6Packet::new_checked(&long[..]),
            Err(WireError::Truncated { need: 57, .. })
        ));
        let mut v4 = PACKET_BYTES;
        v4[0] = 0x4b;
        assert!(Ipv6Packet::new_checked(&v4[..]).is_err());
        assert!(Ipv6Packet::new_checked(&PACKET_BYTES[..39]).is_err());
    }

    #[test]
    fn setters_keep_neighbouring_bits() {
        let mut bytes = PACKET_BYTES;
        let mut packet = Ipv6Packet::new_unchecked(&mut bytes[..]);
        packet.set_traffic_class(0x01);
        assert_eq!((packet.version(), packet.flow_label()), (6, 0x12345));
        packet.set_flow_label(0xfff_ffff);
        assert_eq!(
            (
                packet.version(),
                packet.traffic_class(),
                packet.flow_label()
            ),
            (6, 0x01, 0xfffff)
        );
    }

    #[test]
    fn emit_rejects_short_buffer_and_wide_flow_label() {
        let repr = Ipv6Repr::parse(&Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap()).unwrap();
        let mut short = [0u8; 39];
        assert!(repr
            .emit(&mut Ipv6Packet::new_unchecked(&mut short[..]))
            .is_err());
        let mut buf = [0u8; 40];
        let wide = Ipv6Repr {
            flow_label: 0x10_0000,
            ..repr
        };
        assert!(wide
            .emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]))
            .is_err());
        assert_eq!(buf, [0u8; 40], "nothing written on error");
    }

    pub(super) fn arb_repr() -> impl Strategy<Value = Ipv6Repr> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            0u32..=FLOW_LABEL_MASK,
        )
            .prop_map(|(src, dst, nh, len, hop, tc, flow)| Ipv6Repr {
                src_addr: src.into(),
                dst_addr: dst.into(),
                next_header: IpProtocol(nh),
                payload_len: len,
                hop_limit: hop,
                traffic_class: tc,
                flow_label: flow,
            })
    }

    proptest! {
        #[test]
        fn round_trip(repr in arb_repr()) {
            let mut buf = vec![0u8; repr.buffer_len() + usize::from(repr.payload_len)];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..])).unwrap();
            let packet = Ipv6Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&packet), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(packet) = Ipv6Packet::new_checked(&bytes[..]) {
                let _ = (packet.payload(), packet.flow_label(), packet.pseudo_header_sum(IpProtocol::TCP, 20));
                if let Ok(upper) = packet.upper_layer() {
                    prop_assert!(upper.offset <= packet.payload().len());
                }
            }
        }
    }
}
