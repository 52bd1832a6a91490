//! ARP (RFC 826) for IPv4 over Ethernet: the only combination a VIF speaks.
//!
//! The view follows the RFC's variable layout (address lengths come from `hlen`/`plen`, and
//! [`ArpPacket::check_len`] proves the four addresses fit), so a foreign ARP packet can be looked
//! at without panicking. [`ArpRepr`] accepts only hardware type 1 (Ethernet), protocol type
//! 0x0800, `hlen` 6 and `plen` 4; anything else is `Unsupported`. Anti-spoofing (sender MAC and
//! IP versus the VIF's) is the pipeline's job, not this file's. Trailing bytes (Ethernet padding
//! to 60 bytes) are ignored.

use std::net::Ipv4Addr;

use super::ethernet::EtherType;
use super::{ensure_len, MacAddr, Result, WireError};

/// Hardware type for Ethernet (IANA "Hardware Types", RFC 826).
pub const HTYPE_ETHERNET: u16 = 1;

/// Length of an Ethernet/IPv4 ARP packet: 8 fixed bytes and two (MAC, IPv4) pairs.
pub const ETHERNET_IPV4_LEN: usize = 28;

const HEADER: &str = "arp";

mod field {
    use crate::wire::field::*;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    /// Start of the sender hardware address; the other addresses follow at offsets set by
    /// `hlen` and `plen`.
    pub const ADDRESSES: usize = 8;

    pub const fn sha(hlen: u8, _plen: u8) -> Field {
        ADDRESSES..ADDRESSES + hlen as usize
    }
    pub const fn spa(hlen: u8, plen: u8) -> Field {
        let start = sha(hlen, plen).end;
        start..start + plen as usize
    }
    pub const fn tha(hlen: u8, plen: u8) -> Field {
        let start = spa(hlen, plen).end;
        start..start + hlen as usize
    }
    pub const fn tpa(hlen: u8, plen: u8) -> Field {
        let start = tha(hlen, plen).end;
        start..start + plen as usize
    }
}

/// The ARP opcode (RFC 826; IANA "Operation Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> Self {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A view over an ARP packet of any hardware and protocol type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if the addresses do not fit.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len): use this on anything received.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Proves that no accessor can panic: the fixed part fits, and so do the four addresses
    /// whose lengths `hlen` and `plen` give (at most 8 + 2 × (255 + 255) bytes, no overflow).
    pub fn check_len(&self) -> Result<()> {
        let buffer = self.buffer.as_ref();
        ensure_len(HEADER, buffer, field::ADDRESSES)?;
        let end = field::tpa(self.hardware_len(), self.protocol_len()).end;
        ensure_len(HEADER, buffer, end)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::HTYPE])
    }

    pub fn protocol_type(&self) -> EtherType {
        EtherType(read_u16(&self.buffer.as_ref()[field::PTYPE]))
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> ArpOperation {
        read_u16(&self.buffer.as_ref()[field::OPER]).into()
    }

    /// Length of the packet as its fields describe it; bytes past it are padding.
    pub fn packet_len(&self) -> usize {
        field::tpa(self.hardware_len(), self.protocol_len()).end
    }

    pub fn sender_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::sha(self.hardware_len(), self.protocol_len())]
    }

    pub fn sender_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::spa(self.hardware_len(), self.protocol_len())]
    }

    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tha(self.hardware_len(), self.protocol_len())]
    }

    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tpa(self.hardware_len(), self.protocol_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    pub fn set_hardware_type(&mut self, htype: u16) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&htype.to_be_bytes());
    }

    pub fn set_protocol_type(&mut self, ptype: EtherType) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&ptype.0.to_be_bytes());
    }

    /// Sets `hlen`. Call [`check_len`](ArpPacket::check_len) again before using the addresses.
    pub fn set_hardware_len(&mut self, hlen: u8) {
        self.buffer.as_mut()[field::HLEN] = hlen;
    }

    /// Sets `plen`. Call [`check_len`](ArpPacket::check_len) again before using the addresses.
    pub fn set_protocol_len(&mut self, plen: u8) {
        self.buffer.as_mut()[field::PLEN] = plen;
    }

    pub fn set_operation(&mut self, operation: ArpOperation) {
        let oper: u16 = operation.into();
        self.buffer.as_mut()[field::OPER].copy_from_slice(&oper.to_be_bytes());
    }

    /// Writes the sender hardware address; `addr` must be `hlen` bytes long.
    pub fn set_sender_hardware_addr(&mut self, addr: &[u8]) -> Result<()> {
        let range = field::sha(self.hardware_len(), self.protocol_len());
        self.set_addr(range, "hlen", addr)
    }

    /// Writes the sender protocol address; `addr` must be `plen` bytes long.
    pub fn set_sender_protocol_addr(&mut self, addr: &[u8]) -> Result<()> {
        let range = field::spa(self.hardware_len(), self.protocol_len());
        self.set_addr(range, "plen", addr)
    }

    /// Writes the target hardware address; `addr` must be `hlen` bytes long.
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) -> Result<()> {
        let range = field::tha(self.hardware_len(), self.protocol_len());
        self.set_addr(range, "hlen", addr)
    }

    /// Writes the target protocol address; `addr` must be `plen` bytes long.
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) -> Result<()> {
        let range = field::tpa(self.hardware_len(), self.protocol_len());
        self.set_addr(range, "plen", addr)
    }

    /// Copies `addr` into `range`, refusing a length that differs from the header's or a range
    /// outside the buffer, so a setter cannot panic even on an unchecked view.
    fn set_addr(
        &mut self,
        range: core::ops::Range<usize>,
        len_field: &'static str,
        addr: &[u8],
    ) -> Result<()> {
        if addr.len() != range.len() {
            return Err(WireError::BadField {
                header: HEADER,
                field: len_field,
                value: u32::try_from(range.len()).unwrap_or(u32::MAX),
                bound: "equal to the length of the address written",
            });
        }
        let buffer = self.buffer.as_mut();
        let len = buffer.len();
        let end = range.end;
        match buffer.get_mut(range) {
            Some(slot) => {
                slot.copy_from_slice(addr);
                Ok(())
            }
            None => Err(WireError::Truncated {
                header: HEADER,
                need: end,
                len,
            }),
        }
    }
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads an Ethernet/IPv4 ARP packet; other hardware or protocol types are `Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        let unsupported = |what| {
            Err(WireError::Unsupported {
                header: HEADER,
                what,
            })
        };
        if packet.hardware_type() != HTYPE_ETHERNET {
            return unsupported("hardware type other than Ethernet (1)");
        }
        if packet.protocol_type() != EtherType::IPV4 {
            return unsupported("protocol type other than IPv4 (0x0800)");
        }
        if packet.hardware_len() != 6 {
            return unsupported("hardware address length other than 6");
        }
        if packet.protocol_len() != 4 {
            return unsupported("protocol address length other than 4");
        }
        // check_len proved the four ranges, and the lengths are now known to be 6 and 4.
        let mac = |bytes: &[u8]| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(bytes);
            MacAddr(mac)
        };
        let ip = |bytes: &[u8]| Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_mac: mac(packet.sender_hardware_addr()),
            sender_ip: ip(packet.sender_protocol_addr()),
            target_mac: mac(packet.target_hardware_addr()),
            target_ip: ip(packet.target_protocol_addr()),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Writes the whole packet (28 bytes); bytes after it are left as they are.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) -> Result<()> {
        ensure_len(HEADER, packet.buffer.as_ref(), ETHERNET_IPV4_LEN)?;
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_hardware_addr(self.sender_mac.as_bytes())?;
        packet.set_sender_protocol_addr(&self.sender_ip.octets())?;
        packet.set_target_hardware_addr(self.target_mac.as_bytes())?;
        packet.set_target_protocol_addr(&self.target_ip.octets())
    }

    /// A gratuitous ARP (RFC 5227 § 3, "ARP Announcement"): the sender announces its own
    /// address, so sender and target IP are equal.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An ARP request "who has 10.0.0.2? tell 10.0.0.1", built by hand from the RFC 826 layout
    /// (the same bytes `arping -I eth0 10.0.0.2` puts after the Ethernet header), followed by
    /// two bytes of Ethernet padding.
    const REQUEST: [u8; 30] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x00,
    ];

    fn request() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            sender_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn parses_fixture() {
        let packet = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(packet.packet_len(), 28);
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(ArpRepr::parse(&packet).unwrap(), request());
        assert!(!request().is_gratuitous());
    }

    #[test]
    fn emits_fixture() {
        let mut bytes = [0u8; 30];
        request()
            .emit(&mut ArpPacket::new_unchecked(&mut bytes[..]))
            .unwrap();
        assert_eq!(bytes, REQUEST);
        let mut short = [0u8; 27];
        assert!(request()
            .emit(&mut ArpPacket::new_unchecked(&mut short[..]))
            .is_err());
    }

    #[test]
    fn rejects_other_types_and_short_packets() {
        for (at, value, what) in [
            (1, 6, "hardware type other than Ethernet (1)"),
            (2, 0x86, "protocol type other than IPv4 (0x0800)"),
        ] {
            let mut bytes = REQUEST;
            bytes[at] = value;
            let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                ArpRepr::parse(&packet),
                Err(WireError::Unsupported {
                    header: "arp",
                    what
                })
            );
        }
        // hlen 8 needs 8 + 2 × (8 + 4) = 32 bytes, more than the 30 there are.
        let mut bytes = REQUEST;
        bytes[4] = 8;
        assert_eq!(
            ArpPacket::new_checked(&bytes[..]),
            Err(WireError::Truncated {
                header: "arp",
                need: 32,
                len: 30
            })
        );
        // plen 5 fits (30 bytes) but is not IPv4.
        bytes[4] = 6;
        bytes[5] = 5;
        let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert!(matches!(
            ArpRepr::parse(&packet),
            Err(WireError::Unsupported { .. })
        ));
        assert!(ArpPacket::new_checked(&REQUEST[..27]).is_err());
        assert!(ArpPacket::new_checked(&REQUEST[..7]).is_err());
    }

    #[test]
    fn address_setters_check_length() {
        let mut bytes = REQUEST;
        let mut packet = ArpPacket::new_unchecked(&mut bytes[..]);
        assert!(packet.set_sender_hardware_addr(&[1, 2, 3]).is_err());
        packet.set_protocol_len(200);
        assert!(matches!(
            packet.set_target_protocol_addr(&[0; 200]),
            Err(WireError::Truncated { .. })
        ));
    }

    fn any_repr() -> impl Strategy<Value = ArpRepr> {
        (
            any::<u16>(),
            any::<[u8; 6]>(),
            any::<[u8; 4]>(),
            any::<[u8; 6]>(),
            any::<[u8; 4]>(),
        )
            .prop_map(|(op, sm, si, tm, ti)| ArpRepr {
                operation: op.into(),
                sender_mac: MacAddr(sm),
                sender_ip: si.into(),
                target_mac: MacAddr(tm),
                target_ip: ti.into(),
            })
    }

    proptest! {
        #[test]
        fn round_trip(repr in any_repr()) {
            let mut bytes = [0u8; ETHERNET_IPV4_LEN];
            repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..])).unwrap();
            let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(ArpRepr::parse(&packet), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (
                    packet.hardware_type(),
                    packet.protocol_type(),
                    packet.operation(),
                    packet.sender_hardware_addr(),
                    packet.sender_protocol_addr(),
                    packet.target_hardware_addr(),
                    packet.target_protocol_addr(),
                );
                prop_assert!(packet.packet_len() <= bytes.len());
                let _ = ArpRepr::parse(&packet);
            }
        }
    }
}
