//! Validated identifiers shared by the model and the wire views: the VXLAN network identifier and
//! the 802.1Q VLAN identifier. A value of these types is always in range.

use std::fmt;

/// A VXLAN network identifier: 24 bits (RFC 7348 § 5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Vni(u32);

/// An 802.1Q VLAN identifier in 1..=4094; 0 (priority tag only) and 4095 are reserved
/// (IEEE 802.1Q-2018 § 9.6, table 9-2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VlanId(u16);

/// A value out of range for an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("VNI {0} is out of range [0, 16777215] (24 bits)")]
    Vni(u32),
    #[error("VLAN id {0} is out of range [1, 4094]")]
    VlanId(u16),
}

impl Vni {
    pub const MAX: u32 = (1 << 24) - 1;

    pub const fn new(value: u32) -> Result<Vni, IdError> {
        if value > Self::MAX {
            Err(IdError::Vni(value))
        } else {
            Ok(Vni(value))
        }
    }

    /// The VNI in the low 24 bits of `value`; the high byte is ignored, as on the wire.
    pub const fn from_u32_truncating(value: u32) -> Vni {
        Vni(value & Self::MAX)
    }

    /// Reads a big-endian 24-bit VNI, as it sits in the VXLAN header.
    pub const fn from_be24(bytes: [u8; 3]) -> Vni {
        Vni(((bytes[0] as u32) << 16) | ((bytes[1] as u32) << 8) | bytes[2] as u32)
    }

    pub const fn to_be24(self) -> [u8; 3] {
        [(self.0 >> 16) as u8, (self.0 >> 8) as u8, self.0 as u8]
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl VlanId {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 4094;

    pub const fn new(value: u16) -> Result<VlanId, IdError> {
        if value < Self::MIN || value > Self::MAX {
            Err(IdError::VlanId(value))
        } else {
            Ok(VlanId(value))
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u32> for Vni {
    type Error = IdError;
    fn try_from(value: u32) -> Result<Self, IdError> {
        Vni::new(value)
    }
}

impl TryFrom<u16> for VlanId {
    type Error = IdError;
    fn try_from(value: u16) -> Result<Self, IdError> {
        VlanId::new(value)
    }
}

macro_rules! display_as_number {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self.0)
            }
        }
    )*};
}
display_as_number!(Vni, VlanId);

impl serde::Serialize for Vni {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Vni {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vni::new(u32::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for VlanId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for VlanId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        VlanId::new(u16::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_bounds() {
        assert_eq!(Vni::new(Vni::MAX).unwrap().get(), 0xff_ffff);
        assert_eq!(Vni::new(1 << 24), Err(IdError::Vni(1 << 24)));
        let vni = Vni::new(0x12_3456).unwrap();
        assert_eq!(Vni::from_be24(vni.to_be24()), vni);
        assert_eq!(vni.to_be24(), [0x12, 0x34, 0x56]);
    }

    #[test]
    fn vlan_bounds() {
        assert!(VlanId::new(0).is_err());
        assert!(VlanId::new(4095).is_err());
        assert_eq!(VlanId::new(4094).unwrap().get(), 4094);
        assert_eq!(
            VlanId::new(4095).unwrap_err().to_string(),
            "VLAN id 4095 is out of range [1, 4094]"
        );
    }

    #[test]
    fn serde_checks_range() {
        assert_eq!(serde_json::from_str::<Vni>("42").unwrap().get(), 42);
        assert!(serde_json::from_str::<Vni>("16777216").is_err());
        assert!(serde_json::from_str::<VlanId>("0").is_err());
        assert_eq!(
            serde_json::to_string(&VlanId::new(100).unwrap()).unwrap(),
            "100"
        );
    }
}
