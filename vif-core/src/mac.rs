//! The 48-bit IEEE 802 MAC address, shared by the VIF model and the wire views.

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address in transmission order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {input:?}: expected six hex octets separated by ':' or '-'")]
pub struct MacParseError {
    pub input: String,
}

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads an address from the first six bytes of `bytes`; `None` if there are fewer.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        bytes.get(..6)?.try_into().ok().map(MacAddr)
    }

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// The I/G bit: group (multicast or broadcast) addresses have it set (IEEE 802-2014 § 8.2).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// The U/L bit: set on locally administered addresses, such as generated VIF MACs.
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError {
            input: s.to_owned(),
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for octet in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let mac: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac.0, [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]);
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!("52-54-00-ab-cd-0f".parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:00",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn classifies() {
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        assert!("02:00:00:00:00:01".parse::<MacAddr>().unwrap().is_local());
        assert!(MacAddr::ZERO.is_zero() && MacAddr::ZERO.is_unicast());
    }

    #[test]
    fn serde_as_string() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"52:54:00:12:34:56\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
    }
}
