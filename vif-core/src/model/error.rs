//! Why a VIF spec is refused: one typed error per rule, each naming the VIF, the field and the
//! bound, so an operator can fix the config file from the message alone.
//!
//! Validation stops at the first broken rule; the order is the field order of [`VifSpec`].
//!
//! [`VifSpec`]: super::VifSpec

use std::net::IpAddr;

use super::names::VifId;
use crate::mac::MacAddr;

/// A name that breaks its syntax rule (see [`super::names`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is {len} bytes long, more than {max}")]
    TooLong { len: usize, max: usize },
    #[error("has {ch:?} at byte {at}; allowed: {allowed}")]
    BadChar {
        ch: char,
        at: usize,
        allowed: &'static str,
    },
    #[error("is reserved ({reason})")]
    Reserved { reason: &'static str },
}

/// What is wrong with an IP address used as a VXLAN tunnel endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointProblem {
    /// `0.0.0.0` or `::`: not an address a packet can be sent to or from.
    Unspecified,
    /// A group address; static remotes are unicast VTEPs (head-end replication, RFC 7348 § 4.2
    /// describes multicast flooding, which this model does not configure).
    Multicast,
    /// `255.255.255.255`, the IPv4 limited broadcast address (RFC 919 § 7).
    Broadcast,
}

impl std::fmt::Display for EndpointProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndpointProblem::Unspecified => "the unspecified address",
            EndpointProblem::Multicast => "a multicast address",
            EndpointProblem::Broadcast => "the limited broadcast address",
        })
    }
}

/// A VIF spec that must not be served. Every variant but [`ModelError::InvalidVifId`] carries the
/// id of the VIF it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("vif id {id:?} {reason} (it becomes a metric label and part of socket paths)")]
    InvalidVifId { id: String, reason: NameError },

    #[error("vif {vif}: {field} {value:?} {reason}")]
    InvalidName {
        vif: VifId,
        field: &'static str,
        value: String,
        reason: NameError,
    },

    #[error(
        "vif {vif}: {field} {value:?} is not a valid Linux interface name: {reason} \
         (IFNAMSIZ {ifnamsiz} including the NUL, net/core/dev.c dev_valid_name)"
    )]
    InvalidInterfaceName {
        vif: VifId,
        field: &'static str,
        value: String,
        reason: NameError,
        ifnamsiz: usize,
    },

    #[error(
        "vif {vif}: mac {mac} is a group address (I/G bit set, IEEE 802-2014 § 8.2); \
         a VIF needs a unicast MAC"
    )]
    MacNotUnicast { vif: VifId, mac: MacAddr },

    #[error("vif {vif}: mac 00:00:00:00:00:00 is not a station address")]
    MacZero { vif: VifId },

    #[error("vif {vif}: mtu {mtu} is below the minimum {min} (RFC 791 § 3.2)")]
    MtuTooSmall { vif: VifId, mtu: u16, min: u16 },

    #[error(
        "vif {vif}: mtu {mtu} exceeds the {uplink} uplink limit {limit} \
         ({field} {lower_mtu} - {overhead} bytes of encapsulation)"
    )]
    MtuOverUplink {
        vif: VifId,
        mtu: u16,
        /// "VXLAN/IPv4" or "VXLAN/IPv6".
        uplink: &'static str,
        limit: u16,
        /// The uplink field that bounds the VIF MTU.
        field: &'static str,
        lower_mtu: u16,
        overhead: u16,
    },

    #[error(
        "vif {vif}: mtu {mtu} exceeds the VLAN uplink limit {limit} (parent_mtu {parent_mtu} - 4 \
         bytes of 802.1Q tag)"
    )]
    MtuOverVlanParent {
        vif: VifId,
        mtu: u16,
        limit: u16,
        parent_mtu: u16,
    },

    #[error("vif {vif}: {field} {mtu} is below the {family} minimum {min} ({rfc})")]
    LowerMtuTooSmall {
        vif: VifId,
        field: &'static str,
        mtu: u16,
        family: &'static str,
        min: u16,
        rfc: &'static str,
    },

    #[error("vif {vif}: queue_pairs {queue_pairs} is out of range [{min}, {max}]")]
    QueuePairsOutOfRange {
        vif: VifId,
        queue_pairs: u16,
        min: u16,
        max: u16,
    },

    #[error("vif {vif}: queue_size {queue_size} is out of range [{min}, {max}]")]
    QueueSizeOutOfRange {
        vif: VifId,
        queue_size: u16,
        min: u16,
        max: u16,
    },

    #[error("vif {vif}: queue_size {queue_size} is not a power of two (VIRTIO 1.2 § 2.7)")]
    QueueSizeNotPowerOfTwo { vif: VifId, queue_size: u16 },

    #[error(
        "vif {vif}: offloads.{offload} requires offloads.{requires} \
         (VIRTIO 1.2 § 5.1.3.1 feature bit requirements)"
    )]
    OffloadDependency {
        vif: VifId,
        offload: &'static str,
        requires: &'static str,
    },

    #[error("vif {vif}: uplink.udp_port 0 is not a port; the IANA VXLAN port is 4789")]
    UdpPortZero { vif: VifId },

    #[error("vif {vif}: uplink.local {addr} is {problem}; a VTEP needs a unicast address")]
    LocalNotUnicast {
        vif: VifId,
        addr: IpAddr,
        problem: EndpointProblem,
    },

    #[error(
        "vif {vif}: uplink.remotes[{index}] {addr} is {problem}; a VTEP needs a unicast address"
    )]
    RemoteNotUnicast {
        vif: VifId,
        index: usize,
        addr: IpAddr,
        problem: EndpointProblem,
    },

    #[error(
        "vif {vif}: uplink.remotes[{index}] {addr} is not in the address family of \
         uplink.local {local}"
    )]
    RemoteFamilyMismatch {
        vif: VifId,
        index: usize,
        addr: IpAddr,
        local: IpAddr,
    },

    #[error("vif {vif}: uplink.remotes[{index}] {addr} is uplink.local itself")]
    RemoteIsLocal {
        vif: VifId,
        index: usize,
        addr: IpAddr,
    },

    #[error(
        "vif {vif}: uplink.remotes[{index}] {addr} repeats uplink.remotes[{first}] \
         (each flooded frame would be sent twice)"
    )]
    DuplicateRemote {
        vif: VifId,
        index: usize,
        first: usize,
        addr: IpAddr,
    },

    #[error("vif {vif}: uplink.remotes has {count} entries, more than {max}")]
    TooManyRemotes {
        vif: VifId,
        count: usize,
        max: usize,
    },

    #[error("vif {vif}: uplink.pcp {pcp} is out of range [0, {max}] (IEEE 802.1Q-2018 § 6.9.3)")]
    PcpOutOfRange { vif: VifId, pcp: u8, max: u8 },

    #[error("vif {vif}: uplink.qos {qos} is out of range [0, {max}] (IEEE 802.1Q-2018 § 6.9.3)")]
    VfQosOutOfRange { vif: VifId, qos: u8, max: u8 },

    #[error(
        "vif {vif}: uplink.qos {qos} needs uplink.vlan: the priority travels in the tag of the \
         VF's VLAN"
    )]
    VfQosWithoutVlan { vif: VifId, qos: u8 },

    #[error("vif {vif}: {field} 0 is not a rate (the kernel reads 0 as no limit); leave it out")]
    VfRateZero { vif: VifId, field: &'static str },

    #[error("vif {vif}: uplink.min_tx_rate_mbps {min} exceeds uplink.max_tx_rate_mbps {max}")]
    VfRateInverted { vif: VifId, min: u32, max: u32 },

    #[error("vif {vif}: port_security.allowed_ips has {count} entries, more than {max}")]
    TooManyAllowedIps {
        vif: VifId,
        count: usize,
        max: usize,
    },

    #[error("vif {vif}: labels has {count} entries, more than {max}")]
    TooManyLabels {
        vif: VifId,
        count: usize,
        max: usize,
    },

    #[error("vif {vif}: labels.{key} value is {len} bytes long, more than {max}")]
    LabelValueTooLong {
        vif: VifId,
        key: String,
        len: usize,
        max: usize,
    },

    #[error("vif {vif}: labels.{key} value has control character {ch:?} at byte {at}")]
    LabelValueControlChar {
        vif: VifId,
        key: String,
        ch: char,
        at: usize,
    },
}
