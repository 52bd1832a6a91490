//! `vmm-integration`: what a VMM author needs to use vif.
//!
//! - [`guest`]: a virtual guest — a vhost-user frontend with memfd guest memory that drives the
//!   backend as a guest's virtio-net driver would (tests, benchmarks and fuzzers use it).
//! - [`launcher`]: start and supervise the backend daemon, wait for its sockets.
//! - [`args`]: the QEMU and Cloud Hypervisor arguments that attach a VM to a VIF.

pub mod args;
pub mod guest;
pub mod launcher;
