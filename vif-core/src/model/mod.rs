//! The VIF model: what a VIF is (MAC, MTU, queues, offloads, uplink, policy references, port
//! security, labels), how it is written in a config file, and the rules a spec must satisfy
//! before it is served.
//!
//! A spec is plain data with serde (de)serialization; every struct refuses unknown fields, so a
//! misspelt key is an error rather than a silently ignored setting. Deserializing checks only
//! per-type syntax (MAC, VNI, VLAN id, VIF id); [`VifSpec::validate`] checks the rest, including
//! the overlay MTU mismatch: a VIF MTU above the uplink's MTU minus its encapsulation is refused
//! at config time. The daemon owns the file layout (where VIFs sit in its file, ACL and QoS
//! definitions) and resolves the ACL and QoS names.
//!
//! - [`vif`] has [`VifSpec`], [`AclRefs`], queue and MTU bounds;
//! - [`uplink`] has [`UplinkSpec`] and the encapsulation overheads;
//! - [`offloads`] has [`Offloads`] and their virtio-net feature bits;
//! - [`port_security`] has [`PortSecurityConfig`], the anti-spoofing table;
//! - [`names`] has [`VifId`] and the syntax of names;
//! - [`error`] has [`ModelError`], one variant per rule.
//!
//! # Config shape
//!
//! One VIF as a TOML table (the daemon may nest it, e.g. as `[[vif]]`). Only `id`, `mac` and
//! `uplink` are required; the defaults are `mtu = 1500`, `queue_pairs = 1`, `queue_size = 256`,
//! all offloads but `uso` and `ufo` on, no ACLs, no QoS, no port security, no labels. ACLs and
//! QoS policies are referenced by name (`acl = { ingress = "web-in", egress = "web-out" }`,
//! `qos = "gold"`); the daemon's file defines them (`[[acl]]` tables are
//! [`crate::acl::AclSpec`]s, `[[qos]]` tables [`crate::qos::QosSpec`]s). Other uplinks:
//!
//! ```toml
//! uplink = { type = "vlan", vid = 100, pcp = 0, parent = "eth1", parent_mtu = 1504 }
//! uplink = { type = "sriov-vf", pf = "enp3s0f0", vf_index = 3 }   # vf_index optional
//! uplink = { type = "sriov-vf", pf = "enp3s0f0", vlan = 100, qos = 5, max_tx_rate_mbps = 1000 }
//! uplink = { type = "local", segment = "lab" }
//! ```
//!
//! A full example (a test parses exactly this text):
//!
#![doc = concat!("```toml\n", include_str!("example.toml"), "```")]

pub mod error;
pub mod names;
pub mod offloads;
pub mod port_security;
pub mod uplink;
pub mod vif;

pub use error::{EndpointProblem, ModelError, NameError};
pub use names::VifId;
pub use offloads::Offloads;
pub use port_security::PortSecurityConfig;
pub use uplink::{
    LocalUplink, SriovVfUplink, UplinkSpec, VlanUplink, VxlanUplink, VLAN_OVERHEAD,
    VXLAN_IPV4_OVERHEAD, VXLAN_IPV6_OVERHEAD,
};
pub use vif::{AclRefs, VifSpec};

/// The documented example VIF, in TOML: a valid spec, useful as a fixture.
pub const EXAMPLE_TOML: &str = include_str!("example.toml");

#[cfg(test)]
mod tests;
