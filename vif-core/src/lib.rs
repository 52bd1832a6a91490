//! `vif-core`: everything the datapath needs to decide about a packet, with no I/O and no threads.
//!
//! - [`model`]: the VIF spec (MAC, MTU, queues, offloads, uplink) and its validation.
//! - [`wire`]: zero-copy, bounds-checked views over frames, in the style of smoltcp's `wire`.
//! - [`checksum`]: the Internet checksum, pseudo-headers and incremental update.
//! - [`offload`]: the virtio-net header, its validation, checksum completion and segmentation.
//! - [`flow`]: the one-pass flow key used by the ACL engine and the switch.
//! - [`acl`]: per-VIF ACLs (compiled classifier, connection tracking, anti-spoofing).
//! - [`qos`]: token buckets for per-VIF rate limits; the clock is a parameter.
//! - [`stats`]: per-queue counters and the reasons a packet is dropped.
//! - [`ids`], [`mac`]: identifiers that are valid by construction (VNI, VLAN id, MAC).
#![forbid(unsafe_code)]

pub mod acl;
pub mod checksum;
pub mod flow;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod ids;
pub mod mac;
pub mod model;
pub mod offload;
pub mod qos;
pub mod stats;
pub mod wire;
