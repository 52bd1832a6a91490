//! Anti-spoofing (port security) on frames a guest sends: it may use only its own MAC and the
//! IP addresses it was given, in the Ethernet header, in IPv4/IPv6 source addresses, in ARP and
//! in IPv6 Neighbor Discovery. What OpenStack's port security and VPP's MACIP ACLs enforce.
//!
//! # What is allowed
//!
//! - Ethernet source = the VIF's MAC, always.
//! - IPv4 source in `allowed_ips`. Source `0.0.0.0` only for a DHCP client message (UDP
//!   68 → 67, RFC 2131 § 4.1: a client has no address yet), when `allow_dhcp_client`.
//! - IPv6 source in `allowed_ips`, or the link-local address derived from the MAC (modified
//!   EUI-64, RFC 4291 § 2.5.1 and appendix A) when `eui64_link_local`. Guests that derive
//!   their link-local address otherwise (RFC 7217 stable-privacy, the NetworkManager default)
//!   need it listed, or `fe80::/64`: the derived address is what OpenStack allows too. Source
//!   `::` only for what RFC 4861 § 4.3 / RFC 4862 § 5.4 (DAD neighbor solicitations), § 4.1
//!   (router solicitations) and RFC 3810 § 5.2.13 (MLD reports) permit before an address exists.
//! - ARP (RFC 826): Ethernet/IPv4 only; sender MAC = the VIF's MAC; sender IP allowed, or
//!   `0.0.0.0` for an ARP probe (RFC 5227 § 2.1.1).
//! - Neighbor advertisement: target address allowed (as a source would be); a target
//!   link-layer address option, if any, = the VIF's MAC. Solicitations: a source link-layer
//!   address option, if any, = the VIF's MAC. A malformed option refuses the message (RFC
//!   4861 § 4.6).
//! - Router advertisements and redirects (RFC 6105 "RA guard"), and DHCP/DHCPv6 server
//!   messages (UDP source 67 or 547), are refused unless allowed: a guest is not the router or
//!   the DHCP server of its segment.
//! - Other EtherTypes: only the MAC is checked; ACLs can refuse them by EtherType.
//!
//! The check reads the frame through the caller's [`FrameLayout`] and [`AclKey`] and
//! allocates nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::error::AclError;
use super::fields::IpCidr;
use super::key::AclKey;
use crate::mac::MacAddr;
use crate::stats::DropReason;
use crate::wire::arp::{ArpPacket, ArpRepr};
use crate::wire::frame::{FrameLayout, L3Kind};
use crate::wire::icmpv6::{Icmpv6Message, Icmpv6Packet};
use crate::wire::ipv4::IpProtocol;

/// Most allowed prefixes per VIF: a config sanity bound (the check scans them).
pub const MAX_ALLOWED_IPS: usize = 64;

fn yes() -> bool {
    true
}

/// The port-security settings of a VIF; the MAC comes from the VIF spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSecuritySpec {
    /// Addresses (or prefixes) the guest may send from.
    #[serde(default)]
    pub allowed_ips: Vec<IpCidr>,
    #[serde(default = "yes")]
    pub allow_dhcp_client: bool,
    #[serde(default = "yes")]
    pub eui64_link_local: bool,
    #[serde(default)]
    pub allow_router_advertisements: bool,
    #[serde(default)]
    pub allow_dhcp_server: bool,
}

impl Default for PortSecuritySpec {
    fn default() -> Self {
        PortSecuritySpec {
            allowed_ips: Vec::new(),
            allow_dhcp_client: true,
            eui64_link_local: true,
            allow_router_advertisements: false,
            allow_dhcp_server: false,
        }
    }
}

/// Why a frame is spoofed; each maps to [`DropReason::Spoofed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpoofCause {
    SrcMac,
    SrcIp,
    ArpNotEthernetIpv4,
    ArpSenderMac,
    ArpSenderIp,
    NdTargetAddr,
    NdLinkLayerAddr,
    NdMalformed,
    /// A router advertisement or redirect from a guest.
    RouterMessage,
    /// A DHCP or DHCPv6 server message from a guest.
    DhcpServer,
}

impl SpoofCause {
    pub const fn drop_reason(self) -> DropReason {
        DropReason::Spoofed
    }
}

/// Compiled port security of one VIF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSecurity {
    mac: MacAddr,
    /// (first, last) of each allowed prefix, per family.
    v4: Box<[(u128, u128)]>,
    v6: Box<[(u128, u128)]>,
    link_local: Option<Ipv6Addr>,
    spec: PortSecuritySpec,
}

/// UDP ports of DHCP (RFC 2131 § 4.1) and DHCPv6 (RFC 8415 § 7.2) servers and clients.
const DHCP_SERVER: u16 = 67;
const DHCP_CLIENT: u16 = 68;
const DHCPV6_SERVER: u16 = 547;

impl PortSecurity {
    pub fn new(mac: MacAddr, spec: &PortSecuritySpec) -> Result<PortSecurity, AclError> {
        if mac.is_multicast() || mac.is_zero() {
            return Err(AclError::PortSecurity {
                field: "mac",
                problem: "must be a unicast, non-zero address",
            });
        }
        if spec.allowed_ips.len() > MAX_ALLOWED_IPS {
            return Err(AclError::PortSecurity {
                field: "allowed_ips",
                problem: "lists more than 64 prefixes",
            });
        }
        let ranges = |v4: bool| {
            spec.allowed_ips
                .iter()
                .filter(|cidr| cidr.is_ipv4() == v4)
                .map(IpCidr::range)
                .collect()
        };
        Ok(PortSecurity {
            mac,
            v4: ranges(true),
            v6: ranges(false),
            link_local: spec.eui64_link_local.then(|| eui64_link_local(mac)),
            spec: spec.clone(),
        })
    }

    pub const fn mac(&self) -> MacAddr {
        self.mac
    }

    /// True when the guest may use `addr` as a source (or NA target).
    pub fn allows_ip(&self, addr: IpAddr) -> bool {
        let (ranges, value) = match addr {
            IpAddr::V4(v4) => (&self.v4, u128::from(v4.to_bits())),
            IpAddr::V6(v6) => {
                if Some(v6) == self.link_local {
                    return true;
                }
                (&self.v6, v6.to_bits())
            }
        };
        ranges
            .iter()
            .any(|&(first, last)| first <= value && value <= last)
    }

    /// Checks a frame the guest sent. `layout` and `key` must describe `frame`.
    pub fn check(
        &self,
        frame: &[u8],
        layout: &FrameLayout,
        key: &AclKey,
    ) -> Result<(), SpoofCause> {
        let flow = &key.flow;
        if flow.src_mac != self.mac {
            return Err(SpoofCause::SrcMac);
        }
        let l3 = frame
            .get(layout.l3.offset..layout.l3.end)
            .unwrap_or_default();
        match layout.l3.kind {
            L3Kind::Arp => self.check_arp(l3),
            L3Kind::Ipv4 => {
                let Some(IpAddr::V4(src)) = flow.src_ip() else {
                    return Err(SpoofCause::SrcIp);
                };
                let udp_ports = (flow.ip_proto == IpProtocol::UDP.0 && key.has_l4())
                    .then_some((flow.src_port, flow.dst_port));
                if src == Ipv4Addr::UNSPECIFIED {
                    let dhcp_client = udp_ports == Some((DHCP_CLIENT, DHCP_SERVER));
                    return if dhcp_client && self.spec.allow_dhcp_client {
                        Ok(())
                    } else {
                        Err(SpoofCause::SrcIp)
                    };
                }
                if !self.allows_ip(src.into()) {
                    return Err(SpoofCause::SrcIp);
                }
                self.check_dhcp_server(udp_ports, DHCP_SERVER)
            }
            L3Kind::Ipv6 => {
                let Some(IpAddr::V6(src)) = flow.src_ip() else {
                    return Err(SpoofCause::SrcIp);
                };
                let icmp = if flow.ip_proto == IpProtocol::ICMPV6.0 && key.has_l4() {
                    let start = layout.l4.map_or(usize::MAX, |l4| l4.offset);
                    let bytes = frame.get(start..layout.l3.end).unwrap_or_default();
                    Some(Icmpv6Packet::new_checked(bytes).map_err(|_| SpoofCause::NdMalformed)?)
                } else {
                    None
                };
                let message = icmp.as_ref().map(Icmpv6Packet::msg_type);
                if src == Ipv6Addr::UNSPECIFIED {
                    let permitted = matches!(
                        message,
                        Some(
                            Icmpv6Message::NEIGHBOR_SOLICIT
                                | Icmpv6Message::ROUTER_SOLICIT
                                | Icmpv6Message::MLD_REPORT
                                | Icmpv6Message::MLDV2_REPORT
                        )
                    );
                    if !permitted {
                        return Err(SpoofCause::SrcIp);
                    }
                } else if !self.allows_ip(src.into()) {
                    return Err(SpoofCause::SrcIp);
                }
                if let Some(icmp) = icmp {
                    self.check_ndp(&icmp)?;
                }
                let udp_ports = (flow.ip_proto == IpProtocol::UDP.0 && key.has_l4())
                    .then_some((flow.src_port, flow.dst_port));
                self.check_dhcp_server(udp_ports, DHCPV6_SERVER)
            }
            L3Kind::Other => Ok(()),
        }
    }

    fn check_arp(&self, l3: &[u8]) -> Result<(), SpoofCause> {
        let arp = ArpPacket::new_checked(l3)
            .and_then(|packet| ArpRepr::parse(&packet))
            .map_err(|_| SpoofCause::ArpNotEthernetIpv4)?;
        if arp.sender_mac != self.mac {
            return Err(SpoofCause::ArpSenderMac);
        }
        if arp.sender_ip != Ipv4Addr::UNSPECIFIED && !self.allows_ip(arp.sender_ip.into()) {
            return Err(SpoofCause::ArpSenderIp);
        }
        Ok(())
    }

    fn check_ndp(&self, icmp: &Icmpv6Packet<&[u8]>) -> Result<(), SpoofCause> {
        match icmp.msg_type() {
            Icmpv6Message::NEIGHBOR_ADVERT => {
                let target = icmp.target_addr().ok_or(SpoofCause::NdMalformed)?;
                if !self.allows_ip(target.into()) {
                    return Err(SpoofCause::NdTargetAddr);
                }
                self.check_lladdr(icmp.target_lladdr())
            }
            Icmpv6Message::NEIGHBOR_SOLICIT | Icmpv6Message::ROUTER_SOLICIT => {
                self.check_lladdr(icmp.source_lladdr())
            }
            Icmpv6Message::ROUTER_ADVERT | Icmpv6Message::REDIRECT
                if !self.spec.allow_router_advertisements =>
            {
                Err(SpoofCause::RouterMessage)
            }
            _ => Ok(()),
        }
    }

    fn check_lladdr(&self, option: crate::wire::Result<Option<MacAddr>>) -> Result<(), SpoofCause> {
        match option {
            Err(_) => Err(SpoofCause::NdMalformed),
            Ok(Some(mac)) if mac != self.mac => Err(SpoofCause::NdLinkLayerAddr),
            Ok(_) => Ok(()),
        }
    }

    fn check_dhcp_server(
        &self,
        udp_ports: Option<(u16, u16)>,
        server: u16,
    ) -> Result<(), SpoofCause> {
        match udp_ports {
            Some((src, _)) if src == server && !self.spec.allow_dhcp_server => {
                Err(SpoofCause::DhcpServer)
            }
            _ => Ok(()),
        }
    }
}

/// The link-local address with the modified EUI-64 interface identifier of `mac`: the
/// universal/local bit flipped and `ff:fe` inserted in the middle (RFC 4291 appendix A).
pub fn eui64_link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.octets();
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

#[cfg(test)]
mod tests;
