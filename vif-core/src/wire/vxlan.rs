//! The VXLAN header (RFC 7348 § 5): 8 bytes between the outer UDP header and the inner Ethernet
//! frame.
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//!
//! Only the I flag and the VNI carry meaning. Reserved bits are written as zero and ignored on
//! receipt (RFC 7348 § 5), so extensions that reuse them (GBP, draft-smith-vxlan-group-policy)
//! pass through as plain VXLAN. The outer headers are built and checked in [`super::encap`].

use super::{ensure_len, Result, Vni, WireError};

/// The IANA-assigned UDP destination port for VXLAN (RFC 7348 § 5).
pub const VXLAN_PORT: u16 = 4789;

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// The I flag: "MUST be set to 1 for a valid VXLAN Network ID" (RFC 7348 § 5).
pub const FLAG_I: u8 = 0x08;

const HEADER: &str = "vxlan";

mod field {
    use crate::wire::field::*;
    pub const FLAGS: usize = 0;
    pub const RESERVED1: Field = 1..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: Rest = 8..;
}

/// A view over a VXLAN header and the inner frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len): use this on anything received.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Proves that no accessor can panic: the header is fixed-size and has no length field.
    pub fn check_len(&self) -> Result<()> {
        ensure_len(HEADER, self.buffer.as_ref(), HEADER_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the VNI is valid (RFC 7348 § 5).
    pub fn i_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    pub fn vni(&self) -> Vni {
        let b = &self.buffer.as_ref()[field::VNI];
        Vni::from_be24([b[0], b[1], b[2]])
    }

    /// The 24 reserved bits after the flags, as a big-endian number.
    pub fn reserved1(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::RESERVED1];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    pub fn reserved2(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED2]
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    pub fn set_vni(&mut self, vni: Vni) {
        self.buffer.as_mut()[field::VNI].copy_from_slice(&vni.to_be24());
    }

    /// Writes the low 24 bits of `value` into the first reserved field.
    pub fn set_reserved1(&mut self, value: u32) {
        let b = value.to_be_bytes();
        self.buffer.as_mut()[field::RESERVED1].copy_from_slice(&b[1..]);
    }

    pub fn set_reserved2(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED2] = value;
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The typed content of a VXLAN header: the VNI is all that means anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    pub vni: Vni,
}

impl VxlanRepr {
    /// Reads a received header. The I flag must be set (RFC 7348 § 5: "MUST be set to 1 for a
    /// valid VXLAN Network ID"); the reserved bits are ignored, as the RFC requires.
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanPacket<T>) -> Result<VxlanRepr> {
        packet.check_len()?;
        if !packet.i_flag() {
            return Err(WireError::BadField {
                header: HEADER,
                field: "flags",
                value: packet.flags().into(),
                bound: "with the I bit (0x08) set",
            });
        }
        Ok(VxlanRepr { vni: packet.vni() })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with only the I flag set and every reserved field zero (RFC 7348 § 5).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VxlanPacket<T>) -> Result<()> {
        packet.check_len()?;
        packet.set_flags(FLAG_I);
        packet.set_reserved1(0);
        packet.set_vni(self.vni);
        packet.set_reserved2(0);
        Ok(())
    }

    /// The 8 header bytes, for templates that copy a prebuilt header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let vni = self.vni.to_be24();
        [FLAG_I, 0, 0, 0, vni[0], vni[1], vni[2], 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A VXLAN header for VNI 123, built by hand from the RFC 7348 § 5 layout (I flag only,
    /// reserved zero), followed by two bytes standing for the inner frame.
    const HEADER_BYTES: [u8; 10] = [0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x00, 0xaa, 0xbb];

    #[test]
    fn reads_fixture() {
        let packet = VxlanPacket::new_checked(&HEADER_BYTES[..]).unwrap();
        assert!(packet.i_flag());
        assert_eq!(packet.vni().get(), 123);
        assert_eq!(packet.payload(), &[0xaa, 0xbb]);
        assert_eq!(
            VxlanRepr::parse(&packet).unwrap().vni,
            Vni::new(123).unwrap()
        );
    }

    #[test]
    fn requires_i_flag_and_ignores_reserved() {
        let mut bytes = HEADER_BYTES;
        bytes[0] = 0x00;
        assert_eq!(
            VxlanRepr::parse(&VxlanPacket::new_unchecked(&bytes[..])),
            Err(WireError::BadField {
                header: "vxlan",
                field: "flags",
                value: 0,
                bound: "with the I bit (0x08) set"
            })
        );
        // Reserved bits set (as GBP does) still parse.
        bytes = HEADER_BYTES;
        bytes[0] = 0x88;
        bytes[1..4].copy_from_slice(&[0x12, 0x34, 0x56]);
        bytes[7] = 0xff;
        let packet = VxlanPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.reserved1(), 0x12_3456);
        assert_eq!(packet.reserved2(), 0xff);
        assert_eq!(VxlanRepr::parse(&packet).unwrap().vni.get(), 123);
    }

    #[test]
    fn emit_matches_fixture_and_to_bytes() {
        let repr = VxlanRepr {
            vni: Vni::new(123).unwrap(),
        };
        let mut bytes = [0xffu8; 8];
        repr.emit(&mut VxlanPacket::new_unchecked(&mut bytes[..]))
            .unwrap();
        assert_eq!(bytes, HEADER_BYTES[..8]);
        assert_eq!(repr.to_bytes(), bytes);
        assert!(VxlanPacket::new_checked(&bytes[..7]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(vni in 0u32..=Vni::MAX) {
            let repr = VxlanRepr { vni: Vni::new(vni).unwrap() };
            let mut bytes = [0u8; HEADER_LEN];
            repr.emit(&mut VxlanPacket::new_unchecked(&mut bytes[..])).unwrap();
            prop_assert_eq!(VxlanRepr::parse(&VxlanPacket::new_checked(&bytes[..]).unwrap()), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(packet) = VxlanPacket::new_checked(&bytes[..]) {
                let _ = (packet.flags(), packet.vni(), packet.reserved1(), packet.reserved2(), packet.payload());
                prop_assert_eq!(VxlanRepr::parse(&packet).is_ok(), bytes[0] & FLAG_I != 0);
            } else {
                prop_assert!(bytes.len() < HEADER_LEN);
            }
        }
    }
}
