//! `GuestError`: every way the virtual guest can fail, one variant per step.
//!
//! Variants carry the queue, the value and the bound, so a failing test says which step broke.
//! Waits never hang: a missed deadline is [`GuestError::Timeout`]. The `Used*` and `NumBuffers*`
//! variants are the guest catching a device that broke the split-ring contract
//! (VIRTIO 1.2 § 2.7.8): tests of the backend rely on them to notice a misbehaving device.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why an operation of the virtual guest failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("memfd_create for {size} bytes of guest memory failed: {source}")]
    MemfdCreate { size: u64, source: io::Error },
    #[error("mapping {size} bytes of guest memory at {base:#x} failed: {reason}")]
    GuestMemoryMap {
        base: u64,
        size: u64,
        reason: String,
    },
    #[error(
        "guest memory exhausted: {requested} bytes (align {align}) requested, {available} of {size} left"
    )]
    OutOfGuestMemory {
        requested: u64,
        align: u64,
        available: u64,
        size: u64,
    },
    #[error("guest memory access at {addr:#x} ({len} bytes) failed: {source}")]
    MemoryAccess {
        addr: u64,
        len: usize,
        source: vm_memory::GuestMemoryError,
    },
    #[error("connecting to the backend socket {path:?} failed: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("listening on {path:?} failed: {source}")]
    Listen { path: PathBuf, source: io::Error },
    #[error("accepting a backend on {path:?} failed: {source}")]
    Accept { path: PathBuf, source: io::Error },
    #[error("setting up the vhost-user socket ({option}) failed: {source}")]
    SocketSetup {
        option: &'static str,
        source: io::Error,
    },
    #[error("vhost-user {request} failed: {source}")]
    Vhost {
        request: &'static str,
        source: vhost::Error,
    },
    #[error("the backend does not offer {feature}, which the guest requires")]
    FeatureMissing { feature: &'static str },
    #[error("{feature} was not negotiated, so {op} cannot use it")]
    FeatureNotNegotiated {
        feature: &'static str,
        op: &'static str,
    },
    #[error("reconnect changed the negotiated features from {before:#x} to {after:#x}; resume needs them equal")]
    FeaturesChanged { before: u64, after: u64 },
    #[error("{requested} queue pairs requested but the backend offers {offered}")]
    QueuePairsUnavailable { requested: u16, offered: u16 },
    #[error("queue pair {qp} out of range: {queue_pairs} negotiated")]
    QueuePairOutOfRange { qp: u16, queue_pairs: u16 },
    #[error("queue {queue} out of range: {queues} queues")]
    QueueOutOfRange { queue: u16, queues: u16 },
    #[error("queue size {size} invalid: must be a power of two in 1..=32768 (VIRTIO 1.2 § 2.7)")]
    QueueSize { size: u16 },
    #[error("descriptor index {index} out of range for queue {queue} of size {size}")]
    DescIndexOutOfRange { queue: u16, index: u16, size: u16 },
    #[error("queue {queue} full: {needed} descriptors needed, {free} free")]
    RingFull { queue: u16, needed: u16, free: u16 },
    #[error("a chain of {segments} descriptors exceeds the limit of {max}")]
    TooManySegments { segments: usize, max: usize },
    #[error("frame of {len} bytes plus header exceeds the descriptor limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("RX buffer length {len} is below the {min}-byte virtio-net header")]
    RxBufferTooSmall { len: u32, min: u32 },
    #[error("{op} on queue {queue} failed on its eventfd/epoll: {source}")]
    Notify {
        op: &'static str,
        queue: u16,
        source: io::Error,
    },
    #[error("{op} on queue {queue} timed out after {timeout:?}")]
    Timeout {
        op: &'static str,
        queue: u16,
        timeout: Duration,
    },
    #[error("GET_VRING_BASE for queue {queue} returned {base}, past the 16-bit ring index")]
    VringBaseOutOfRange { queue: u16, base: u32 },
    #[error("no backend connected to {path:?} within {timeout:?}")]
    AcceptTimeout { path: PathBuf, timeout: Duration },
    #[error("the guest is not connected to a backend")]
    NotConnected,
    #[error("queue {queue}: the device used id {id}, but the queue size is {size}")]
    UsedIdOutOfRange { queue: u16, id: u32, size: u16 },
    #[error("queue {queue}: the device used id {id}, which is not in flight")]
    UsedIdNotInFlight { queue: u16, id: u32 },
    #[error(
        "queue {queue}: used idx {used_idx} is {pending} past the driver's {last_used}, but only {in_flight} chains are in flight"
    )]
    UsedIdxJump {
        queue: u16,
        used_idx: u16,
        last_used: u16,
        pending: u16,
        in_flight: u16,
    },
    #[error("queue {queue}: used len {len} for id {id} exceeds the {posted} bytes posted")]
    UsedLenTooLarge {
        queue: u16,
        id: u16,
        len: u32,
        posted: u32,
    },
    #[error("queue {queue}: used len {len} for id {id} is shorter than the {min}-byte header")]
    UsedLenTooShort {
        queue: u16,
        id: u16,
        len: u32,
        min: u32,
    },
    #[error("queue {queue}: num_buffers {num_buffers} outside 1..={max} (VIRTIO 1.2 § 5.1.6.4)")]
    NumBuffersOutOfRange {
        queue: u16,
        num_buffers: u16,
        max: u16,
    },
}

/// Wraps a `vhost` error with the vhost-user request that failed.
pub(crate) fn vhost_err(request: &'static str) -> impl FnOnce(vhost::Error) -> GuestError {
    move |source| GuestError::Vhost { request, source }
}
