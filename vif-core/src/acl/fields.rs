//! The typed values an ACL rule matches on — a CIDR, a port range, an IP protocol, an
//! EtherType, a set of TCP flags — with their text syntax and serde.
//!
//! Each value is written the way operators write it in nftables or OVS: `"10.0.0.0/8"`,
//! `"1000-2000"` or `443`, `"tcp"` or `6`, `"ipv6"` or `0x86dd` (TOML integers may be hex),
//! `"syn|ack"` or `0x12`. Parsing is strict: a CIDR with host bits set (`10.0.0.1/8`) is refused
//! rather than silently masked, because it is usually a typo for a host route; an empty port
//! range (`2000-1000`) is refused. Errors say what was wrong and what is expected; TOML's error
//! adds the line and key. Whether values fit together within a rule is `rule.rs`'s concern.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::wire::ethernet::EtherType;
use crate::wire::ipv4::IpProtocol;
use crate::wire::tcp::TcpFlags;

/// Why a field value does not parse. The message names the expected syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct FieldParseError {
    pub what: &'static str,
    pub input: String,
    pub reason: String,
}

fn parse_error(what: &'static str, input: &str, reason: impl Into<String>) -> FieldParseError {
    FieldParseError {
        what,
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// An IPv4 or IPv6 prefix: the address with every host bit zero, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpCidr {
    /// A prefix; `None` when `prefix_len` exceeds the family's width or host bits are set.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<IpCidr> {
        let cidr = IpCidr { addr, prefix_len };
        let width = cidr.width();
        if prefix_len > width || cidr.host_bits_set() {
            return None;
        }
        Some(cidr)
    }

    /// The single-address prefix (/32 or /128).
    pub fn host(addr: IpAddr) -> IpCidr {
        let prefix_len = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        IpCidr { addr, prefix_len }
    }

    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub const fn is_ipv4(&self) -> bool {
        matches!(self.addr, IpAddr::V4(_))
    }

    /// 32 or 128.
    pub const fn width(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// The first and last address as integers in the family's width (an IPv4 address in the
    /// low 32 bits).
    pub fn range(&self) -> (u128, u128) {
        let value = addr_bits(self.addr);
        (value & !self.host_mask(), value | self.host_mask())
    }

    /// True when `addr` is of this family and inside the prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        if self.is_ipv4() != addr.is_ipv4() {
            return false;
        }
        let (first, last) = self.range();
        (first..=last).contains(&addr_bits(addr))
    }

    /// Ones in the host part: the low `width - prefix_len` bits.
    fn host_mask(&self) -> u128 {
        let host_bits = u32::from(self.width().saturating_sub(self.prefix_len));
        if host_bits == 0 {
            0
        } else {
            u128::MAX >> (128 - host_bits)
        }
    }

    fn host_bits_set(&self) -> bool {
        addr_bits(self.addr) & self.host_mask() != 0
    }
}

/// An address as an integer: IPv4 in the low 32 bits.
pub fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

impl FromStr for IpCidr {
    type Err = FieldParseError;

    /// `ADDR/LEN`, or a bare address meaning the host prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let what = "CIDR";
        let (addr_text, len_text) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| parse_error(what, s, "expected an IPv4 or IPv6 address, then /LEN"))?;
        let Some(len_text) = len_text else {
            return Ok(IpCidr::host(addr));
        };
        let prefix_len: u8 = len_text
            .parse()
            .map_err(|_| parse_error(what, s, "prefix length is not a number"))?;
        let cidr = IpCidr { addr, prefix_len };
        if prefix_len > cidr.width() {
            return Err(parse_error(
                what,
                s,
                format!("prefix length {prefix_len} exceeds {}", cidr.width()),
            ));
        }
        if cidr.host_bits_set() {
            return Err(parse_error(
                what,
                s,
                "host bits are set (write the network address, e.g. 10.0.0.0/8)",
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl From<Ipv4Addr> for IpCidr {
    fn from(addr: Ipv4Addr) -> Self {
        IpCidr::host(addr.into())
    }
}

impl From<Ipv6Addr> for IpCidr {
    fn from(addr: Ipv6Addr) -> Self {
        IpCidr::host(addr.into())
    }
}

/// An inclusive range of transport ports, `lo <= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    /// `None` when `lo > hi`.
    pub const fn new(lo: u16, hi: u16) -> Option<PortRange> {
        if lo > hi {
            None
        } else {
            Some(PortRange { lo, hi })
        }
    }

    pub const fn single(port: u16) -> PortRange {
        PortRange { lo: port, hi: port }
    }

    pub const fn lo(&self) -> u16 {
        self.lo
    }

    pub const fn hi(&self) -> u16 {
        self.hi
    }

    pub const fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl FromStr for PortRange {
    type Err = FieldParseError;

    /// `PORT` or `LO-HI`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let what = "port range";
        let port = |text: &str| {
            text.trim()
                .parse::<u16>()
                .map_err(|_| parse_error(what, s, "expected PORT or LO-HI with ports in 0..=65535"))
        };
        match s.split_once('-') {
            None => Ok(PortRange::single(port(s)?)),
            Some((lo, hi)) => {
                let (lo, hi) = (port(lo)?, port(hi)?);
                PortRange::new(lo, hi)
                    .ok_or_else(|| parse_error(what, s, format!("empty: {lo} is above {hi}")))
            }
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// An IP protocol number, written as a number or a name (`tcp`, `udp`, `icmp`, `icmpv6`,
/// `sctp`, `gre`, `esp`, `ah`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol(pub IpProtocol);

const PROTOCOL_NAMES: [(&str, IpProtocol); 8] = [
    ("tcp", IpProtocol::TCP),
    ("udp", IpProtocol::UDP),
    ("icmp", IpProtocol::ICMP),
    ("icmpv6", IpProtocol::ICMPV6),
    ("sctp", IpProtocol::SCTP),
    ("gre", IpProtocol::GRE),
    ("esp", IpProtocol::ESP),
    ("ah", IpProtocol::AH),
];

impl Protocol {
    pub const fn number(&self) -> u8 {
        self.0 .0
    }

    /// TCP, UDP and SCTP: the protocols whose first four bytes are ports.
    pub const fn has_ports(&self) -> bool {
        matches!(self.number(), 6 | 17 | 132)
    }

    pub const fn is_icmp(&self) -> bool {
        matches!(self.number(), 1 | 58)
    }
}

impl FromStr for Protocol {
    type Err = FieldParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((_, protocol)) = PROTOCOL_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
        {
            return Ok(Protocol(*protocol));
        }
        s.parse::<u8>()
            .map(|n| Protocol(IpProtocol(n)))
            .map_err(|_| {
                parse_error(
                    "protocol",
                    s,
                    "expected 0..=255 or one of tcp, udp, icmp, icmpv6, sctp, gre, esp, ah",
                )
            })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PROTOCOL_NAMES.iter().find(|(_, p)| *p == self.0) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.number()),
        }
    }
}

/// An EtherType to match, written as a number (`0x86dd` in TOML) or `ipv4`, `ipv6`, `arp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherTypeMatch(pub EtherType);

const ETHERTYPE_NAMES: [(&str, EtherType); 3] = [
    ("ipv4", EtherType::IPV4),
    ("ipv6", EtherType::IPV6),
    ("arp", EtherType::ARP),
];

impl FromStr for EtherTypeMatch {
    type Err = FieldParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((_, ethertype)) = ETHERTYPE_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
        {
            return Ok(EtherTypeMatch(*ethertype));
        }
        let number = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u16::from_str_radix(hex, 16),
            None => s.parse::<u16>(),
        };
        number
            .map(|n| EtherTypeMatch(EtherType(n)))
            .map_err(|_| parse_error("ethertype", s, "expected 0..=0xffff or ipv4, ipv6, arp"))
    }
}

impl fmt::Display for EtherTypeMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ETHERTYPE_NAMES.iter().find(|(_, e)| *e == self.0) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "0x{:04x}", self.0 .0),
        }
    }
}

/// A set of TCP flags, written `"syn|ack"` (names as in RFC 9293 § 3.1, case-insensitive), an
/// empty string for none, or the byte as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlagSet(pub TcpFlags);

const FLAG_NAMES: [(&str, TcpFlags); 8] = [
    ("fin", TcpFlags::FIN),
    ("syn", TcpFlags::SYN),
    ("rst", TcpFlags::RST),
    ("psh", TcpFlags::PSH),
    ("ack", TcpFlags::ACK),
    ("urg", TcpFlags::URG),
    ("ece", TcpFlags::ECE),
    ("cwr", TcpFlags::CWR),
];

impl FromStr for TcpFlagSet {
    type Err = FieldParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut flags = TcpFlags::empty();
        for name in s.split('|').map(str::trim).filter(|name| !name.is_empty()) {
            let (_, flag) = FLAG_NAMES
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    parse_error(
                        "TCP flags",
                        s,
                        "expected names from fin, syn, rst, psh, ack, urg, ece, cwr joined by |",
                    )
                })?;
            flags.insert(*flag);
        }
        Ok(TcpFlagSet(flags))
    }
}

impl fmt::Display for TcpFlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, flag) in FLAG_NAMES {
            if self.0.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Serde for the types above: each deserializes from its text form, and the numeric ones also
/// from an integer; each serializes as text (or as the integer for a bare port).
macro_rules! serde_via_text {
    ($ty:ty, $expecting:literal, |$n:ident| $from_int:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct TextOrInt;
                impl Visitor<'_> for TextOrInt {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$ty, E> {
                        text.parse().map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, value: i64) -> Result<$ty, E> {
                        let $n = value;
                        $from_int.ok_or_else(|| {
                            E::invalid_value(de::Unexpected::Signed(value), &$expecting)
                        })
                    }
                    fn visit_u64<E: de::Error>(self, value: u64) -> Result<$ty, E> {
                        let Ok(value) = i64::try_from(value) else {
                            return Err(E::invalid_value(
                                de::Unexpected::Unsigned(value),
                                &$expecting,
                            ));
                        };
                        self.visit_i64(value)
                    }
                }
                deserializer.deserialize_any(TextOrInt)
            }
        }
    };
}

serde_via_text!(
    IpCidr,
    "a CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\"",
    |_n| { None::<IpCidr> }
);
serde_via_text!(PortRange, "a port or a \"LO-HI\" range of ports", |n| {
    u16::try_from(n).ok().map(PortRange::single)
});
serde_via_text!(Protocol, "an IP protocol number or name", |n| u8::try_from(
    n
)
.ok()
.map(|n| Protocol(IpProtocol(n))));
serde_via_text!(
    EtherTypeMatch,
    "an EtherType number or ipv4, ipv6, arp",
    |n| { u16::try_from(n).ok().map(|n| EtherTypeMatch(EtherType(n))) }
);
serde_via_text!(
    TcpFlagSet,
    "TCP flag names joined by | or the flag byte",
    |n| {
        u8::try_from(n)
            .ok()
            .map(|n| TcpFlagSet(TcpFlags::from_bits(n)))
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_refuses_host_bits() {
        let cidr: IpCidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!(cidr.range(), (0x0a00_0000, 0x0aff_ffff));
        assert!(cidr.contains("10.1.2.3".parse().unwrap()));
        assert!(!cidr.contains("11.0.0.0".parse().unwrap()));
        assert!(
            !cidr.contains("::a00:0".parse().unwrap()),
            "family must match"
        );
        assert!("10.0.0.1/8".parse::<IpCidr>().is_err());
        assert!("10.0.0.0/33".parse::<IpCidr>().is_err());
        assert!("2001:db8::/129".parse::<IpCidr>().is_err());
        assert_eq!(
            "2001:db8::1".parse::<IpCidr>().unwrap().prefix_len(),
            128,
            "a bare address is a host prefix"
        );
        let all: IpCidr = "::/0".parse().unwrap();
        assert_eq!(all.range(), (0, u128::MAX));
        assert_eq!(IpCidr::new("10.0.0.1".parse().unwrap(), 24), None);
    }

    #[test]
    fn ports_protocols_ethertypes_flags_parse() {
        assert_eq!("80".parse::<PortRange>().unwrap(), PortRange::single(80));
        assert_eq!(
            "1000-2000".parse::<PortRange>().unwrap(),
            PortRange::new(1000, 2000).unwrap()
        );
        assert!("2000-1000".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
        assert_eq!("TCP".parse::<Protocol>().unwrap().number(), 6);
        assert_eq!("47".parse::<Protocol>().unwrap().to_string(), "gre");
        assert!("256".parse::<Protocol>().is_err());
        assert_eq!(
            "0x88cc".parse::<EtherTypeMatch>().unwrap().0,
            EtherType(0x88cc)
        );
        assert_eq!("arp".parse::<EtherTypeMatch>().unwrap().0, EtherType::ARP);
        let flags: TcpFlagSet = "syn|ACK".parse().unwrap();
        assert_eq!(flags.0, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(flags.to_string(), "syn|ack");
        assert_eq!("".parse::<TcpFlagSet>().unwrap().0, TcpFlags::empty());
        assert!("syn|nope".parse::<TcpFlagSet>().is_err());
    }
}
