//! IP protocol numbers (IANA "Assigned Internet Protocol Numbers"): the IPv4 `protocol` field
//! and the IPv6 `next header` chain share one registry, so they share one type.

use std::fmt;

/// An IP protocol number: the IPv4 `protocol` field, an IPv6 `next header`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options (RFC 8200 § 4.3).
    pub const HOPOPT: IpProtocol = IpProtocol(0);
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const IGMP: IpProtocol = IpProtocol(2);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 encapsulated in IP (RFC 2473).
    pub const IPV6: IpProtocol = IpProtocol(41);
    /// IPv6 routing header (RFC 8200 § 4.4).
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 fragment header (RFC 8200 § 4.5).
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    pub const GRE: IpProtocol = IpProtocol(47);
    /// Encapsulating security payload (RFC 4303): what follows is encrypted.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// Authentication header (RFC 4302).
    pub const AH: IpProtocol = IpProtocol(51);
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 "no next header" (RFC 8200 § 4.7).
    pub const IPV6_NONXT: IpProtocol = IpProtocol(59);
    /// IPv6 destination options (RFC 8200 § 4.6).
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
    pub const SCTP: IpProtocol = IpProtocol(132);
    /// Mobility header (RFC 6275), an IPv6 extension header.
    pub const MOBILITY: IpProtocol = IpProtocol(135);
    /// Host identity protocol (RFC 7401), an IPv6 extension header.
    pub const HIP: IpProtocol = IpProtocol(139);
    /// Shim6 (RFC 5533), an IPv6 extension header.
    pub const SHIM6: IpProtocol = IpProtocol(140);

    /// The IPv6 extension headers of RFC 8200 § 4 and the IANA "IPv6 Extension Header Types"
    /// registry (RFC 7045), ESP excluded: what follows ESP is encrypted, so the chain ends there.
    pub const fn is_ipv6_extension(self) -> bool {
        matches!(self.0, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140)
    }
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::HOPOPT => "HOPOPT",
            Self::ICMP => "ICMP",
            Self::IGMP => "IGMP",
            Self::TCP => "TCP",
            Self::UDP => "UDP",
            Self::IPV6 => "IPV6",
            Self::IPV6_ROUTE => "IPV6_ROUTE",
            Self::IPV6_FRAG => "IPV6_FRAG",
            Self::GRE => "GRE",
            Self::ESP => "ESP",
            Self::AH => "AH",
            Self::ICMPV6 => "ICMPV6",
            Self::IPV6_NONXT => "IPV6_NONXT",
            Self::IPV6_OPTS => "IPV6_OPTS",
            Self::SCTP => "SCTP",
            _ => return write!(f, "IpProtocol({})", self.0),
        };
        f.write_str(name)
    }
}
