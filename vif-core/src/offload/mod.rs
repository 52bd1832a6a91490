//! virtio-net offloads: the per-packet header, its validation against the frame, checksum
//! completion, and software segmentation for uplinks that cannot take large frames.
//!
//! A guest that negotiated `VIRTIO_NET_F_CSUM` / `HOST_TSO*` / `HOST_USO` may hand the device a
//! frame with a partial checksum or a frame larger than the MTU, described by a
//! [`VirtioNetHdr`]. Every field of that header is guest-controlled: [`header`] parses it and
//! [`validate()`] checks it against the negotiated features and the frame itself before anything
//! trusts it (DPDK CVE-2024-11614: `csum_start` past the frame). The result, a [`TxOffload`], is
//! what the datapath acts on:
//!
//! - [`complete_csum`] fills a partial checksum (VIRTIO 1.2 § 5.1.6.2);
//! - [`Segmenter`] cuts a TSO/USO/UFO frame into wire-sized frames without per-packet allocation;
//! - [`rx_plan`] decides what a receiving guest gets (VIRTIO 1.2 § 5.1.6.4): the frame as GSO,
//!   with `DATA_VALID`, after checksum completion, or segmented.

pub mod csum;
pub mod error;
pub mod header;
pub mod rx;
pub mod segment;
#[cfg(test)]
mod testframe;
pub mod validate;

pub use csum::{complete_csum, CsumRange};
pub use error::OffloadError;
pub use header::{GsoType, VirtioNetHdr, VIRTIO_NET_HDR_LEN};
pub use rx::{rx_plan, RxOffloadCaps, RxPlan, RxSource};
pub use segment::{SegmentCsum, Segmenter, Segments};
pub use validate::{validate, Gso, GsoKind, IpVersion, TxOffload, TxOffloadCaps};
