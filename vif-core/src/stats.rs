//! Per-queue counters and the reasons a packet is dropped.
//!
//! Counting is split in two so that the datapath never touches shared memory per packet
//! (STYLE.md § 5, after Cloud Hypervisor's `queue_pair.rs`):
//! - a worker counts into a plain [`StatsBatch`] it owns (`record_packet`, `record_drop`, ...: a
//!   few adds, no atomics) and publishes it once per kick with [`QueueStats::publish`];
//! - [`QueueStats`] holds the atomics of one queue. Its owner is the queue's worker, and the struct
//!   is aligned so that no cache line holds counters of two queues: the writer keeps its lines,
//!   and readers (a scrape) only pull shared copies.
//!
//! Readers take a [`VifStats::snapshot`]: plain totals per direction plus per-queue-pair detail.
//! Counters never reset; Prometheus wants monotonic counters and computes rates itself. A snapshot
//! reads each counter on its own (Relaxed), so it is not a consistent cut across counters: a scrape
//! may see a packet's `packets` increment without its `bytes`. Exporting names and labels is the
//! daemon's job (`metrics.rs`).
//!
//! Directions are the virtqueues': `tx` counts what the guest sent (transmitq), `rx` what was
//! delivered to the guest (receiveq). `packets` and `bytes` count good frames only, as the guest
//! sees them: without the virtio-net header and without an FCS, one GSO frame counting once with
//! its full length, as DPDK's `rte_vhost` per-virtqueue stats do. Dropped frames count only under
//! their [`DropReason`]; a throttled frame (left in the ring for later, STYLE.md § 6) is not a drop.

mod labels;

use std::sync::atomic::{AtomicU64, Ordering};

pub use labels::{CastKind, DropReason, SizeBin};

/// Plain counters of one queue: what a [`StatsBatch`] accumulates and what a snapshot reads.
/// Field meanings are those of [`QueueStats`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueCounters {
    pub packets: u64,
    pub bytes: u64,
    pub unicast_packets: u64,
    pub multicast_packets: u64,
    pub broadcast_packets: u64,
    pub size_bins: [u64; SizeBin::COUNT],
    pub drops: [u64; DropReason::COUNT],
    pub notifications_sent: u64,
    pub notifications_suppressed: u64,
    pub throttled: u64,
}

impl QueueCounters {
    pub fn size_bin(&self, bin: SizeBin) -> u64 {
        self.size_bins.get(bin.index()).copied().unwrap_or(0)
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().fold(0, |sum, &n| sum.wrapping_add(n))
    }

    /// Adds `other` into `self`, counter by counter. Wrapping: a u64 of packets does not wrap in
    /// centuries, and a counter must never panic.
    pub fn merge(&mut self, other: &QueueCounters) {
        // Destructured so that a new field cannot be forgotten here.
        let QueueCounters {
            packets,
            bytes,
            unicast_packets,
            multicast_packets,
            broadcast_packets,
            size_bins,
            drops,
            notifications_sent,
            notifications_suppressed,
            throttled,
        } = other;
        let add = |sum: &mut u64, n: u64| *sum = sum.wrapping_add(n);
        add(&mut self.packets, *packets);
        add(&mut self.bytes, *bytes);
        add(&mut self.unicast_packets, *unicast_packets);
        add(&mut self.multicast_packets, *multicast_packets);
        add(&mut self.broadcast_packets, *broadcast_packets);
        for (sum, n) in self.size_bins.iter_mut().zip(size_bins) {
            add(sum, *n);
        }
        for (sum, n) in self.drops.iter_mut().zip(drops) {
            add(sum, *n);
        }
        add(&mut self.notifications_sent, *notifications_sent);
        add(
            &mut self.notifications_suppressed,
            *notifications_suppressed,
        );
        add(&mut self.throttled, *throttled);
    }
}

/// A worker's local counts since its last publish. Recording is a few plain adds; publish it once
/// per kick with [`QueueStats::publish`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsBatch {
    counts: QueueCounters,
}

impl StatsBatch {
    pub fn new() -> StatsBatch {
        StatsBatch::default()
    }

    /// Counts one good frame of `len` bytes (see the module docs for what `len` covers).
    #[inline]
    pub fn record_packet(&mut self, len: usize, dst: CastKind) {
        let counts = &mut self.counts;
        counts.packets = counts.packets.wrapping_add(1);
        // usize is at most 64 bits on every target Rust supports, so this never truncates.
        counts.bytes = counts.bytes.wrapping_add(len as u64);
        let by_cast = match dst {
            CastKind::Unicast => &mut counts.unicast_packets,
            CastKind::Multicast => &mut counts.multicast_packets,
            CastKind::Broadcast => &mut counts.broadcast_packets,
        };
        *by_cast = by_cast.wrapping_add(1);
        // Always Some: the array has one slot per bin.
        if let Some(bin) = counts.size_bins.get_mut(SizeBin::of(len).index()) {
            *bin = bin.wrapping_add(1);
        }
    }

    #[inline]
    pub fn record_drop(&mut self, reason: DropReason) {
        // Always Some: the array has one slot per reason.
        if let Some(drops) = self.counts.drops.get_mut(reason.index()) {
            *drops = drops.wrapping_add(1);
        }
    }

    /// Counts a used-buffer notification sent to the guest.
    #[inline]
    pub fn record_notification_sent(&mut self) {
        self.counts.notifications_sent = self.counts.notifications_sent.wrapping_add(1);
    }

    /// Counts a notification skipped because the guest asked not to be notified (`used_event`
    /// with `EVENT_IDX`, or `VIRTQ_AVAIL_F_NO_INTERRUPT`; VIRTIO 1.2 § 2.7.10).
    #[inline]
    pub fn record_notification_suppressed(&mut self) {
        self.counts.notifications_suppressed = self.counts.notifications_suppressed.wrapping_add(1);
    }

    /// Counts a frame left in the ring by the rate limiter, to be retried (not a drop).
    #[inline]
    pub fn record_throttled(&mut self) {
        self.counts.throttled = self.counts.throttled.wrapping_add(1);
    }

    pub fn counts(&self) -> &QueueCounters {
        &self.counts
    }

    pub fn is_empty(&self) -> bool {
        self.counts == QueueCounters::default()
    }
}

/// The published counters of one virtqueue.
///
/// One writer by design: the queue's worker, through [`publish`](Self::publish). The struct is
/// aligned to 128 bytes on x86_64, aarch64 and powerpc64, 64 elsewhere: x86's spatial prefetcher
/// pulls 64-byte lines in pairs and some Arm cores have 128-byte lines (the reasoning behind
/// crossbeam's `CachePadded`), so two queues' counters never share what the hardware moves as one
/// unit, and a worker's publish never invalidates another worker's lines.
#[derive(Debug)]
#[cfg_attr(
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "powerpc64"
    ),
    repr(align(128))
)]
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "powerpc64"
    )),
    repr(align(64))
)]
pub struct QueueStats {
    /// Good frames.
    pub packets: AtomicU64,
    /// Bytes of good frames.
    pub bytes: AtomicU64,
    pub unicast_packets: AtomicU64,
    pub multicast_packets: AtomicU64,
    pub broadcast_packets: AtomicU64,
    /// Good frames per length bin, indexed by [`SizeBin::index`].
    pub size_bins: [AtomicU64; SizeBin::COUNT],
    /// Dropped frames, indexed by [`DropReason::index`].
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Used-buffer notifications sent to the guest.
    pub notifications_sent: AtomicU64,
    /// Notifications the guest's suppression made unnecessary.
    pub notifications_suppressed: AtomicU64,
    /// Frames left in the ring by the rate limiter (backpressure, not drops).
    pub throttled: AtomicU64,
}

impl Default for QueueStats {
    fn default() -> Self {
        QueueStats::new()
    }
}

impl QueueStats {
    pub fn new() -> QueueStats {
        QueueStats {
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            unicast_packets: AtomicU64::new(0),
            multicast_packets: AtomicU64::new(0),
            broadcast_packets: AtomicU64::new(0),
            size_bins: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            notifications_sent: AtomicU64::new(0),
            notifications_suppressed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Adds `batch` to the counters and clears it. Call once per kick, not per packet.
    ///
    /// Relaxed `fetch_add`, skipping zero counts: with its single writer the line stays in that
    /// core's cache, so a publish costs a handful of uncontended adds (most drop reasons are zero);
    /// and if a second writer ever appears (a switch counting a full inbox on the receiving
    /// queue), counts stay exact where load+store would lose them. Relaxed suffices: readers want
    /// each counter's value, not an order between counters.
    pub fn publish(&self, batch: &mut StatsBatch) {
        let QueueCounters {
            packets,
            bytes,
            unicast_packets,
            multicast_packets,
            broadcast_packets,
            size_bins,
            drops,
            notifications_sent,
            notifications_suppressed,
            throttled,
        } = std::mem::take(&mut batch.counts);
        let add = |counter: &AtomicU64, n: u64| {
            if n != 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.packets, packets);
        add(&self.bytes, bytes);
        add(&self.unicast_packets, unicast_packets);
        add(&self.multicast_packets, multicast_packets);
        add(&self.broadcast_packets, broadcast_packets);
        for (counter, n) in self.size_bins.iter().zip(size_bins) {
            add(counter, n);
        }
        for (counter, n) in self.drops.iter().zip(drops) {
            add(counter, n);
        }
        add(&self.notifications_sent, notifications_sent);
        add(&self.notifications_suppressed, notifications_suppressed);
        add(&self.throttled, throttled);
    }

    /// The current value of every counter.
    pub fn snapshot(&self) -> QueueCounters {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        QueueCounters {
            packets: read(&self.packets),
            bytes: read(&self.bytes),
            unicast_packets: read(&self.unicast_packets),
            multicast_packets: read(&self.multicast_packets),
            broadcast_packets: read(&self.broadcast_packets),
            size_bins: std::array::from_fn(|i| self.size_bins.get(i).map_or(0, read)),
            drops: std::array::from_fn(|i| self.drops.get(i).map_or(0, read)),
            notifications_sent: read(&self.notifications_sent),
            notifications_suppressed: read(&self.notifications_suppressed),
            throttled: read(&self.throttled),
        }
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason.index())
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }
}

/// The counters of one queue pair: receiveq `2 * i`, transmitq `2 * i + 1` (VIRTIO 1.2 § 5.1.2).
#[derive(Debug, Default)]
pub struct QueuePairStats {
    pub rx: QueueStats,
    pub tx: QueueStats,
}

/// A snapshot of one queue pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePairCounters {
    pub rx: QueueCounters,
    pub tx: QueueCounters,
}

/// A VIF's counters: one [`QueuePairStats`] per queue pair, allocated once when the VIF is added.
#[derive(Debug)]
pub struct VifStats {
    queue_pairs: Box<[QueuePairStats]>,
}

/// Totals across a VIF's queues, with the per-queue-pair detail they were summed from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub rx: QueueCounters,
    pub tx: QueueCounters,
    /// Indexed by queue pair.
    pub queue_pairs: Vec<QueuePairCounters>,
}

impl VifStats {
    pub fn new(queue_pairs: u16) -> VifStats {
        VifStats {
            queue_pairs: (0..queue_pairs)
                .map(|_| QueuePairStats::default())
                .collect(),
        }
    }

    pub fn queue_pairs(&self) -> &[QueuePairStats] {
        &self.queue_pairs
    }

    pub fn queue_pair(&self, index: usize) -> Option<&QueuePairStats> {
        self.queue_pairs.get(index)
    }

    /// Reads every counter and sums across queue pairs. Allocates: for scrapes, not the datapath.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut snapshot = StatsSnapshot::default();
        for pair in self.queue_pairs.iter() {
            let pair = QueuePairCounters {
                rx: pair.rx.snapshot(),
                tx: pair.tx.snapshot(),
            };
            snapshot.rx.merge(&pair.rx);
            snapshot.tx.merge(&pair.tx);
            snapshot.queue_pairs.push(pair);
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::labels::tests::reference_bin;
    use super::*;

    #[test]
    fn batch_records_every_counter() {
        let mut batch = StatsBatch::new();
        assert!(batch.is_empty());
        batch.record_packet(60, CastKind::Broadcast);
        batch.record_packet(1514, CastKind::Unicast);
        batch.record_packet(1514, CastKind::Unicast);
        batch.record_packet(90, CastKind::Multicast);
        batch.record_drop(DropReason::AclDeny);
        batch.record_drop(DropReason::AclDeny);
        batch.record_drop(DropReason::QueueError);
        batch.record_notification_sent();
        batch.record_notification_suppressed();
        batch.record_notification_suppressed();
        batch.record_throttled();
        let counts = batch.counts();
        assert_eq!(counts.packets, 4);
        assert_eq!(counts.bytes, 60 + 1514 * 2 + 90);
        assert_eq!(
            (
                counts.unicast_packets,
                counts.multicast_packets,
                counts.broadcast_packets
            ),
            (2, 1, 1)
        );
        assert_eq!(counts.size_bin(SizeBin::Undersize), 1);
        assert_eq!(counts.size_bin(SizeBin::Size1024To1518), 2);
        assert_eq!(counts.size_bin(SizeBin::Size65To127), 1);
        assert_eq!(counts.drops(DropReason::AclDeny), 2);
        assert_eq!(counts.drops(DropReason::QueueError), 1);
        assert_eq!(counts.total_drops(), 3);
        assert_eq!(counts.notifications_sent, 1);
        assert_eq!(counts.notifications_suppressed, 2);
        assert_eq!(counts.throttled, 1);
        assert!(!batch.is_empty());
    }

    #[test]
    fn publish_adds_and_clears_the_batch() {
        let stats = QueueStats::new();
        let mut batch = StatsBatch::new();
        for _ in 0..3 {
            batch.record_packet(64, CastKind::Unicast);
            batch.record_drop(DropReason::Spoofed);
            stats.publish(&mut batch);
            assert!(batch.is_empty());
        }
        stats.publish(&mut batch); // an empty publish changes nothing
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.packets, 3);
        assert_eq!(snapshot.bytes, 192);
        assert_eq!(snapshot.unicast_packets, 3);
        assert_eq!(snapshot.size_bin(SizeBin::Size64), 3);
        assert_eq!(snapshot.drops(DropReason::Spoofed), 3);
        assert_eq!(stats.drops(DropReason::Spoofed), 3);
        assert_eq!(snapshot.total_drops(), 3);
    }

    #[test]
    fn queue_stats_own_their_cache_lines() {
        let align = std::mem::align_of::<QueueStats>();
        assert!(align >= 64, "align {align}");
        assert_eq!(std::mem::size_of::<QueueStats>() % align, 0);
        // rx and tx of a pair sit on different lines.
        let pair = QueuePairStats::default();
        let rx = &pair.rx as *const QueueStats as usize;
        let tx = &pair.tx as *const QueueStats as usize;
        assert!(rx.abs_diff(tx) >= align);
    }

    #[test]
    fn snapshot_sums_across_queue_pairs() {
        let stats = VifStats::new(3);
        assert_eq!(stats.queue_pairs().len(), 3);
        assert!(stats.queue_pair(3).is_none());
        let mut batch = StatsBatch::new();
        for (index, pair) in stats.queue_pairs().iter().enumerate() {
            // Queue pair i sends i + 1 frames of 100 bytes and receives one of 2000.
            for _ in 0..=index {
                batch.record_packet(100, CastKind::Unicast);
            }
            pair.tx.publish(&mut batch);
            batch.record_packet(2000, CastKind::Multicast);
            batch.record_drop(DropReason::NoRxBuffer);
            pair.rx.publish(&mut batch);
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.tx.packets, 1 + 2 + 3);
        assert_eq!(snapshot.tx.bytes, 600);
        assert_eq!(snapshot.tx.size_bin(SizeBin::Size65To127), 6);
        assert_eq!(snapshot.rx.packets, 3);
        assert_eq!(snapshot.rx.multicast_packets, 3);
        assert_eq!(snapshot.rx.size_bin(SizeBin::Size1519Max), 3);
        assert_eq!(snapshot.rx.drops(DropReason::NoRxBuffer), 3);
        assert_eq!(snapshot.tx.total_drops(), 0);
        assert_eq!(snapshot.queue_pairs.len(), 3);
        assert_eq!(snapshot.queue_pairs[2].tx.packets, 3);
        assert_eq!(snapshot.queue_pairs[0].rx.bytes, 2000);
        // Counters are monotonic: a second snapshot without traffic reads the same.
        assert_eq!(stats.snapshot(), snapshot);
    }

    proptest! {
        /// Publishing any sequence of batches into any queues sums like a plain reference.
        #[test]
        fn publish_matches_a_plain_sum(
            batches in prop::collection::vec(
                (0usize..4, prop::collection::vec((0usize..9000, 0u8..3, 0usize..DropReason::COUNT), 0..20)),
                0..12,
            )
        ) {
            let stats = VifStats::new(4);
            let mut reference = vec![QueueCounters::default(); 4];
            let mut batch = StatsBatch::new();
            for (queue, events) in &batches {
                for &(len, cast, reason) in events {
                    let dst = CastKind::ALL[cast as usize];
                    batch.record_packet(len, dst);
                    let expected = &mut reference[*queue];
                    expected.packets += 1;
                    expected.bytes += len as u64;
                    match dst {
                        CastKind::Unicast => expected.unicast_packets += 1,
                        CastKind::Multicast => expected.multicast_packets += 1,
                        CastKind::Broadcast => expected.broadcast_packets += 1,
                    }
                    expected.size_bins[reference_bin(len).index()] += 1;
                    if len % 3 == 0 {
                        batch.record_drop(DropReason::ALL[reason]);
                        expected.drops[reason] += 1;
                    }
                }
                stats.queue_pair(*queue).unwrap().tx.publish(&mut batch);
            }
            let snapshot = stats.snapshot();
            let mut total = QueueCounters::default();
            for (queue, expected) in reference.iter().enumerate() {
                prop_assert_eq!(&snapshot.queue_pairs[queue].tx, expected);
                prop_assert_eq!(&snapshot.queue_pairs[queue].rx, &QueueCounters::default());
                total.merge(expected);
            }
            prop_assert_eq!(&snapshot.tx, &total);
            prop_assert_eq!(
                total.size_bins.iter().sum::<u64>(),
                total.packets
            );
        }
    }
}
