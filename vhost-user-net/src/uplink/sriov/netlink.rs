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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use vif_core::mac::MacAddr;

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

/// Walks the attributes in `bytes`; `base` is their offset in the message, for errors.
struct Attrs<'a> {
    bytes: &'a [u8],
    at: usize,
    base: usize,
}

fn attrs(bytes: &[u8], base: usize) -> Attrs<'_> {
    Attrs { bytes, at: 0, base }
}

impl<'a> Iterator for Attrs<'a> {
    /// `(type, payload)`.
    type Item = Result<(u16, &'a [u8]), NetlinkError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.at..)?;
        if rest.len() < NLA_HDR_LEN {
            return None; // trailing padding
        }
        let offset = self.base.saturating_add(self.at);
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let attr_type = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        let Some(payload) = (len >= NLA_HDR_LEN)
            .then(|| rest.get(NLA_HDR_LEN..len))
            .flatten()
        else {
            self.at = self.bytes.len();
            return Some(Err(NetlinkError::Malformed {
                what: "attribute length",
                offset,
            }));
        };
        // NLA_ALIGN: the next attribute starts at a multiple of 4.
        self.at = self.at.saturating_add(len.saturating_add(3) & !3);
        Some(Ok((attr_type, payload)))
    }
}

fn ne_u32(bytes: &[u8], index: usize) -> Option<u32> {
    let start = index.checked_mul(4)?;
    let b = bytes.get(start..start.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn ne_u64(bytes: &[u8]) -> Option<u64> {
    let b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_ne_bytes(b))
}

fn parse_vf_stats(payload: &[u8], base: usize) -> Result<VfStats, NetlinkError> {
    let mut stats = VfStats::default();
    for attr in attrs(payload, base) {
        let (attr_type, value) = attr?;
        let slot = match attr_type {
            IFLA_VF_STATS_RX_PACKETS => &mut stats.rx_packets,
            IFLA_VF_STATS_TX_PACKETS => &mut stats.tx_packets,
            IFLA_VF_STATS_RX_BYTES => &mut stats.rx_bytes,
            IFLA_VF_STATS_TX_BYTES => &mut stats.tx_bytes,
            IFLA_VF_STATS_BROADCAST => &mut stats.broadcast,
            IFLA_VF_STATS_MULTICAST => &mut stats.multicast,
            IFLA_VF_STATS_RX_DROPPED => &mut stats.rx_dropped,
            IFLA_VF_STATS_TX_DROPPED => &mut stats.tx_dropped,
            _ => continue, // IFLA_VF_STATS_PAD and counters newer than vif
        };
        *slot = ne_u64(value).ok_or(NetlinkError::Malformed {
            what: "IFLA_VF_STATS counter",
            offset: base,
        })?;
    }
    Ok(stats)
}

fn parse_vf_info(payload: &[u8], base: usize) -> Result<VfReport, NetlinkError> {
    let malformed = |what| NetlinkError::Malformed { what, offset: base };
    let mut report: Option<VfReport> = None;
    let mut vlan = None;
    let mut spoofchk = None;
    let mut trust = None;
    let mut rate = None;
    let mut stats = None;
    for attr in attrs(payload, base) {
        let (attr_type, value) = attr?;
        match attr_type {
            IFLA_VF_MAC => {
                let vf = ne_u32(value, 0).ok_or(malformed("IFLA_VF_MAC"))?;
                let mac = value
                    .get(4..10)
                    .and_then(MacAddr::from_bytes)
                    .ok_or(malformed("IFLA_VF_MAC"))?;
                report = Some(VfReport {
                    vf,
                    mac,
                    vlan: None,
                    spoofchk: None,
                    trust: None,
                    rate: None,
                    stats: None,
                });
            }
            IFLA_VF_VLAN => {
                let (vid, qos) = ne_u32(value, 1)
                    .zip(ne_u32(value, 2))
                    .ok_or(malformed("IFLA_VF_VLAN"))?;
                vlan = Some(VfVlan {
                    vid: u16::try_from(vid).map_err(|_| malformed("IFLA_VF_VLAN vlan"))?,
                    qos: u8::try_from(qos).map_err(|_| malformed("IFLA_VF_VLAN qos"))?,
                });
            }
            // A driver without the knob reports -1 (all ones): not a setting.
            IFLA_VF_SPOOFCHK => {
                let setting = ne_u32(value, 1).ok_or(malformed("IFLA_VF_SPOOFCHK"))?;
                spoofchk = (setting != u32::MAX).then_some(setting != 0);
            }
            IFLA_VF_TRUST => {
                let setting = ne_u32(value, 1).ok_or(malformed("IFLA_VF_TRUST"))?;
                trust = (setting != u32::MAX).then_some(setting != 0);
            }
            IFLA_VF_RATE => {
                let (min, max) = ne_u32(value, 1)
                    .zip(ne_u32(value, 2))
                    .ok_or(malformed("IFLA_VF_RATE"))?;
                rate = Some(VfRate {
                    min_mbps: min,
                    max_mbps: max,
                });
            }
            IFLA_VF_STATS => stats = Some(parse_vf_stats(value, base)?),
            _ => {}
        }
    }
    let mut report = report.ok_or(malformed("IFLA_VF_INFO without IFLA_VF_MAC"))?;
    report.vlan = vlan;
    report.spoofchk = spoofchk;
    report.trust = trust;
    report.rate = rate;
    report.stats = stats;
    Ok(report)
}

/// The VFs in an `RTM_NEWLINK` reply (one netlink message, header included). A link without
/// VFs has no `IFLA_VFINFO_LIST`: the list is empty.
pub fn parse_vf_reports(msg: &[u8]) -> Result<Vec<VfReport>, NetlinkError> {
    let header = NLMSG_HDR_LEN + IFINFOMSG_LEN;
    let len = ne_u32(msg, 0).ok_or(NetlinkError::Malformed {
        what: "nlmsghdr",
        offset: 0,
    })? as usize;
    let body = msg.get(header..len).ok_or(NetlinkError::Malformed {
        what: "nlmsg_len",
        offset: 0,
    })?;
    let mut reports = Vec::new();
    for attr in attrs(body, header) {
        let (attr_type, list) = attr?;
        if attr_type != IFLA_VFINFO_LIST {
            continue;
        }
        for info in attrs(list, header) {
            let (info_type, payload) = info?;
            if info_type == IFLA_VF_INFO {
                reports.push(parse_vf_info(payload, header)?);
            }
        }
    }
    Ok(reports)
}

/// Reads the error code and extended-ack message of an `NLMSG_ERROR` message.
fn parse_error(msg: &[u8], flags: u16) -> Result<(i32, Option<String>), NetlinkError> {
    let malformed = NetlinkError::Malformed {
        what: "nlmsgerr",
        offset: NLMSG_HDR_LEN,
    };
    let code = ne_u32(msg, NLMSG_HDR_LEN / 4).ok_or(malformed)? as i32;
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // nlmsgerr: error (4), then the request's header, whole or capped (NETLINK_CAP_ACK).
        let request_len = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDR_LEN
        } else {
            ne_u32(msg, NLMSG_HDR_LEN / 4 + 1).unwrap_or(0) as usize
        };
        let tlvs_at = (NLMSG_HDR_LEN + 4).saturating_add(request_len);
        if let Some(tlvs) = msg.get(tlvs_at..) {
            for attr in attrs(tlvs, tlvs_at).flatten() {
                if attr.0 == NLMSGERR_ATTR_MSG {
                    let text = attr.1.split(|&b| b == 0).next().unwrap_or_default();
                    message = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
    }
    Ok((code, message))
}

/// A blocking `NETLINK_ROUTE` socket for control-plane requests.
pub struct RtNetlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl RtNetlink {
    pub fn open() -> Result<RtNetlink, NetlinkError> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(NetlinkError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Best effort: a capped ack with the kernel's reason in it. Kernels before 4.12 lack
        // extended acks; errors then carry only the errno.
        for option in [NETLINK_CAP_ACK, NETLINK_EXT_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: `one` outlives the call and its size is passed.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    option,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        Ok(RtNetlink {
            fd,
            seq: std::process::id().wrapping_mul(0x9e37_79b9),
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Sends `request` (a message from this module) with a fresh sequence number and returns
    /// the reply with that number: `Ok(None)` for an ack, `Ok(Some(message))` for data.
    fn transact(
        &mut self,
        request_name: &'static str,
        request: &mut [u8],
    ) -> Result<Option<Vec<u8>>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        if let Some(field) = request.get_mut(8..12) {
            field.copy_from_slice(&seq.to_ne_bytes());
        }
        // SAFETY: an all-zero sockaddr_nl is valid; family is set next (pid 0 = the kernel).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `request` and `kernel` are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(NetlinkError::Send {
                request: request_name,
                source: io::Error::last_os_error(),
            });
        }
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let got = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if got < 0 {
                let source = io::Error::last_os_error();
                if source.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NetlinkError::Recv {
                    request: request_name,
                    source,
                });
            }
            let datagram = self.buf.get(..got as usize).unwrap_or_default();
            let mut at = 0usize;
            while let Some(header) = datagram.get(at..at.saturating_add(NLMSG_HDR_LEN)) {
                let len = ne_u32(header, 0).unwrap_or(0) as usize;
                let msg_type = u16::from_ne_bytes([header[4], header[5]]);
                let flags = u16::from_ne_bytes([header[6], header[7]]);
                let msg_seq = ne_u32(header, 2).unwrap_or(0);
                let Some(msg) = (len >= NLMSG_HDR_LEN)
                    .then(|| datagram.get(at..at.saturating_add(len)))
                    .flatten()
                else {
                    return Err(NetlinkError::Malformed {
                        what: "nlmsg_len",
                        offset: at,
                    });
                };
                at = at.saturating_add(len.saturating_add(3) & !3);
                if msg_seq != seq {
                    continue; // a late reply to an earlier, abandoned request
                }
                match msg_type {
                    NLMSG_ERROR => {
                        let (code, message) = parse_error(msg, flags)?;
                        if code == 0 {
                            return Ok(None);
                        }
                        return Err(NetlinkError::Kernel {
                            source: io::Error::from_raw_os_error(code.saturating_neg()),
                            message,
                        });
                    }
                    NLMSG_DONE => return Ok(None),
                    _ => return Ok(Some(msg.to_vec())),
                }
            }
        }
    }

    /// Applies `config` to a VF of the PF whose ifindex is `pf_ifindex`; waits for the ack.
    pub fn set_vf(&mut self, pf_ifindex: i32, config: &VfConfig) -> Result<(), NetlinkError> {
        let mut request = set_vf_request(pf_ifindex, config)?;
        self.transact("RTM_NEWLINK (set VF)", &mut request)
            .map(|_| ())
    }

    /// Every VF of `pf` with its settings and counters.
    pub fn vf_reports(&mut self, pf: &str) -> Result<Vec<VfReport>, NetlinkError> {
        let mut request = get_vfs_request(pf)?;
        match self.transact("RTM_GETLINK (VF info)", &mut request)? {
            Some(reply) => parse_vf_reports(&reply),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds an `RTM_NEWLINK` reply the way `rtnl_fill_vfinfo` lays one VF out (kernel
    /// `net/core/rtnetlink.c`), by hand: MAC, VLAN, RATE, SPOOFCHK, TRUST, STATS with a PAD.
    fn reply_with_one_vf() -> Vec<u8> {
        let mut msg = MessageBuilder::new(RTM_NEWLINK, 0).ifinfomsg(0, 7);
        msg.attr(IFLA_IFNAME, b"eth0\0");
        let list = msg.begin_nest(IFLA_VFINFO_LIST);
        let info = msg.begin_nest(IFLA_VF_INFO);
        let mut mac = 2u32.to_ne_bytes().to_vec();
        mac.extend_from_slice(&[0x52, 0x54, 0, 0xab, 0xcd, 0xef]);
        mac.resize(36, 0);
        msg.attr(IFLA_VF_MAC, &mac);
        msg.attr(IFLA_VF_VLAN, &u32s(&[2, 100, 5]));
        msg.attr(IFLA_VF_RATE, &u32s(&[2, 0, 1000]));
        msg.attr(IFLA_VF_SPOOFCHK, &u32s(&[2, 1]));
        msg.attr(IFLA_VF_TRUST, &u32s(&[2, u32::MAX]));
        let stats = msg.begin_nest(IFLA_VF_STATS | 0x8000);
        for (kind, value) in [(0u16, 10u64), (1, 20), (2, 1000), (3, 2000), (7, 3)] {
            msg.attr(6, &[]); // IFLA_VF_STATS_PAD before each 64-bit value
            msg.attr(kind, &value.to_ne_bytes());
        }
        msg.end_nest(stats);
        msg.end_nest(info);
        msg.end_nest(list);
        msg.finish()
    }

    #[test]
    fn parses_a_vf_with_stats() {
        let reports = parse_vf_reports(&reply_with_one_vf()).unwrap();
        assert_eq!(reports.len(), 1);
        let vf = reports[0];
        assert_eq!(vf.vf, 2);
        assert_eq!(vf.mac, MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 0xef]));
        assert_eq!(vf.vlan, Some(VfVlan { vid: 100, qos: 5 }));
        assert_eq!(vf.spoofchk, Some(true));
        assert_eq!(vf.trust, None, "-1 means the driver has no trust knob");
        assert_eq!(
            vf.rate,
            Some(VfRate {
                min_mbps: 0,
                max_mbps: 1000
            })
        );
        let stats = vf.stats.unwrap();
        assert_eq!((stats.rx_packets, stats.tx_packets), (10, 20));
        assert_eq!(
            (stats.rx_bytes, stats.tx_bytes, stats.rx_dropped),
            (1000, 2000, 3)
        );
    }

    #[test]
    fn link_without_vfs_has_none() {
        let msg = MessageBuilder::new(RTM_NEWLINK, 0).ifinfomsg(0, 1).finish();
        assert!(parse_vf_reports(&msg).unwrap().is_empty());
    }

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

    #[test]
    fn error_reply_carries_the_extended_ack() {
        // NLMSG_ERROR, capped, with NLMSGERR_ATTR_MSG: error -95, the request's header, TLVs.
        let mut msg = MessageBuilder::new(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        msg.buf.extend_from_slice(&(-95i32).to_ne_bytes());
        msg.buf.extend_from_slice(&[0; NLMSG_HDR_LEN]);
        msg.attr(NLMSGERR_ATTR_MSG, b"no VFs\0");
        let msg = msg.finish();
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(
            parse_error(&msg, flags).unwrap(),
            (-95, Some("no VFs".to_owned()))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_vf_reports(&bytes);
            let _ = parse_error(&bytes, NLM_F_ACK_TLVS);
            let _ = parse_error(&bytes, NLM_F_ACK_TLVS | NLM_F_CAPPED);
        }

        #[test]
        fn mutated_replies_never_panic(at in 0usize..400, byte in any::<u8>()) {
            let mut reply = reply_with_one_vf();
            let len = reply.len();
            reply[at % len] = byte;
            let _ = parse_vf_reports(&reply);
        }
    }
}
