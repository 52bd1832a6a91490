//! ICMPv6 (RFC 4443): the view, the checksum over the IPv6 pseudo-header, and a typed
//! `Icmpv6Repr` for echo, the error messages and Neighbor Discovery (in [`ndp`]).
//!
//! The view wraps exactly the ICMPv6 message (the upper-layer bytes after the extension
//! headers). Every message has at least 8 bytes (RFC 4443 § 2.1 plus a 4-byte body in every
//! defined type); NDP messages have longer fixed parts, which `check_len` also enforces
//! (RFC 4861 § 6.1, § 7.1), so the type-specific accessors cannot read past the buffer. Those
//! accessors return `None` for other types instead of reading unrelated bytes. Validity rules
//! outside the message (hop limit 255, RFC 4861 § 7.1.1) belong to the caller, which has the
//! IPv6 header.

use std::fmt;
use std::net::Ipv6Addr;

use crate::checksum;
use crate::wire::ipv4::IpProtocol;
use crate::wire::{ensure_len, Csum, Result, WireError};

pub mod ndp;

pub use ndp::{NdpOption, NdpOptionIter, NdpRepr, NeighborFlags, PrefixInfo};

/// The ICMPv6 type field (IANA "ICMPv6 Type Numbers").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Icmpv6Message(pub u8);

impl Icmpv6Message {
    pub const DST_UNREACHABLE: Icmpv6Message = Icmpv6Message(1);
    pub const PKT_TOO_BIG: Icmpv6Message = Icmpv6Message(2);
    pub const TIME_EXCEEDED: Icmpv6Message = Icmpv6Message(3);
    pub const PARAM_PROBLEM: Icmpv6Message = Icmpv6Message(4);
    pub const ECHO_REQUEST: Icmpv6Message = Icmpv6Message(128);
    pub const ECHO_REPLY: Icmpv6Message = Icmpv6Message(129);
    pub const MLD_QUERY: Icmpv6Message = Icmpv6Message(130);
    pub const MLD_REPORT: Icmpv6Message = Icmpv6Message(131);
    pub const ROUTER_SOLICIT: Icmpv6Message = Icmpv6Message(133);
    pub const ROUTER_ADVERT: Icmpv6Message = Icmpv6Message(134);
    pub const NEIGHBOR_SOLICIT: Icmpv6Message = Icmpv6Message(135);
    pub const NEIGHBOR_ADVERT: Icmpv6Message = Icmpv6Message(136);
    pub const REDIRECT: Icmpv6Message = Icmpv6Message(137);
    pub const MLDV2_REPORT: Icmpv6Message = Icmpv6Message(143);

    /// Types 0–127 are errors (RFC 4443 § 2.1).
    pub const fn is_error(self) -> bool {
        self.0 < 128
    }

    /// The five Neighbor Discovery messages (RFC 4861 § 4).
    pub const fn is_ndp(self) -> bool {
        matches!(self.0, 133..=137)
    }
}

impl fmt::Debug for Icmpv6Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::DST_UNREACHABLE => "DstUnreachable",
            Self::PKT_TOO_BIG => "PktTooBig",
            Self::TIME_EXCEEDED => "TimeExceeded",
            Self::PARAM_PROBLEM => "ParamProblem",
            Self::ECHO_REQUEST => "EchoRequest",
            Self::ECHO_REPLY => "EchoReply",
            Self::ROUTER_SOLICIT => "RouterSolicit",
            Self::ROUTER_ADVERT => "RouterAdvert",
            Self::NEIGHBOR_SOLICIT => "NeighborSolicit",
            Self::NEIGHBOR_ADVERT => "NeighborAdvert",
            Self::REDIRECT => "Redirect",
            _ => return write!(f, "Icmpv6Message({})", self.0),
        };
        f.write_str(name)
    }
}

mod field {
    use crate::wire::field::*;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ_NO: Field = 6..8;
    /// Packet-too-big MTU, parameter-problem pointer (RFC 4443 § 3.2, § 3.4).
    pub const MTU_POINTER: Field = 4..8;
    pub const DATA: Rest = 8..;
}

const HEADER: &str = "icmpv6";

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// The fixed part every message type has.
    pub const HEADER_LEN: usize = field::DATA.start;

    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Needs the 8-byte header, and the fixed part of NDP messages (RFC 4861: RS 8, RA 16,
    /// NS/NA 24, redirect 40 bytes).
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        ensure_len(HEADER, buf, Self::HEADER_LEN)?;
        ensure_len(HEADER, buf, ndp::fixed_len(self.msg_type()))
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn word(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn msg_type(&self) -> Icmpv6Message {
        Icmpv6Message(self.buffer.as_ref()[field::TYPE])
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        self.word(field::CHECKSUM)
    }

    pub fn echo_ident(&self) -> u16 {
        self.word(field::ECHO_IDENT)
    }

    pub fn echo_seq_no(&self) -> u16 {
        self.word(field::ECHO_SEQ_NO)
    }

    /// The 32-bit word after the checksum: packet-too-big MTU, parameter-problem pointer.
    pub fn mtu_or_pointer(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::MTU_POINTER];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Everything after the 8-byte header: echo data, an invoking packet, or NDP fields.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// The message's one's-complement sum with the IPv6 pseudo-header (RFC 4443 § 2.3).
    fn sum_with_pseudo_header(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let bytes = self.buffer.as_ref();
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, len),
            checksum::data(bytes),
        ])
    }

    /// True when the checksum verifies for a packet sent from `src` to `dst`.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.sum_with_pseudo_header(src, dst) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    fn set_word(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_msg_type(&mut self, message: Icmpv6Message) {
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

    pub fn set_mtu_or_pointer(&mut self, value: u32) {
        self.buffer.as_mut()[field::MTU_POINTER].copy_from_slice(&value.to_be_bytes());
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the pseudo-header and the whole buffer, and stores it.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let sum = self.sum_with_pseudo_header(src, dst);
        self.set_checksum(checksum::finish(sum));
    }

    /// Stores the uncomplemented pseudo-header sum, as virtio `NEEDS_CSUM` expects
    /// (VIRTIO v1.2 § 5.1.6.2): the device sums from the ICMPv6 header on and completes it.
    pub fn fill_partial_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        self.set_checksum(checksum::pseudo_header_v6(
            src,
            dst,
            IpProtocol::ICMPV6.0,
            len,
        ));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A typed ICMPv6 message, borrowing its data from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
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
    DstUnreachable {
        code: u8,
        invoking: &'a [u8],
    },
    PktTooBig {
        mtu: u32,
        invoking: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        invoking: &'a [u8],
    },
    ParamProblem {
        code: u8,
        pointer: u32,
        invoking: &'a [u8],
    },
    Ndp(NdpRepr),
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses a message sent from `src` to `dst`. `Csum::Verify` checks the checksum; `Partial`
    /// and `Ignore` do not. Types other than echo, the four errors and RS/RA/NS/NA are
    /// `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        packet: &Icmpv6Packet<&'a T>,
        csum: Csum,
    ) -> Result<Icmpv6Repr<'a>> {
        packet.check_len()?;
        if csum == Csum::Verify && !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum { header: HEADER });
        }
        let data = packet.buffer.as_ref().get(field::DATA).unwrap_or_default();
        let code = packet.msg_code();
        let message = packet.msg_type();
        if matches!(
            message,
            Icmpv6Message::ECHO_REQUEST | Icmpv6Message::ECHO_REPLY | Icmpv6Message::PKT_TOO_BIG
        ) && code != 0
        {
            // RFC 4443 § 3.2, § 4.1, § 4.2: the sender sets code 0.
            return Err(WireError::BadField {
                header: HEADER,
                field: "code",
                value: code.into(),
                bound: "0",
            });
        }
        let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
        Ok(match message {
            Icmpv6Message::ECHO_REQUEST => Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            },
            Icmpv6Message::ECHO_REPLY => Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            },
            Icmpv6Message::DST_UNREACHABLE => Icmpv6Repr::DstUnreachable {
                code,
                invoking: data,
            },
            Icmpv6Message::PKT_TOO_BIG => Icmpv6Repr::PktTooBig {
                mtu: packet.mtu_or_pointer(),
                invoking: data,
            },
            Icmpv6Message::TIME_EXCEEDED => Icmpv6Repr::TimeExceeded {
                code,
                invoking: data,
            },
            Icmpv6Message::PARAM_PROBLEM => Icmpv6Repr::ParamProblem {
                code,
                pointer: packet.mtu_or_pointer(),
                invoking: data,
            },
            _ if message.is_ndp() => Icmpv6Repr::Ndp(NdpRepr::parse(packet)?),
            _ => {
                return Err(WireError::Unsupported {
                    header: HEADER,
                    what: "message type",
                })
            }
        })
    }

    /// The whole message's length.
    pub fn buffer_len(&self) -> usize {
        let data = match self {
            Icmpv6Repr::EchoRequest { data, .. } | Icmpv6Repr::EchoReply { data, .. } => data,
            Icmpv6Repr::DstUnreachable { invoking, .. }
            | Icmpv6Repr::PktTooBig { invoking, .. }
            | Icmpv6Repr::TimeExceeded { invoking, .. }
            | Icmpv6Repr::ParamProblem { invoking, .. } => invoking,
            Icmpv6Repr::Ndp(ndp) => return ndp.buffer_len(),
        };
        Icmpv6Packet::<&[u8]>::HEADER_LEN + data.len()
    }

    /// Writes the message into `packet`, whose buffer must be exactly `buffer_len()` long for
    /// the checksum to cover the message alone. `Verify` fills the checksum, `Partial` writes
    /// the pseudo-header sum, `Ignore` leaves the field. Fails, writing nothing, if the buffer
    /// is too short.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        packet: &mut Icmpv6Packet<T>,
        csum: Csum,
    ) -> Result<()> {
        ensure_len(HEADER, packet.buffer.as_ref(), self.buffer_len())?;
        let (message, code, body, data): (_, _, u32, &[u8]) = match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (
                Icmpv6Message::ECHO_REQUEST,
                0,
                echo_word(ident, seq_no),
                data,
            ),
            Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (Icmpv6Message::ECHO_REPLY, 0, echo_word(ident, seq_no), data),
            Icmpv6Repr::DstUnreachable { code, invoking } => {
                (Icmpv6Message::DST_UNREACHABLE, code, 0, invoking)
            }
            Icmpv6Repr::PktTooBig { mtu, invoking } => {
                (Icmpv6Message::PKT_TOO_BIG, 0, mtu, invoking)
            }
            Icmpv6Repr::TimeExceeded { code, invoking } => {
                (Icmpv6Message::TIME_EXCEEDED, code, 0, invoking)
            }
            Icmpv6Repr::ParamProblem {
                code,
                pointer,
                invoking,
            } => (Icmpv6Message::PARAM_PROBLEM, code, pointer, invoking),
            Icmpv6Repr::Ndp(ndp) => {
                ndp.emit(packet)?;
                (ndp.message(), 0, 0, &[])
            }
        };
        packet.set_msg_type(message);
        packet.set_msg_code(code);
        if !message.is_ndp() {
            packet.set_mtu_or_pointer(body);
            packet.data_mut()[..data.len()].copy_from_slice(data);
        }
        match csum {
            Csum::Verify => packet.fill_checksum(src, dst),
            Csum::Partial => packet.fill_partial_checksum(src, dst),
            Csum::Ignore => {}
        }
        Ok(())
    }
}

fn echo_word(ident: u16, seq_no: u16) -> u32 {
    (u32::from(ident) << 16) | u32::from(seq_no)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
    const DST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    /// Generated with Python `struct` per RFC 4443 § 4.1: echo request ident 0x1234, seq 1,
    /// data "abcd", fe80::5054:ff:fe12:3456 -> fe80::1, checksum over the pseudo-header 0x27fe.
    const ECHO_BYTES: [u8; 12] = [
        0x80, 0x00, 0x27, 0xfe, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    ];

    #[test]
    fn parses_echo_fixture() {
        let packet = Icmpv6Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert!(packet.verify_checksum(&SRC, &DST));
        assert!(!packet.verify_checksum(&SRC, &Ipv6Addr::LOCALHOST));
        assert_eq!(
            Icmpv6Repr::parse(&SRC, &DST, &packet, Csum::Verify),
            Ok(Icmpv6Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcd"
            })
        );
    }

    #[test]
    fn partial_checksum_completes_to_full() {
        // What a device does with NEEDS_CSUM: sum from the ICMPv6 header on, store the complement.
        let repr = Icmpv6Repr::EchoReply {
            ident: 7,
            seq_no: 9,
            data: b"hello",
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut packet = Icmpv6Packet::new_unchecked(&mut buf[..]);
        repr.emit(&SRC, &DST, &mut packet, Csum::Partial).unwrap();
        let completed = checksum::finish(checksum::data(packet.as_ref()));
        packet.set_checksum(completed);
        assert!(packet.verify_checksum(&SRC, &DST));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Icmpv6Packet::new_checked(&ECHO_BYTES[..7]).is_err());
        let mut corrupted = ECHO_BYTES;
        corrupted[8] ^= 1;
        let packet = Icmpv6Packet::new_checked(&corrupted[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&SRC, &DST, &packet, Csum::Verify),
            Err(WireError::BadChecksum { header: "icmpv6" })
        );
        let mut code = ECHO_BYTES;
        code[1] = 1;
        let packet = Icmpv6Packet::new_checked(&code[..]).unwrap();
        assert!(Icmpv6Repr::parse(&SRC, &DST, &packet, Csum::Ignore).is_err());
        // A neighbor solicitation needs 24 bytes; 12 is not enough.
        let mut ns = ECHO_BYTES;
        ns[0] = 135;
        assert!(Icmpv6Packet::new_checked(&ns[..]).is_err());
    }

    fn repr_of(kind: u8, word: u32, code: u8, data: &[u8]) -> Icmpv6Repr<'_> {
        let (ident, seq_no) = ((word >> 16) as u16, word as u16);
        match kind % 6 {
            0 => Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            },
            1 => Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            },
            2 => Icmpv6Repr::DstUnreachable {
                code,
                invoking: data,
            },
            3 => Icmpv6Repr::PktTooBig {
                mtu: word,
                invoking: data,
            },
            4 => Icmpv6Repr::TimeExceeded {
                code,
                invoking: data,
            },
            _ => Icmpv6Repr::ParamProblem {
                code,
                pointer: word,
                invoking: data,
            },
        }
    }

    proptest! {
        #[test]
        fn round_trip(
            kind in any::<u8>(), word in any::<u32>(), code in any::<u8>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
        ) {
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            let repr = repr_of(kind, word, code, &data);
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(&mut buf[..]), Csum::Verify).unwrap();
            let packet = Icmpv6Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Icmpv6Repr::parse(&src, &dst, &packet, Csum::Verify), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            kind in prop_oneof![133u8..=137, any::<u8>()],
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let mut bytes = bytes;
            if let Some(first) = bytes.first_mut() {
                *first = kind;
            }
            if let Ok(packet) = Icmpv6Packet::new_checked(&bytes[..]) {
                let _ = (packet.echo_ident(), packet.mtu_or_pointer(), packet.data());
                let _ = (packet.target_addr(), packet.source_lladdr(), packet.target_lladdr());
                let _ = packet.ndp_options().count();
                let _ = Icmpv6Repr::parse(&DST, &SRC, &packet, Csum::Ignore);
            }
        }
    }
}
