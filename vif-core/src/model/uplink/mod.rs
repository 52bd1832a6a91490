//! Where a VIF's frames leave the host: a VXLAN tunnel, a VLAN on a parent interface, an SR-IOV
//! virtual function, or a host-local segment; the MTU each one leaves to the VIF; and the checks
//! on tunnel endpoints and interface names.
//!
//! The uplink implementations live in the daemon (`vhost-user-net/src/uplink/`); this module only
//! says what they are configured with. The checks are in `validate.rs`, except the SR-IOV VF's,
//! which live with its settings in `sriov.rs`.

mod sriov;
mod validate;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::names::{check_name, VifId};
use crate::ids::{VlanId, Vni};
pub use sriov::SriovVfUplink;

/// Bytes VXLAN adds around the VIF's L3 packet over an IPv4 underlay: outer IPv4 (20) + UDP (8) +
/// VXLAN (8) + inner Ethernet (14) (RFC 7348 § 5). The underlay MTU must cover them.
pub const VXLAN_IPV4_OVERHEAD: u16 = 50;
/// As [`VXLAN_IPV4_OVERHEAD`] with a 40-byte outer IPv6 header (RFC 8200 § 3).
pub const VXLAN_IPV6_OVERHEAD: u16 = 70;
/// Bytes an 802.1Q tag adds to a frame (IEEE 802.1Q-2018 § 9.3). vif pushes the tag itself and
/// sends the tagged frame through the parent, so the tag counts against `parent_mtu`: a VIF may
/// use at most `parent_mtu - 4`. Where the parent carries tagged frames of full MTU (802.3's
/// 1522-byte frames, IEEE 802.3-2018 § 3.5), say so with `parent_mtu = 1504`.
pub const VLAN_OVERHEAD: u16 = 4;
/// The IANA-assigned VXLAN UDP port (RFC 7348 § 5).
pub const VXLAN_UDP_PORT: u16 = 4789;
/// The smallest MTU an IPv4 link may have (RFC 791 § 3.2).
pub const MIN_IPV4_MTU: u16 = 68;
/// The smallest MTU an IPv6 link may have (RFC 8200 § 5).
pub const MIN_IPV6_MTU: u16 = 1280;
/// Most static remote VTEPs per VIF. Every flooded frame is copied once per remote (head-end
/// replication), so the list must stay small; larger fabrics want a control plane.
pub const MAX_REMOTES: usize = 1024;
/// The largest 802.1Q priority code point (3 bits).
pub const MAX_PCP: u8 = 7;

const DEFAULT_LOWER_MTU: u16 = 1500;

fn default_lower_mtu() -> u16 {
    DEFAULT_LOWER_MTU
}

fn default_udp_port() -> u16 {
    VXLAN_UDP_PORT
}

/// Where a VIF's frames go when they leave the host. In TOML, a table with `type = "vxlan"`,
/// `"vlan"`, `"sriov-vf"` or `"local"` and the fields of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum UplinkSpec {
    Vxlan(VxlanUplink),
    Vlan(VlanUplink),
    SriovVf(SriovVfUplink),
    Local(LocalUplink),
}

/// A VXLAN tunnel (RFC 7348) from a local VTEP to static remote VTEPs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanUplink {
    pub vni: Vni,
    /// The local VTEP address; its family decides the encapsulation overhead.
    pub local: IpAddr,
    /// Static remote VTEPs, flooded by head-end replication; may be empty (learning only).
    #[serde(default)]
    pub remotes: Vec<IpAddr>,
    #[serde(default = "default_udp_port")]
    pub udp_port: u16,
    /// The L3 MTU of the underlay path, as `ip link` shows it.
    #[serde(default = "default_lower_mtu")]
    pub underlay_mtu: u16,
    /// The underlay interface to bind to (`SO_BINDTODEVICE`); `None` follows the routing table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// An 802.1Q VLAN on a parent interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanUplink {
    pub vid: VlanId,
    /// Priority code point put in the tag (IEEE 802.1Q-2018 § 6.9.3).
    #[serde(default)]
    pub pcp: u8,
    pub parent: String,
    /// The L3 MTU of the parent interface, as `ip link` shows it.
    #[serde(default = "default_lower_mtu")]
    pub parent_mtu: u16,
}

/// A segment switched inside the daemon: VIFs on one host reach each other, nothing leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUplink {
    pub segment: String,
}

impl VxlanUplink {
    /// The encapsulation overhead for the family of `local`.
    pub fn overhead(&self) -> u16 {
        match self.local {
            IpAddr::V4(_) => VXLAN_IPV4_OVERHEAD,
            IpAddr::V6(_) => VXLAN_IPV6_OVERHEAD,
        }
    }

    /// "IPv4" or "IPv6", the family of `local`.
    pub fn family(&self) -> &'static str {
        match self.local {
            IpAddr::V4(_) => "IPv4",
            IpAddr::V6(_) => "IPv6",
        }
    }
}

impl UplinkSpec {
    /// The largest VIF MTU this uplink carries without fragmenting or dropping: the underlay MTU
    /// minus the VXLAN overhead, or the VLAN parent's MTU. `None` when the model cannot know it
    /// (SR-IOV: the VF's own MTU; local: no lower layer).
    pub fn max_vif_mtu(&self) -> Option<u16> {
        match self {
            UplinkSpec::Vxlan(vxlan) => Some(vxlan.underlay_mtu.saturating_sub(vxlan.overhead())),
            UplinkSpec::Vlan(vlan) => Some(vlan.parent_mtu.saturating_sub(VLAN_OVERHEAD)),
            UplinkSpec::SriovVf(_) | UplinkSpec::Local(_) => None,
        }
    }

    /// The name of the uplink kind as the `type` key spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            UplinkSpec::Vxlan(_) => "vxlan",
            UplinkSpec::Vlan(_) => "vlan",
            UplinkSpec::SriovVf(_) => "sriov-vf",
            UplinkSpec::Local(_) => "local",
        }
    }

    /// Checks the uplink's own fields, then that a VIF with `vif_mtu` fits through it.
    pub fn validate(&self, vif: &VifId, vif_mtu: u16) -> Result<(), ModelError> {
        match self {
            UplinkSpec::Vxlan(vxlan) => validate::vxlan(vxlan, vif, vif_mtu),
            UplinkSpec::Vlan(vlan) => validate::vlan(vlan, vif, vif_mtu),
            UplinkSpec::SriovVf(sriov) => {
                validate::ifname(vif, "uplink.pf", &sriov.pf)?;
                sriov::validate(sriov, vif)
            }
            UplinkSpec::Local(local) => {
                check_name(&local.segment).map_err(|reason| ModelError::InvalidName {
                    vif: vif.clone(),
                    field: "uplink.segment",
                    value: local.segment.clone(),
                    reason,
                })
            }
        }
    }
}
