//! virtio-net offloads: the per-packet header, its validation against the frame, checksum
//! completion, and software segmentation for uplinks that cannot take large frames.
//!
//! A guest that negotiated `VIRTIO_NET_F_CSUM` / `HOST_TSO*` / `HOST_USO` may hand the device a
//! frame with a partial checksum or a frame larger than the MTU, described by a
//! [`VirtioNetHdr`]. Every field of that header is guest-controlled: [`header`] parses it and the
//! validation here checks it against the negotiated features and the frame itself before anything
//! trusts it (DPDK CVE-2024-11614: `csum_start` past the frame).

pub mod header;

pub use header::{GsoType, VirtioNetHdr, VIRTIO_NET_HDR_LEN};
