//! UDP (RFC 768): the 8-byte header, its length field and its checksum.
//!
//! The checksum helpers take the pseudo-header sum from the caller ([`checksum::pseudo_header_v4`]
//! or [`checksum::pseudo_header_v6`] with protocol 17 and the UDP length), so this file does not
//! care which IP version carries it. A zero checksum field means "not computed" over IPv4 only
//! (RFC 768); over IPv6 it is invalid (RFC 8200 § 8.1) except on tunnels that opt in
//! (RFC 6935/6936): [`UdpRepr::parse`] takes a [`ZeroChecksum`] so the caller says which.
//! Segmentation (USO) and checksum completion for virtio live in `offload`, on top of these views.
//!
//! [`checksum::pseudo_header_v4`]: crate::checksum::pseudo_header_v4
//! [`checksum::pseudo_header_v6`]: crate::checksum::pseudo_header_v6

use super::{ensure_len, Csum, Result, WireError};
use crate::checksum;

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The largest UDP datagram the 16-bit length field can describe.
pub const MAX_LEN: usize = u16::MAX as usize;

const HEADER: &str = "udp";

mod field {
    use crate::wire::field::*;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// What a zero checksum field means to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroChecksum {
    /// The sender did not compute one: accept (IPv4, RFC 768; IPv6 tunnels under RFC 6935).
    Absent,
    /// The datagram is invalid (IPv6, RFC 8200 § 8.1).
    Invalid,
}

/// A view over a UDP datagram. The datagram ends where its length field says; bytes after that
/// in the buffer (link-layer padding) are not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than the header or
    /// than the length field says.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len): use this on anything received.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Proves that no accessor can panic: the header fits, and the length field is at least the
    /// header and at most the buffer (RFC 768: "the minimum value of the length is eight").
    pub fn check_len(&self) -> Result<()> {
        let buffer = self.buffer.as_ref();
        ensure_len(HEADER, buffer, HEADER_LEN)?;
        let len = usize::from(self.length());
        if len < HEADER_LEN {
            return Err(WireError::BadField {
                header: HEADER,
                field: "length",
                value: len as u32,
                bound: ">= 8",
            });
        }
        ensure_len(HEADER, buffer, len)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field: header and payload.
    pub fn length(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.length())]
    }

    /// The datagram as the length field delimits it: header and payload.
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.length())]
    }

    /// Whether the checksum verifies against `pseudo_sum` (the pseudo-header sum for protocol 17
    /// and this datagram's length). Pure arithmetic: a zero field, which means "no checksum"
    /// over IPv4, is not special here; see [`UdpRepr::parse`].
    pub fn verify_checksum(&self, pseudo_sum: u16) -> bool {
        checksum::combine(&[pseudo_sum, checksum::data(self.datagram())]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    }

    /// Sets the length field (header and payload). Accessors past the header rely on it: call
    /// [`check_len`](UdpPacket::check_len) again if it may exceed the buffer.
    pub fn set_length(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.length());
        &mut self.buffer.as_mut()[field::PAYLOAD..len]
    }

    /// Computes and writes the checksum over the datagram and `pseudo_sum`. A computed zero is
    /// sent as 0xffff, since zero means "no checksum" (RFC 768).
    pub fn fill_checksum(&mut self, pseudo_sum: u16) {
        self.set_checksum(0);
        let sum = checksum::combine(&[pseudo_sum, checksum::data(self.datagram())]);
        let stored = match checksum::finish(sum) {
            0 => 0xffff,
            value => value,
        };
        self.set_checksum(stored);
    }

    /// Writes `pseudo_sum` uncomplemented, as a device expects for a partial checksum (virtio
    /// `NEEDS_CSUM` with `csum_offset` 6): summing from the UDP header and storing the
    /// complement then yields the full checksum.
    pub fn fill_partial_checksum(&mut self, pseudo_sum: u16) {
        self.set_checksum(pseudo_sum);
    }
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// The typed content of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    /// Payload bytes after the header, at most [`MAX_LEN`] − 8.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Reads a received datagram. With [`Csum::Verify`] the checksum must verify against
    /// `pseudo_sum`, except that a zero field is accepted when `zero` is [`ZeroChecksum::Absent`].
    /// [`Csum::Partial`] and [`Csum::Ignore`] accept any checksum. Ports are not filtered here.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        pseudo_sum: u16,
        csum: Csum,
        zero: ZeroChecksum,
    ) -> Result<UdpRepr> {
        packet.check_len()?;
        if csum == Csum::Verify {
            let absent = packet.checksum() == 0 && zero == ZeroChecksum::Absent;
            if !absent && !packet.verify_checksum(pseudo_sum) {
                return Err(WireError::BadChecksum { header: HEADER });
            }
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.length()) - HEADER_LEN,
        })
    }

    /// Header and payload length: the value of the length field.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Writes the header into a buffer of at least [`buffer_len`](Self::buffer_len) bytes whose
    /// payload is already in place (the checksum covers it). [`Csum::Verify`] computes the
    /// checksum, [`Csum::Partial`] writes `pseudo_sum` for a device to complete, and
    /// [`Csum::Ignore`] leaves the field as it is (write 0 for "no checksum" over IPv4).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        pseudo_sum: u16,
        csum: Csum,
    ) -> Result<()> {
        let len = self.buffer_len();
        let len_field = u16::try_from(len).map_err(|_| WireError::BadField {
            header: HEADER,
            field: "length",
            value: u32::try_from(len).unwrap_or(u32::MAX),
            bound: "<= 65535",
        })?;
        ensure_len(HEADER, packet.buffer.as_ref(), len)?;
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_length(len_field);
        match csum {
            Csum::Verify => packet.fill_checksum(pseudo_sum),
            Csum::Partial => packet.fill_partial_checksum(pseudo_sum),
            Csum::Ignore => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::pseudo_header_v4;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// 10.0.0.1:12345 → 10.0.0.2:53 carrying "vif", built by hand from the RFC 768 layout; the
    /// checksum 0xdefd was computed with a separate 16-bit-word Python reference over the IPv4
    /// pseudo-header and the datagram. Two bytes of link-layer padding follow.
    const DATAGRAM: [u8; 13] = [
        0x30, 0x39, 0x00, 0x35, 0x00, 0x0b, 0xde, 0xfd, 0x76, 0x69, 0x66, 0x00, 0x00,
    ];

    fn pseudo(len: usize) -> u16 {
        pseudo_header_v4(&SRC, &DST, 17, len as u16)
    }

    /// RFC 1071 reference: add 16-bit words one by one with end-around carry.
    fn naive_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn parses_fixture() {
        let packet = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((packet.src_port(), packet.dst_port()), (12345, 53));
        assert_eq!(packet.payload(), b"vif");
        assert!(packet.verify_checksum(pseudo(11)));
        let repr = UdpRepr::parse(&packet, pseudo(11), Csum::Verify, ZeroChecksum::Invalid);
        assert_eq!(
            repr,
            Ok(UdpRepr {
                src_port: 12345,
                dst_port: 53,
                payload_len: 3
            })
        );
    }

    #[test]
    fn emits_fixture() {
        let mut bytes = [0u8; 11];
        bytes[8..].copy_from_slice(b"vif");
        let repr = UdpRepr {
            src_port: 12345,
            dst_port: 53,
            payload_len: 3,
        };
        repr.emit(
            &mut UdpPacket::new_unchecked(&mut bytes[..]),
            pseudo(11),
            Csum::Verify,
        )
        .unwrap();
        assert_eq!(bytes, DATAGRAM[..11]);
    }

    #[test]
    fn checks_length_field() {
        let mut bytes = DATAGRAM;
        bytes[5] = 7;
        assert!(matches!(
            UdpPacket::new_checked(&bytes[..]),
            Err(WireError::BadField {
                field: "length",
                value: 7,
                ..
            })
        ));
        bytes[5] = 14;
        assert_eq!(
            UdpPacket::new_checked(&bytes[..]),
            Err(WireError::Truncated {
                header: "udp",
                need: 14,
                len: 13
            })
        );
        assert!(UdpPacket::new_checked(&DATAGRAM[..7]).is_err());
    }

    #[test]
    fn zero_checksum_depends_on_caller() {
        let mut bytes = DATAGRAM;
        bytes[6..8].copy_from_slice(&[0, 0]);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        let parse = |zero| UdpRepr::parse(&packet, pseudo(11), Csum::Verify, zero);
        assert!(parse(ZeroChecksum::Absent).is_ok());
        assert_eq!(
            parse(ZeroChecksum::Invalid),
            Err(WireError::BadChecksum { header: "udp" })
        );
        // A wrong non-zero checksum fails either way, unless the caller skips verification.
        bytes[7] = 1;
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        for zero in [ZeroChecksum::Absent, ZeroChecksum::Invalid] {
            assert!(UdpRepr::parse(&packet, pseudo(11), Csum::Verify, zero).is_err());
            assert!(UdpRepr::parse(&packet, pseudo(11), Csum::Ignore, zero).is_ok());
        }
    }

    #[test]
    fn partial_checksum_completes_to_full() {
        // A device completing NEEDS_CSUM sums from the UDP header and stores the complement.
        let mut bytes = DATAGRAM[..11].to_vec();
        let mut packet = UdpPacket::new_unchecked(&mut bytes[..]);
        packet.fill_partial_checksum(pseudo(11));
        let completed = checksum::finish(checksum::data(packet.datagram()));
        packet.set_checksum(completed);
        assert!(packet.verify_checksum(pseudo(11)));
        assert_eq!(packet.checksum(), 0xdefd);
    }

    #[test]
    fn emit_refuses_oversize() {
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: MAX_LEN,
        };
        let mut bytes = [0u8; 16];
        assert!(matches!(
            repr.emit(
                &mut UdpPacket::new_unchecked(&mut bytes[..]),
                0,
                Csum::Verify
            ),
            Err(WireError::BadField {
                field: "length",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(
            src_port in any::<u16>(),
            dst_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            padding in 0usize..4,
        ) {
            let repr = UdpRepr { src_port, dst_port, payload_len: payload.len() };
            let mut bytes = vec![0u8; repr.buffer_len() + padding];
            bytes[HEADER_LEN..repr.buffer_len()].copy_from_slice(&payload);
            let pseudo_sum = pseudo(repr.buffer_len());
            repr.emit(&mut UdpPacket::new_unchecked(&mut bytes[..]), pseudo_sum, Csum::Verify).unwrap();
            let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(
                UdpRepr::parse(&packet, pseudo_sum, Csum::Verify, ZeroChecksum::Invalid),
                Ok(repr)
            );
            prop_assert_eq!(packet.payload(), &payload[..]);
            prop_assert_ne!(packet.checksum(), 0);
            // Differential: the stored checksum makes the naive sum over pseudo-header and
            // datagram all ones.
            let mut pseudo_bytes = [0u8; 12];
            pseudo_bytes[..4].copy_from_slice(&SRC.octets());
            pseudo_bytes[4..8].copy_from_slice(&DST.octets());
            pseudo_bytes[9] = 17;
            pseudo_bytes[10..].copy_from_slice(&(repr.buffer_len() as u16).to_be_bytes());
            prop_assert_eq!(naive_sum(&[&pseudo_bytes, packet.datagram()]), 0xffff);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (packet.src_port(), packet.dst_port(), packet.checksum(), packet.payload());
                prop_assert!(usize::from(packet.length()) <= bytes.len());
                let _ = packet.verify_checksum(0);
                prop_assert!(UdpRepr::parse(&packet, 0, Csum::Ignore, ZeroChecksum::Absent).is_ok());
            }
        }
    }
}
