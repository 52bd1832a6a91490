//! ICMP for IPv4 (RFC 792): the view and a typed `Icmpv4Repr` for echo, destination unreachable
//! and time exceeded.
//!
//! The view wraps exactly the ICMP message (the IPv4 payload, bounded by the total length): the
//! checksum covers all of it and nothing else. Every ICMPv4 message starts with the same 8 bytes
//! (type, code, checksum, 4 type-specific bytes), so `check_len` needs nothing more. Error
//! messages carry the invoking packet's IP header plus at least 8 bytes of its data (RFC 792,
//! RFC 1812 § 4.3.2.3 allows more); it is returned as bytes, not parsed: it is truncated by
//! design, so an `Ipv4Packet::new_checked` over it would fail on its total length.

use std::fmt;

use crate::checksum;
use crate::wire::{ensure_len, Csum, Result, WireError};

/// The ICMPv4 type field (IANA "ICMP Type Numbers").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Icmpv4Message(pub u8);

impl Icmpv4Message {
    pub const ECHO_REPLY: Icmpv4Message = Icmpv4Message(0);
    pub const DST_UNREACHABLE: Icmpv4Message = Icmpv4Message(3);
    pub const REDIRECT: Icmpv4Message = Icmpv4Message(5);
    pub const ECHO_REQUEST: Icmpv4Message = Icmpv4Message(8);
    pub const ROUTER_ADVERT: Icmpv4Message = Icmpv4Message(9);
    pub const ROUTER_SOLICIT: Icmpv4Message = Icmpv4Message(10);
    pub const TIME_EXCEEDED: Icmpv4Message = Icmpv4Message(11);
    pub const PARAM_PROBLEM: Icmpv4Message = Icmpv4Message(12);
    pub const TIMESTAMP: Icmpv4Message = Icmpv4Message(13);
    pub const TIMESTAMP_REPLY: Icmpv4Message = Icmpv4Message(14);

    /// Error messages quote an invoking packet (RFC 1122 § 3.2.2: never answer one with another).
    pub const fn is_error(self) -> bool {
        matches!(self.0, 3 | 5 | 11 | 12)
    }
}

impl fmt::Debug for Icmpv4Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::ECHO_REPLY => "EchoReply",
            Self::DST_UNREACHABLE => "DstUnreachable",
            Self::REDIRECT => "Redirect",
            Self::ECHO_REQUEST => "EchoRequest",
            Self::TIME_EXCEEDED => "TimeExceeded",
            Self::PARAM_PROBLEM => "ParamProblem",
            _ => return write!(f, "Icmpv4Message({})", self.0),
        };
        f.write_str(name)
    }
}

/// Destination-unreachable code "fragmentation needed and DF set" (RFC 792), the one that
/// carries a next-hop MTU (RFC 1191 § 4).
pub const CODE_FRAG_NEEDED: u8 = 4;

mod field {
    use crate::wire::field::*;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ_NO: Field = 6..8;
    /// RFC 1191 § 4: the low half of the otherwise unused word in "fragmentation needed".
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const REST_OF_HEADER: Field = 4..8;
    pub const DATA: Rest = 8..;
}

const HEADER: &str = "icmpv4";

/// A read/write view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const HEADER_LEN: usize = field::DATA.start;

    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Every message has the 8-byte header; there is no length field.
    pub fn check_len(&self) -> Result<()> {
        ensure_len(HEADER, self.buffer.as_ref(), Self::HEADER_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message(self.buffer.as_ref()[field::TYPE])
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        self.word(field::CHECKSUM)
    }

    /// Echo identifier (meaningful for echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        self.word(field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo request/reply).
    pub fn echo_seq_no(&self) -> u16 {
        self.word(field::ECHO_SEQ_NO)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191 § 4); 0 from old routers.
    pub fn next_hop_mtu(&self) -> u16 {
        self.word(field::NEXT_HOP_MTU)
    }

    /// The four type-specific header bytes (pointer, gateway, unused...).
    pub fn rest_of_header(&self) -> &[u8] {
        &self.buffer.as_ref()[field::REST_OF_HEADER]
    }

    /// Echo data, or for error messages the invoking packet.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// True when the checksum over the whole message verifies (RFC 792).
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    fn set_word(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_msg_type(&mut self, message: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = message.0;
    }

    pub fn set_msg_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_word(field::CHECKSUM, checksum);
    }

    pub fn set_echo_ident(&mut self, ident: u16) {
        self.set_word(field::ECHO_IDENT, ident);
    }

    pub fn set_echo_seq_no(&mut self, seq_no: u16) {
        self.set_word(field::ECHO_SEQ_NO, seq_no);
    }

    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        self.set_word(field::NEXT_HOP_MTU, mtu);
    }

    pub fn rest_of_header_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::REST_OF_HEADER]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the whole buffer and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(checksum::finish(sum));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A typed ICMPv4 message, borrowing its data from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// `next_hop_mtu` is meaningful for [`CODE_FRAG_NEEDED`] and 0 otherwise.
    DstUnreachable {
        code: u8,
        next_hop_mtu: u16,
        invoking: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        invoking: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses echo, destination unreachable and time exceeded; other types are `Unsupported`.
    /// `Csum::Verify` checks the checksum; `Partial` and `Ignore` do not.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
        csum: Csum,
    ) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if csum == Csum::Verify && !packet.verify_checksum() {
            return Err(WireError::BadChecksum { header: HEADER });
        }
        let data = packet.buffer.as_ref().get(field::DATA).unwrap_or_default();
        let code = packet.msg_code();
        match packet.msg_type() {
            Icmpv4Message::ECHO_REQUEST | Icmpv4Message::ECHO_REPLY if code != 0 => {
                Err(WireError::BadField {
                    header: HEADER,
                    field: "echo code",
                    value: code.into(),
                    bound: "0",
                })
            }
            Icmpv4Message::ECHO_REQUEST => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv4Message::ECHO_REPLY => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv4Message::DST_UNREACHABLE => Ok(Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu: if code == CODE_FRAG_NEEDED {
                    packet.next_hop_mtu()
                } else {
                    0
                },
                invoking: data,
            }),
            Icmpv4Message::TIME_EXCEEDED => Ok(Icmpv4Repr::TimeExceeded {
                code,
                invoking: data,
            }),
            _ => Err(WireError::Unsupported {
                header: HEADER,
                what: "message type",
            }),
        }
    }

    /// Header plus data.
    pub fn buffer_len(&self) -> usize {
        let data = match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => data,
            Icmpv4Repr::DstUnreachable { invoking, .. }
            | Icmpv4Repr::TimeExceeded { invoking, .. } => invoking,
        };
        Icmpv4Packet::<&[u8]>::HEADER_LEN + data.len()
    }

    /// Writes the message into the first `buffer_len()` bytes of `packet`, whose buffer must be
    /// exactly that long for the checksum to cover the message alone. `Verify` fills the
    /// checksum; `Partial` writes 0 (ICMPv4 has no pseudo-header, so the partial sum is empty);
    /// `Ignore` leaves it. Fails, writing nothing, if the buffer is too short.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv4Packet<T>,
        csum: Csum,
    ) -> Result<()> {
        ensure_len(HEADER, packet.buffer.as_ref(), self.buffer_len())?;
        let (message, code, data) = match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                let message = if matches!(self, Icmpv4Repr::EchoRequest { .. }) {
                    Icmpv4Message::ECHO_REQUEST
                } else {
                    Icmpv4Message::ECHO_REPLY
                };
                (message, 0, data)
            }
            Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu,
                invoking,
            } => {
                packet.rest_of_header_mut().fill(0);
                packet.set_next_hop_mtu(next_hop_mtu);
                (Icmpv4Message::DST_UNREACHABLE, code, invoking)
            }
            Icmpv4Repr::TimeExceeded { code, invoking } => {
                packet.rest_of_header_mut().fill(0);
                (Icmpv4Message::TIME_EXCEEDED, code, invoking)
            }
        };
        packet.set_msg_type(message);
        packet.set_msg_code(code);
        packet.data_mut()[..data.len()].copy_from_slice(data);
        match csum {
            Csum::Verify => packet.fill_checksum(),
            Csum::Partial => packet.set_checksum(0),
            Csum::Ignore => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Generated with Python `struct` per RFC 792: echo request, ident 0x1234, seq 1, data
    /// "abcdefgh", checksum 0x5435.
    const ECHO_BYTES: [u8; 16] = [
        0x08, 0x00, 0x54, 0x35, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];

    /// Generated with Python `struct` per RFC 792 / RFC 1191: destination unreachable,
    /// fragmentation needed, next-hop MTU 1400, quoting a 20-byte IPv4 header (10.0.0.1 ->
    /// 10.0.0.2, ICMP) and the first 8 bytes of its echo request; checksum 0x03f6.
    const FRAG_NEEDED_BYTES: [u8; 36] = [
        0x03, 0x04, 0x03, 0xf6, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00, 0x00, 0x54, 0x00, 0x00, 0x40,
        0x00, 0x40, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x00,
        0x00, 0x00, 0x12, 0x34, 0x00, 0x01,
    ];

    #[test]
    fn parses_echo_fixture() {
        let packet = Icmpv4Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv4Message::ECHO_REQUEST);
        assert!(packet.verify_checksum());
        assert_eq!(
            Icmpv4Repr::parse(&packet, Csum::Verify),
            Ok(Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcdefgh"
            })
        );
    }

    #[test]
    fn parses_frag_needed_fixture() {
        let packet = Icmpv4Packet::new_checked(&FRAG_NEEDED_BYTES[..]).unwrap();
        assert!(packet.msg_type().is_error());
        let repr = Icmpv4Repr::parse(&packet, Csum::Verify).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::DstUnreachable {
                code: CODE_FRAG_NEEDED,
                next_hop_mtu: 1400,
                invoking: &FRAG_NEEDED_BYTES[8..]
            }
        );
        let mut out = [0u8; 36];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]), Csum::Verify)
            .unwrap();
        assert_eq!(out, FRAG_NEEDED_BYTES);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Icmpv4Packet::new_checked(&ECHO_BYTES[..7]).is_err());
        let mut corrupted = ECHO_BYTES;
        corrupted[9] ^= 0x20;
        let packet = Icmpv4Packet::new_checked(&corrupted[..]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&packet, Csum::Verify),
            Err(WireError::BadChecksum { header: "icmpv4" })
        );
        assert!(Icmpv4Repr::parse(&packet, Csum::Ignore).is_ok());
        let mut redirect = ECHO_BYTES;
        redirect[0] = 5;
        let packet = Icmpv4Packet::new_checked(&redirect[..]).unwrap();
        assert!(matches!(
            Icmpv4Repr::parse(&packet, Csum::Ignore),
            Err(WireError::Unsupported { .. })
        ));
        let repr = Icmpv4Repr::EchoReply {
            ident: 1,
            seq_no: 2,
            data: b"abc",
        };
        let mut short = [0u8; 10];
        assert!(repr
            .emit(
                &mut Icmpv4Packet::new_unchecked(&mut short[..]),
                Csum::Verify
            )
            .is_err());
    }

    /// Builds one of the four variants over borrowed `data`, picked by `kind`.
    fn repr_of(kind: u8, ident: u16, seq_no: u16, code: u8, data: &[u8]) -> Icmpv4Repr<'_> {
        match kind % 4 {
            0 => Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            },
            1 => Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            },
            2 => Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu: if code == CODE_FRAG_NEEDED { ident } else { 0 },
                invoking: data,
            },
            _ => Icmpv4Repr::TimeExceeded {
                code,
                invoking: data,
            },
        }
    }

    proptest! {
        #[test]
        fn round_trip(
            kind in any::<u8>(), ident in any::<u16>(), seq_no in any::<u16>(), code in 0u8..16,
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let repr = repr_of(kind, ident, seq_no, code, &data);
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), Csum::Verify).unwrap();
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Icmpv4Repr::parse(&packet, Csum::Verify), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = Icmpv4Packet::new_checked(&bytes[..]) {
                let _ = (packet.echo_ident(), packet.next_hop_mtu(), packet.data(), packet.verify_checksum());
                if let Ok(repr) = Icmpv4Repr::parse(&packet, Csum::Ignore) {
                    prop_assert_eq!(repr.buffer_len(), bytes.len());
                }
            }
        }
    }
}
