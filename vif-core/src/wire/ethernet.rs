//! Ethernet II framing (IEEE 802.3-2022 § 3.2, RFC 894): destination MAC, source MAC, EtherType.
//!
//! This file knows the 14-byte header only. 802.1Q/802.1ad tags that follow the MAC addresses are
//! walked in [`super::vlan`]; the FCS is never present (the NIC or the kernel strips it), and the
//! 60-byte minimum frame size is not enforced here, because frames from virtio and AF_PACKET
//! arrive unpadded.

use core::fmt;

use super::{ensure_len, MacAddr, Result};

/// The 16-bit type field after the source MAC (IEEE 802.3-2022 § 3.2.6): a protocol identifier
/// when ≥ 0x0600, a length (802.3 LLC framing, which vif does not speak) when ≤ 1500.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q customer VLAN tag (C-tag) TPID.
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1ad service VLAN tag (S-tag) TPID, the outer tag of QinQ.
    pub const QINQ: EtherType = EtherType(0x88a8);

    /// The largest value that is a payload length rather than a type (IEEE 802.3-2022 § 3.2.6).
    pub const MAX_LENGTH: u16 = 1500;

    pub const fn get(self) -> u16 {
        self.0
    }

    /// True for the tag protocol identifiers vif walks: 802.1Q C-tag and 802.1ad S-tag.
    pub const fn is_vlan_tpid(self) -> bool {
        self.0 == Self::VLAN.0 || self.0 == Self::QINQ.0
    }

    /// True when the field is an 802.3 length, not a protocol type.
    pub const fn is_length(self) -> bool {
        self.0 <= Self::MAX_LENGTH
    }
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        EtherType(value)
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        value.0
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::IPV4 => "IPv4",
            Self::ARP => "ARP",
            Self::VLAN => "802.1Q",
            Self::IPV6 => "IPv6",
            Self::QINQ => "802.1ad",
            _ => return write!(f, "EtherType(0x{:04x})", self.0),
        };
        write!(f, "EtherType({name})")
    }
}

mod field {
    use crate::wire::field::*;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

const HEADER: &str = "ethernet";

/// A view over an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than [`HEADER_LEN`].
    /// For frames we build ourselves into a buffer of known size.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len): use this on anything received.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Proves that no accessor can panic: the header is fixed-size and has no length field.
    pub fn check_len(&self) -> Result<()> {
        ensure_len(HEADER, self.buffer.as_ref(), HEADER_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub const fn header_len() -> usize {
        HEADER_LEN
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(read_mac(&self.buffer.as_ref()[field::DESTINATION]))
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr(read_mac(&self.buffer.as_ref()[field::SOURCE]))
    }

    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Everything after the EtherType: an L3 packet, or a VLAN tag when
    /// [`EtherType::is_vlan_tpid`].
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(addr.as_bytes());
    }

    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(addr.as_bytes());
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Copies six bytes out of a slice that the caller's field range already sized to six.
fn read_mac(bytes: &[u8]) -> [u8; 6] {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(bytes);
    mac
}

/// The typed content of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame. Every value is accepted: filtering by address or type
    /// is the switch's and the pipeline's job.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the payload is left as it is.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) -> Result<()> {
        frame.check_len()?;
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;
    use proptest::prelude::*;

    /// The first 14 bytes of an ARP request as a Linux host sends it (`arping`), built by hand
    /// from IEEE 802.3 § 3.2: broadcast destination, 52:54:00:12:34:56 source, type ARP; followed
    /// by two payload bytes.
    const FRAME_BYTES: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00,
        0x01,
    ];

    #[test]
    fn reads_fixture() {
        let frame = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(
            frame.src_addr(),
            MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn writes_fixture() {
        let mut bytes = [0u8; 16];
        let repr = EthernetRepr {
            dst_addr: MacAddr::BROADCAST,
            src_addr: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            ethertype: EtherType::ARP,
        };
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        repr.emit(&mut frame).unwrap();
        frame.payload_mut().copy_from_slice(&[0x00, 0x01]);
        assert_eq!(bytes, FRAME_BYTES);
    }

    #[test]
    fn rejects_short() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME_BYTES[..13]),
            Err(WireError::Truncated {
                header: "ethernet",
                need: 14,
                len: 13
            })
        );
        let mut short = [0u8; 10];
        let repr = EthernetRepr {
            dst_addr: MacAddr::ZERO,
            src_addr: MacAddr::ZERO,
            ethertype: EtherType::IPV4,
        };
        assert!(repr
            .emit(&mut EthernetFrame::new_unchecked(&mut short[..]))
            .is_err());
    }

    #[test]
    fn classifies_ethertypes() {
        assert!(EtherType::VLAN.is_vlan_tpid() && EtherType::QINQ.is_vlan_tpid());
        assert!(!EtherType::IPV4.is_vlan_tpid() && !EtherType(0x9100).is_vlan_tpid());
        assert!(EtherType(1500).is_length() && !EtherType::IPV6.is_length());
        assert_eq!(format!("{:?}", EtherType::IPV6), "EtherType(IPv6)");
        assert_eq!(EtherType(0x1234).to_string(), "0x1234");
    }

    fn any_repr() -> impl Strategy<Value = EthernetRepr> {
        (any::<[u8; 6]>(), any::<[u8; 6]>(), any::<u16>()).prop_map(|(s, d, t)| EthernetRepr {
            src_addr: MacAddr(s),
            dst_addr: MacAddr(d),
            ethertype: EtherType(t),
        })
    }

    proptest! {
        #[test]
        fn round_trip(repr in any_repr(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![0u8; repr.buffer_len() + payload.len()];
            let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
            repr.emit(&mut frame).unwrap();
            frame.payload_mut().copy_from_slice(&payload);
            let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&frame).unwrap(), repr);
            prop_assert_eq!(frame.payload(), &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype(), frame.payload());
                prop_assert!(EthernetRepr::parse(&frame).is_ok());
            } else {
                prop_assert!(bytes.len() < HEADER_LEN);
            }
        }
    }
}
