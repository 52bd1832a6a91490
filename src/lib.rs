//! `vif`: virtual network interfaces for virtual machines.
//!
//! This facade re-exports the workspace crates so that one dependency gives a VMM author the whole
//! stack, and so that the top-level `examples/` and `benches/` have a package to belong to.
//!
//! - [`core`] (`vif-core`): the VIF model, zero-copy packet views, virtio-net offloads, counters.
//! - [`backend`] (`vhost-user-net`): the vhost-user-net backend and its daemon.
//! - [`vmm`] (`vmm-integration`): launcher, VMM arguments and a virtual guest (vhost-user frontend).

pub use vhost_user_net as backend;
pub use vif_core as core;
pub use vmm_integration as vmm;
