//! Temporary stand-ins for `vif_core::stats` while it is being written: the datapath codes
//! against these names and switches to the real module by replacing this file's body with
//! `pub use vif_core::stats::{...}`. Nothing here is meant to outlive that switch.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the datapath dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame itself is not valid Ethernet (too short, bad length fields).
    Malformed,
    /// The virtio-net header's offload metadata does not describe the frame.
    BadOffload,
    /// The descriptor chain is invalid: outside guest memory, looped, wrong direction, too short.
    QueueError,
    /// The receiver had no guest buffer (or no room in its inbox) for the frame.
    NoRxBuffer,
    /// The frame is longer than the receiver can take (one buffer without `MRG_RXBUF`, or more
    /// than the device's maximum frame).
    TooLong,
    /// The destination port is not serving (no frontend connected, or its queue is disabled).
    PortDown,
    /// The destination MAC was learned on the ingress port: forwarding it back would be a
    /// hairpin (IEEE 802.1Q-2018 § 8.6.1).
    Hairpin,
}

impl DropReason {
    pub const COUNT: usize = 7;

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one queue; one writer (the queue's worker thread), any number of readers.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
}

impl QueueStats {
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason.index())
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }
}

/// A worker's local counts, published once per wake-up.
#[derive(Debug, Default, Clone)]
pub struct StatsBatch {
    pub packets: u64,
    pub bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl StatsBatch {
    pub fn count_packet(&mut self, bytes: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(bytes as u64);
    }

    pub fn count_drop(&mut self, reason: DropReason) {
        if let Some(counter) = self.drops.get_mut(reason.index()) {
            *counter = counter.wrapping_add(1);
        }
    }

    /// Adds the batch to `stats` and clears it. Single writer per queue, so load+store is enough
    /// (no read-modify-write atomics on the datapath); counters only grow.
    pub fn publish(&mut self, stats: &QueueStats) {
        let add = |counter: &AtomicU64, value: u64| {
            if value != 0 {
                counter.store(
                    counter.load(Ordering::Relaxed).wrapping_add(value),
                    Ordering::Relaxed,
                );
            }
        };
        add(&stats.packets, self.packets);
        add(&stats.bytes, self.bytes);
        for (counter, value) in stats.drops.iter().zip(self.drops) {
            add(counter, value);
        }
        *self = StatsBatch::default();
    }
}

/// A VIF's counters: one [`QueueStats`] per queue, indexed like the device's queues.
#[derive(Debug)]
pub struct VifStats {
    pub rx: Vec<QueueStats>,
    pub tx: Vec<QueueStats>,
}

impl VifStats {
    pub fn new(queue_pairs: usize) -> VifStats {
        VifStats {
            rx: (0..queue_pairs).map(|_| QueueStats::default()).collect(),
            tx: (0..queue_pairs).map(|_| QueueStats::default()).collect(),
        }
    }
}
