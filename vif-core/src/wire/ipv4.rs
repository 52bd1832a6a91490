//! IPv4 header (RFC 791 § 3.1): the view and a typed `Ipv4Repr`. The options walk lives in
//! [`options`]; [`IpProtocol`], shared with IPv6, in `protocol`.
//!
//! `check_len` proves every length field consistent: version 4, IHL ≥ 5, header within the buffer,
//! header ≤ total length ≤ buffer. Bytes past the total length (Ethernet pads frames to 60 bytes)
//! are not payload. Options are walked only on demand ([`Ipv4Packet::options`],
//! [`Ipv4Packet::check_options`], [`Ipv4Repr::parse`]): the datapath forwards them untouched.
//! Fragment reassembly and the L4 checksum belong to others (`frame.rs`, `offload.rs`).

use std::net::Ipv4Addr;

use crate::checksum;
use crate::wire::{ensure_len, Csum, Result, WireError};

pub mod options;
mod protocol;

pub use options::{Ipv4Option, Ipv4OptionIter};
pub use protocol::IpProtocol;

mod field {
    use crate::wire::field::*;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

const HEADER: &str = "ipv4";
/// Flag bits inside `FLG_OFF` (RFC 791 § 3.1: bit 0 reserved, DF, MF, 13-bit offset).
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 header and its payload.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// The length of a header without options.
    pub const HEADER_LEN: usize = field::DST_ADDR.end;
    /// The longest header: IHL is 4 bits of 32-bit words.
    pub const MAX_HEADER_LEN: usize = 60;

    /// Wraps `buffer` without checks; accessors may panic until [`Self::check_len`] succeeds.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps untrusted bytes: fails unless every accessor is safe to call.
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Proves the length fields consistent with the buffer (RFC 791 § 3.1, RFC 1122 § 3.2.1.1/2).
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        ensure_len(HEADER, buf, Self::HEADER_LEN)?;
        if self.version() != 4 {
            return Err(bad("version", self.version().into(), "4"));
        }
        let header_len = self.header_len();
        if header_len < Self::HEADER_LEN {
            return Err(bad("ihl", (header_len / 4) as u32, ">= 5"));
        }
        ensure_len(HEADER, buf, header_len)?;
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(bad("total_len", total_len as u32, ">= header length"));
        }
        ensure_len(HEADER, buf, total_len)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref()[at]
    }

    #[inline]
    fn word(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn version(&self) -> u8 {
        self.byte(field::VER_IHL) >> 4
    }

    /// Header length in bytes, options included (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.byte(field::VER_IHL) & 0x0f) * 4
    }

    /// Differentiated services code point (RFC 2474), 6 bits.
    pub fn dscp(&self) -> u8 {
        self.byte(field::DSCP_ECN) >> 2
    }

    /// Explicit congestion notification (RFC 3168), 2 bits.
    pub fn ecn(&self) -> u8 {
        self.byte(field::DSCP_ECN) & 0x03
    }

    /// Header plus payload, in bytes; the buffer may hold Ethernet padding past it.
    pub fn total_len(&self) -> u16 {
        self.word(field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        self.word(field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        self.word(field::FLG_OFF) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.word(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.word(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Any fragment of a larger datagram, first one included.
    pub fn is_fragment(&self) -> bool {
        self.word(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Offset 0: this packet (fragment or whole) carries the upper-layer header.
    pub fn is_first_fragment(&self) -> bool {
        self.word(field::FLG_OFF) & OFFSET_MASK == 0
    }

    pub fn ttl(&self) -> u8 {
        self.byte(field::TTL)
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.byte(field::PROTOCOL))
    }

    pub fn checksum(&self) -> u16 {
        self.word(field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// True when the header checksum verifies: the sum over the header, checksum included, is
    /// all ones (RFC 791 § 3.1, RFC 1071 § 1).
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// The raw option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..self.header_len()]
    }

    /// Walks the options; the iterator yields an error, then stops, on a malformed one.
    pub fn option_iter(&self) -> Ipv4OptionIter<'_> {
        Ipv4OptionIter::new(self.options())
    }

    /// Fails on the first malformed option (a length below 2 or past the header).
    pub fn check_options(&self) -> Result<()> {
        self.option_iter().try_for_each(|option| option.map(drop))
    }

    /// The upper-layer bytes: from the end of the header to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Bytes of upper-layer data, as counted in the L4 pseudo-header.
    pub fn payload_len(&self) -> u16 {
        // check_len proved header_len <= total_len, and header_len <= 60.
        self.total_len().saturating_sub(self.header_len() as u16)
    }

    /// The pseudo-header sum (RFC 793 § 3.1, RFC 768) for an upper-layer packet of `length`
    /// bytes, not complemented: what virtio `NEEDS_CSUM` leaves in the L4 checksum field.
    pub fn pseudo_header_sum(&self, length: u16) -> u16 {
        checksum::pseudo_header_v4(
            &self.src_addr(),
            &self.dst_addr(),
            self.protocol().0,
            length,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn set_word(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets IHL from a length in bytes; a length that is not a multiple of 4 is rounded down.
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    pub fn set_total_len(&mut self, len: u16) {
        self.set_word(field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        self.set_word(field::IDENT, ident);
    }

    /// Clears the reserved bit, DF, MF and the fragment offset.
    pub fn clear_flags(&mut self) {
        self.set_word(field::FLG_OFF, 0);
    }

    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(FLAG_DF, value);
    }

    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(FLAG_MF, value);
    }

    fn set_flag(&mut self, flag: u16, value: bool) {
        let raw = self.word(field::FLG_OFF);
        self.set_word(field::FLG_OFF, if value { raw | flag } else { raw & !flag });
    }

    /// Sets the fragment offset from bytes; the low 3 bits are dropped (8-byte units).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let raw = self.word(field::FLG_OFF);
        self.set_word(field::FLG_OFF, (raw & !OFFSET_MASK) | (offset >> 3));
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.0;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_word(field::CHECKSUM, checksum);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum over IHL × 4 bytes and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(checksum::finish(sum));
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[Self::HEADER_LEN..end]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

fn bad(field: &'static str, value: u32, bound: &'static str) -> WireError {
    WireError::BadField {
        header: HEADER,
        field,
        value,
        bound,
    }
}

/// A typed IPv4 header. Options are validated by `parse` but not kept: `emit` writes a
/// 20-byte header, which is what the backend ever builds (VXLAN outer headers, ICMP replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Upper-layer bytes after the header (total length − header length).
    pub payload_len: u16,
    pub ttl: u8,
    /// 6 bits.
    pub dscp: u8,
    /// 2 bits.
    pub ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes, a multiple of 8.
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Parses a checked packet, validating options and, with [`Csum::Verify`], the header checksum.
    /// The IPv4 header checksum is never offloaded by virtio, so `Partial` and `Ignore` both
    /// mean "the caller trusts it".
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>, csum: Csum) -> Result<Ipv4Repr> {
        packet.check_len()?;
        packet.check_options()?;
        if csum == Csum::Verify && !packet.verify_checksum() {
            return Err(WireError::BadChecksum { header: HEADER });
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload_len(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// The header bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Ipv4Packet::<&[u8]>::HEADER_LEN
    }

    /// Writes the header into the first 20 bytes of `packet` (the payload is left alone).
    /// `Verify` and `Partial` fill the header checksum; `Ignore` leaves the field as it is.
    /// Fails, writing nothing, if the buffer is shorter than the header or a field is out of range.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
        csum: Csum,
    ) -> Result<()> {
        ensure_len(HEADER, packet.buffer.as_ref(), self.buffer_len())?;
        let total_len = self
            .payload_len
            .checked_add(self.buffer_len() as u16)
            .ok_or(bad("payload_len", self.payload_len.into(), "<= 65515"))?;
        if self.dscp > 0x3f {
            return Err(bad("dscp", self.dscp.into(), "<= 63"));
        }
        if self.ecn > 0x03 {
            return Err(bad("ecn", self.ecn.into(), "<= 3"));
        }
        if self.frag_offset & 0x7 != 0 {
            return Err(bad(
                "frag_offset",
                self.frag_offset.into(),
                "a multiple of 8",
            ));
        }
        packet.set_version(4);
        packet.set_header_len(self.buffer_len());
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        if csum != Csum::Ignore {
            packet.fill_checksum();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hand-built per RFC 791 § 3.1 with Python `struct`: IHL 6 (router alert option
    /// 94 04 00 00), DSCP 46 / ECN 1, ident 0x1234, DF, TTL 64, UDP 10.0.0.1 -> 10.0.0.2,
    /// a 12-byte UDP datagram ("ping"), header checksum 0x7ed5.
    const PACKET_BYTES: [u8; 36] = [
        0x46, 0xb9, 0x00, 0x24, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x7e, 0xd5, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, 0x94, 0x04, 0x00, 0x00, 0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c,
        0x00, 0x00, 0x70, 0x69, 0x6e, 0x67,
    ];

    #[test]
    fn reads_fixture() {
        let packet = Ipv4Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!((packet.dscp(), packet.ecn()), (46, 1));
        assert_eq!(packet.total_len(), 36);
        assert_eq!(packet.ident(), 0x1234);
        assert!(packet.dont_frag() && !packet.more_frags() && !packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), IpProtocol::UDP);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(packet.verify_checksum());
        let options: Vec<_> = packet.option_iter().collect();
        assert_eq!(
            options,
            vec![Ok(Ipv4Option {
                kind: Ipv4Option::ROUTER_ALERT,
                data: &[0, 0]
            })]
        );
        assert_eq!(packet.payload().len(), 12);
        assert_eq!(&packet.payload()[8..], b"ping");
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut padded = PACKET_BYTES.to_vec();
        padded.extend_from_slice(&[0; 10]);
        let packet = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload().len(), 12);
    }

    #[test]
    fn fill_checksum_matches_fixture() {
        let mut bytes = PACKET_BYTES;
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_checksum(0);
        packet.fill_checksum();
        assert_eq!(packet.checksum(), 0x7ed5);
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut ihl4 = PACKET_BYTES;
        ihl4[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl4[..]).unwrap_err(),
            bad("ihl", 4, ">= 5")
        );
        let mut long = PACKET_BYTES;
        long[3] = 37;
        assert!(matches!(
            Ipv4Packet::new_checked(&long[..]),
            Err(WireError::Truncated { need: 37, .. })
        ));
        let mut short = PACKET_BYTES;
        short[3] = 23; // below the 24-byte header
        assert!(Ipv4Packet::new_checked(&short[..]).is_err());
        let mut v6 = PACKET_BYTES;
        v6[0] = 0x66;
        assert!(Ipv4Packet::new_checked(&v6[..]).is_err());
        let mut ihl15 = PACKET_BYTES;
        ihl15[0] = 0x4f; // 60-byte header in a 36-byte buffer
        assert!(Ipv4Packet::new_checked(&ihl15[..]).is_err());
        assert!(Ipv4Packet::new_checked(&PACKET_BYTES[..19]).is_err());
    }

    #[test]
    fn malformed_options_fail_parse() {
        let mut bad_option = PACKET_BYTES;
        bad_option[21] = 1;
        let packet = Ipv4Packet::new_checked(&bad_option[..]).unwrap();
        assert!(Ipv4Repr::parse(&packet, Csum::Ignore).is_err());
    }

    #[test]
    fn fragment_fields() {
        let mut bytes = PACKET_BYTES;
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_more_frags(true);
        assert!(packet.is_fragment() && packet.is_first_fragment());
        packet.set_frag_offset(1480);
        packet.set_more_frags(false);
        assert_eq!(packet.frag_offset(), 1480);
        assert!(packet.dont_frag(), "DF survives offset changes");
        assert!(packet.is_fragment() && !packet.is_first_fragment());
    }

    #[test]
    fn bad_checksum_is_rejected_only_when_verifying() {
        let mut bytes = PACKET_BYTES;
        bytes[11] ^= 1;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Ipv4Repr::parse(&packet, Csum::Verify),
            Err(WireError::BadChecksum { header: "ipv4" })
        );
        assert!(Ipv4Repr::parse(&packet, Csum::Ignore).is_ok());
    }

    #[test]
    fn emit_rejects_short_buffer_and_bad_fields() {
        let packet = Ipv4Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        let repr = Ipv4Repr::parse(&packet, Csum::Verify).unwrap();
        let mut short = [0u8; 19];
        assert!(repr
            .emit(&mut Ipv4Packet::new_unchecked(&mut short[..]), Csum::Verify)
            .is_err());
        let mut buf = [0u8; 20];
        for bad_repr in [
            Ipv4Repr { dscp: 64, ..repr },
            Ipv4Repr { ecn: 4, ..repr },
            Ipv4Repr {
                frag_offset: 9,
                ..repr
            },
            Ipv4Repr {
                payload_len: 65516,
                ..repr
            },
        ] {
            let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
            assert!(bad_repr.emit(&mut packet, Csum::Verify).is_err());
        }
        assert_eq!(buf, [0u8; 20], "nothing written on error");
    }

    #[test]
    fn pseudo_header_sum_matches_checksum_module() {
        let packet = Ipv4Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(
            packet.pseudo_header_sum(12),
            checksum::pseudo_header_v4(
                &Ipv4Addr::new(10, 0, 0, 1),
                &Ipv4Addr::new(10, 0, 0, 2),
                17,
                12
            )
        );
    }

    fn arb_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            (
                any::<[u8; 4]>(),
                any::<[u8; 4]>(),
                any::<u8>(),
                0u16..=65515,
            ),
            (any::<u8>(), 0u8..64, 0u8..4, any::<u16>()),
            (any::<bool>(), any::<bool>(), 0u16..8192),
        )
            .prop_map(
                |((src, dst, proto, len), (ttl, dscp, ecn, ident), (df, mf, off))| Ipv4Repr {
                    src_addr: src.into(),
                    dst_addr: dst.into(),
                    protocol: IpProtocol(proto),
                    payload_len: len,
                    ttl,
                    dscp,
                    ecn,
                    ident,
                    dont_frag: df,
                    more_frags: mf,
                    frag_offset: off << 3,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(repr in arb_repr()) {
            let mut buf = vec![0u8; repr.buffer_len() + usize::from(repr.payload_len)];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), Csum::Verify).unwrap();
            let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&packet, Csum::Verify), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (packet.payload(), packet.options(), packet.verify_checksum());
                let _ = (packet.frag_offset(), packet.payload_len(), packet.pseudo_header_sum(8));
                let _ = packet.option_iter().count();
                let _ = Ipv4Repr::parse(&packet, Csum::Verify);
                prop_assert!(packet.payload().len() <= bytes.len());
            }
        }
    }
}
