//! rtnetlink for SR-IOV VFs: the `RTM_NEWLINK` that sets a VF's MAC, VLAN, spoof checking, trust
//! and rate on its PF, the `RTM_GETLINK` that reads them back with the VF's counters, and a small
//! blocking `NETLINK_ROUTE` socket to send them.
//!
//! The messages are built byte for byte as iproute2 builds them for `ip link set DEV vf N mac …
//! vlan … qos … spoofchk … trust … min_tx_rate … max_tx_rate …` (iproute2 `ip/iplink.c`,
//! `iplink_parse_vf`): the same message type (`RTM_NEWLINK` without `NLM_F_CREATE`, which the
//! kernel routes to `do_setlink` exactly as `RTM_SETLINK`; every driver's VF code is exercised
//! that way), the same attribute order, the legacy `IFLA_VF_VLAN` for 802.1Q VLANs, nests without
//! `NLA_F_NESTED`. The tests compare them with iproute2's captured bytes
//! (`tests/data/sriov/README.md`).
//!
//! Attribute layouts are those of `include/uapi/linux/if_link.h`; the kernel side is
//! `net/core/rtnetlink.c` (`do_setvfinfo`, `rtnl_fill_vfinfo`). Replies are parsed with bounds
//! checks on every length: a malformed reply is an error, never a panic.

use std::io;

use vif_core::mac::MacAddr;

mod parse;
mod socket;

pub use parse::parse_vf_reports;
pub use socket::RtNetlink;

/// `NLMSG_HDRLEN`: `struct nlmsghdr`.
pub const NLMSG_HDR_LEN: usize = 16;
/// `struct ifinfomsg`.
pub const IFINFOMSG_LEN: usize = 16;
const NLA_HDR_LEN: usize = 4;
/// `NLA_TYPE_MASK`: the type bits of `nla_type`, without `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER`.
const NLA_TYPE_MASK: u16 = 0x3fff;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
/// Set on an error reply that carries only the request's header (`NETLINK_CAP_ACK`).
const NLM_F_CAPPED: u16 = 0x100;
/// Set on an error reply followed by extended-ack attributes (`NETLINK_EXT_ACK`).
const NLM_F_ACK_TLVS: u16 = 0x200;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
/// `NLMSGERR_ATTR_MSG`: the kernel's human-readable reason.
const NLMSGERR_ATTR_MSG: u16 = 1;

const IFLA_IFNAME: u16 = 3;
const IFLA_VFINFO_LIST: u16 = 22;
const IFLA_EXT_MASK: u16 = 29;
/// `RTEXT_FILTER_VF`: include `IFLA_VFINFO_LIST` (with statistics) in the reply.
const RTEXT_FILTER_VF: u32 = 1;

const IFLA_VF_INFO: u16 = 1;
const IFLA_VF_MAC: u16 = 1;
const IFLA_VF_VLAN: u16 = 2;
const IFLA_VF_SPOOFCHK: u16 = 4;
const IFLA_VF_RATE: u16 = 6;
const IFLA_VF_STATS: u16 = 8;
const IFLA_VF_TRUST: u16 = 9;

const IFLA_VF_STATS_RX_PACKETS: u16 = 0;
const IFLA_VF_STATS_TX_PACKETS: u16 = 1;
const IFLA_VF_STATS_RX_BYTES: u16 = 2;
const IFLA_VF_STATS_TX_BYTES: u16 = 3;
const IFLA_VF_STATS_BROADCAST: u16 = 4;
const IFLA_VF_STATS_MULTICAST: u16 = 5;
const IFLA_VF_STATS_RX_DROPPED: u16 = 7;
const IFLA_VF_STATS_TX_DROPPED: u16 = 8;

/// `struct ifla_vf_mac`: the address field is 32 bytes (`MAX_ADDR_LEN`); Ethernet uses 6.
const VF_MAC_FIELD_LEN: usize = 32;
/// The largest VLAN id a VF accepts (`do_setvfinfo` refuses `vlan > 4095`; 4095 is reserved
/// by IEEE 802.1Q-2018 table 9-2, so vif stops at 4094).
pub const MAX_VF_VID: u16 = 4094;
/// The largest 802.1p priority (3 bits).
pub const MAX_VF_QOS: u8 = 7;
/// Biggest reply vif reads: a PF with 256 VFs, each with its statistics, fits.
const RECV_BUF_LEN: usize = 256 * 1024;

/// Why a VF could not be configured or read.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a NETLINK_ROUTE socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot send the {request} request: {source}")]
    Send {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the reply to the {request} request: {source}")]
    Recv {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel refused the request (`RTNETLINK answers: …`, as iproute2 says it).
    #[error("RTNETLINK answers: {}{}", .source, .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        #[source]
        source: io::Error,
        /// The extended-ack reason, when the kernel gave one.
        message: Option<String>,
    },
    #[error("malformed rtnetlink reply: {what} at byte {offset}")]
    Malformed { what: &'static str, offset: usize },
    #[error("vlan {vid} is out of range [0, {max}] (0 clears the VF's VLAN)")]
    VlanOutOfRange { vid: u16, max: u16 },
    #[error("qos {qos} is out of range [0, {max}]")]
    QosOutOfRange { qos: u8, max: u8 },
    #[error("min_tx_rate {min} Mbit/s exceeds max_tx_rate {max} Mbit/s")]
    RateInverted { min: u32, max: u32 },
    #[error("interface name {name:?} is not a valid Linux interface name (1..=15 bytes, no NUL)")]
    BadIfname { name: String },
}

/// A VF's 802.1Q VLAN as the PF inserts and strips it (port VLAN): `vid` 0 clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfVlan {
    pub vid: u16,
    /// 802.1p priority put in the tag, 0..=7.
    pub qos: u8,
}

/// A VF's transmit rate limits in Mbit/s; 0 means unlimited (`ip link … max_tx_rate 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VfRate {
    pub min_mbps: u32,
    pub max_mbps: u32,
}

/// What vif sets on one VF. Optional settings are left out of the message when `None`, so a
/// driver without that knob (many lack trust or min rate) still accepts the rest: the kernel
/// fails the whole request if any attribute's `ndo_set_vf_*` is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfConfig {
    pub vf: u32,
    pub mac: MacAddr,
    pub vlan: Option<VfVlan>,
    pub spoofchk: bool,
    pub trust: Option<bool>,
    pub rate: Option<VfRate>,
}

impl VfConfig {
    /// The settings that hand a VF back: no MAC, and every knob `set` touched back at its
    /// default (no VLAN, trust off, no rate limit), spoof checking on.
    pub fn cleared(set: &VfConfig) -> VfConfig {
        VfConfig {
            vf: set.vf,
            mac: MacAddr::ZERO,
            vlan: set.vlan.map(|_| VfVlan { vid: 0, qos: 0 }),
            spoofchk: true,
            trust: set.trust.map(|_| false),
            rate: set.rate.map(|_| VfRate::default()),
        }
    }

    /// Checks the ranges the kernel checks (`do_setvfinfo`), so the error names the field.
    pub fn check(&self) -> Result<(), NetlinkError> {
        if let Some(vlan) = self.vlan {
            if vlan.vid > MAX_VF_VID {
                return Err(NetlinkError::VlanOutOfRange {
                    vid: vlan.vid,
                    max: MAX_VF_VID,
                });
            }
            if vlan.qos > MAX_VF_QOS {
                return Err(NetlinkError::QosOutOfRange {
                    qos: vlan.qos,
                    max: MAX_VF_QOS,
                });
            }
        }
        if let Some(rate) = self.rate {
            if rate.max_mbps != 0 && rate.min_mbps > rate.max_mbps {
                return Err(NetlinkError::RateInverted {
                    min: rate.min_mbps,
                    max: rate.max_mbps,
                });
            }
        }
        Ok(())
    }
}

/// A VF's counters as its PF reports them (`IFLA_VF_STATS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VfStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub broadcast: u64,
    pub multicast: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// One VF as `RTM_GETLINK` reports it. Fields a driver does not report stay `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfReport {
    pub vf: u32,
    pub mac: MacAddr,
    pub vlan: Option<VfVlan>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub rate: Option<VfRate>,
    pub stats: Option<VfStats>,
}

/// Builds one netlink message: header, then `ifinfomsg`, then attributes (4-byte aligned).
struct MessageBuilder {
    buf: Vec<u8>,
}

impl MessageBuilder {
    fn new(msg_type: u16, flags: u16) -> MessageBuilder {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq, set by the socket
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0, the kernel fills it
        MessageBuilder { buf }
    }

    fn ifinfomsg(mut self, family: u8, ifindex: i32) -> MessageBuilder {
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
        self.buf.extend_from_slice(&ifindex.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // ifi_flags
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, attr_type: u16, payload: &[u8]) {
        // Payloads here are fixed structs of at most 36 bytes: the length fits a u16.
        let len = (NLA_HDR_LEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&attr_type.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    /// Opens a nest; returns where its header is, for [`MessageBuilder::end_nest`].
    fn begin_nest(&mut self, attr_type: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&attr_type.to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = u16::try_from(self.buf.len().saturating_sub(at)).unwrap_or(u16::MAX);
        if let Some(field) = self.buf.get_mut(at..at + 2) {
            field.copy_from_slice(&len.to_ne_bytes());
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        if let Some(field) = self.buf.get_mut(0..4) {
            field.copy_from_slice(&len.to_ne_bytes());
        }
        self.buf
    }
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// The `RTM_NEWLINK` request that applies `config` to a VF of the PF with index `pf_ifindex`:
/// `IFLA_VFINFO_LIST { IFLA_VF_INFO { MAC, VLAN?, SPOOFCHK, TRUST?, RATE? } }`.
pub fn set_vf_request(pf_ifindex: i32, config: &VfConfig) -> Result<Vec<u8>, NetlinkError> {
    config.check()?;
    let vf = config.vf;
    let mut msg = MessageBuilder::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)
        .ifinfomsg(libc::AF_UNSPEC as u8, pf_ifindex);
    let list = msg.begin_nest(IFLA_VFINFO_LIST);
    let info = msg.begin_nest(IFLA_VF_INFO);
    let mut mac = vf.to_ne_bytes().to_vec();
    mac.extend_from_slice(config.mac.as_bytes());
    mac.resize(4 + VF_MAC_FIELD_LEN, 0);
    msg.attr(IFLA_VF_MAC, &mac);
    if let Some(vlan) = config.vlan {
        msg.attr(
            IFLA_VF_VLAN,
            &u32s(&[vf, u32::from(vlan.vid), u32::from(vlan.qos)]),
        );
    }
    msg.attr(IFLA_VF_SPOOFCHK, &u32s(&[vf, u32::from(config.spoofchk)]));
    if let Some(trust) = config.trust {
        msg.attr(IFLA_VF_TRUST, &u32s(&[vf, u32::from(trust)]));
    }
    if let Some(rate) = config.rate {
        msg.attr(IFLA_VF_RATE, &u32s(&[vf, rate.min_mbps, rate.max_mbps]));
    }
    msg.end_nest(info);
    msg.end_nest(list);
    Ok(msg.finish())
}

/// The `RTM_GETLINK` request for interface `ifname` with its VF list and VF statistics, as
/// `ip -s link show dev IFNAME` sends it (family `AF_PACKET`, by name, `RTEXT_FILTER_VF`).
pub fn get_vfs_request(ifname: &str) -> Result<Vec<u8>, NetlinkError> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(NetlinkError::BadIfname {
            name: ifname.to_owned(),
        });
    }
    let mut msg =
        MessageBuilder::new(RTM_GETLINK, NLM_F_REQUEST).ifinfomsg(libc::AF_PACKET as u8, 0);
    let mut name = ifname.as_bytes().to_vec();
    name.push(0);
    msg.attr(IFLA_IFNAME, &name);
    msg.attr(IFLA_EXT_MASK, &RTEXT_FILTER_VF.to_ne_bytes());
    Ok(msg.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_out_of_range_settings() {
        let base = VfConfig {
            vf: 0,
            mac: MacAddr::ZERO,
            vlan: Some(VfVlan { vid: 4095, qos: 0 }),
            spoofchk: true,
            trust: None,
            rate: None,
        };
        assert!(matches!(
            set_vf_request(1, &base),
            Err(NetlinkError::VlanOutOfRange { vid: 4095, .. })
        ));
        let qos = VfConfig {
            vlan: Some(VfVlan { vid: 1, qos: 8 }),
            ..base
        };
        assert!(matches!(
            set_vf_request(1, &qos),
            Err(NetlinkError::QosOutOfRange { qos: 8, .. })
        ));
        let rate = VfConfig {
            vlan: None,
            rate: Some(VfRate {
                min_mbps: 10,
                max_mbps: 5,
            }),
            ..base
        };
        assert!(matches!(
            set_vf_request(1, &rate),
            Err(NetlinkError::RateInverted { min: 10, max: 5 })
        ));
        assert!(get_vfs_request("a-name-longer-than-15").is_err());
        assert!(get_vfs_request("").is_err());
    }

    #[test]
    fn cleared_resets_only_what_was_set() {
        let set = VfConfig {
            vf: 3,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            vlan: None,
            spoofchk: false,
            trust: Some(true),
            rate: None,
        };
        let cleared = VfConfig::cleared(&set);
        assert_eq!(cleared.mac, MacAddr::ZERO);
        assert_eq!(
            (cleared.vlan, cleared.trust, cleared.rate),
            (None, Some(false), None)
        );
        assert!(cleared.spoofchk);
    }
}
