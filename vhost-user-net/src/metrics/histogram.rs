//! Fixed-bucket duration histograms, cheap enough to record on the datapath.
//!
//! Recording is a bucket search over a dozen constants and three relaxed `fetch_add`s, with no
//! lock and no allocation. Bounds are fixed at compile time so that the exported `le` labels
//! never change between scrapes (a changed bucket layout breaks `histogram_quantile` over a
//! range). [`BatchTimes`] keeps one histogram per worker thread, each on its own cache lines, so
//! workers never write the same line (the same reasoning as `vif_core::stats::QueueStats`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the per-batch processing time buckets, in nanoseconds: 1 µs to 10 ms in a
/// 1-2-5 series. A batch is at most `TX_BUDGET` chains, so microseconds is the interesting range,
/// and anything past 10 ms is a stall worth seeing in `+Inf`.
pub const BATCH_BOUNDS_NS: [u64; 13] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000, 10_000_000,
];

/// Upper bounds of the provisioning latency buckets, in nanoseconds: 1 ms to 60 s. Socket
/// readiness takes milliseconds; reaching DRIVER_OK depends on the VM booting, so seconds.
pub const PROVISIONING_BOUNDS_NS: [u64; 14] = [
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    20_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// A histogram with `N` finite buckets plus `+Inf`, counting durations.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds_ns: &'static [u64; N],
    /// Observations per bucket (not cumulative); index `N` is past the last bound.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    /// Upper bounds in seconds, one per finite bucket.
    pub bounds_seconds: Vec<f64>,
    /// Observations per bucket (not cumulative), one more than `bounds_seconds` (`+Inf`).
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |sum, n| sum.wrapping_add(*n))
    }

    /// Adds another snapshot of the same layout (mismatched layouts add what pairs up).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        for (sum, n) in self.counts.iter_mut().zip(&other.counts) {
            *sum = sum.wrapping_add(*n);
        }
        self.sum_seconds += other.sum_seconds;
    }
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds_ns: &'static [u64; N]) -> Histogram<N> {
        Histogram {
            bounds_ns,
            buckets: (0..=N).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Counts one observation. Relaxed: readers want each counter, not an order between them.
    #[inline]
    pub fn record(&self, elapsed: Duration) {
        // Durations past u64 nanoseconds (584 years) saturate.
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let index = self.bounds_ns.partition_point(|&bound| bound < ns);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_seconds: self.bounds_ns.iter().map(|&ns| ns_to_seconds(ns)).collect(),
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: ns_to_seconds(self.sum_ns.load(Ordering::Relaxed)),
        }
    }
}

fn ns_to_seconds(ns: u64) -> f64 {
    // Exact below 2^53 ns (104 days); a sum that large loses sub-nanosecond precision only.
    ns as f64 / 1e9
}

/// One batch-time histogram, padded so two workers' histograms share no cache line.
#[derive(Debug)]
#[repr(align(128))]
struct WorkerHistogram(Histogram<{ BATCH_BOUNDS_NS.len() }>);

/// Per-batch processing time of a VIF, one histogram per worker (queue pair). A batch is one
/// event handled by a worker: a guest kick, or a wake-up carrying frames from other ports.
#[derive(Debug)]
pub struct BatchTimes {
    workers: Box<[WorkerHistogram]>,
}

impl BatchTimes {
    pub fn new(workers: usize) -> BatchTimes {
        BatchTimes {
            workers: (0..workers)
                .map(|_| WorkerHistogram(Histogram::new(&BATCH_BOUNDS_NS)))
                .collect(),
        }
    }

    /// Records one batch of worker `worker`; an unknown worker is ignored.
    #[inline]
    pub fn record(&self, worker: usize, elapsed: Duration) {
        if let Some(histogram) = self.workers.get(worker) {
            histogram.0.record(elapsed);
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Worker `worker`'s histogram; `None` past the last worker.
    pub fn snapshot(&self, worker: usize) -> Option<HistogramSnapshot> {
        self.workers.get(worker).map(|h| h.0.snapshot())
    }
}

/// A histogram of provisioning latencies.
pub type ProvisioningHistogram = Histogram<{ PROVISIONING_BOUNDS_NS.len() }>;

/// Provisioning latency across VIFs, one histogram per stage.
#[derive(Debug)]
pub struct ProvisioningTimes {
    pub socket_ready: ProvisioningHistogram,
    pub driver_ok: ProvisioningHistogram,
}

impl Default for ProvisioningTimes {
    fn default() -> Self {
        ProvisioningTimes {
            socket_ready: Histogram::new(&PROVISIONING_BOUNDS_NS),
            driver_ok: Histogram::new(&PROVISIONING_BOUNDS_NS),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bounds_are_strictly_increasing() {
        assert!(BATCH_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
        assert!(PROVISIONING_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bucket_edges_are_inclusive() {
        let h = Histogram::new(&BATCH_BOUNDS_NS);
        h.record(Duration::from_nanos(1_000)); // le="1e-6" includes 1 µs exactly
        h.record(Duration::from_nanos(1_001));
        h.record(Duration::from_secs(1)); // +Inf
        h.record(Duration::ZERO);
        let s = h.snapshot();
        assert_eq!(s.counts.len(), BATCH_BOUNDS_NS.len() + 1);
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[1], 1);
        assert_eq!(*s.counts.last().unwrap(), 1);
        assert_eq!(s.count(), 4);
        assert!((s.sum_seconds - 1.000_002_001).abs() < 1e-12);
        assert_eq!(s.bounds_seconds[0], 1e-6);
    }

    #[test]
    fn batch_times_per_worker() {
        let times = BatchTimes::new(2);
        times.record(1, Duration::from_micros(3));
        times.record(7, Duration::from_micros(3)); // no such worker: ignored
        assert_eq!(times.snapshot(0).unwrap().count(), 0);
        assert_eq!(times.snapshot(1).unwrap().counts[2], 1);
        assert!(times.snapshot(2).is_none());
        assert!(std::mem::align_of::<WorkerHistogram>() >= 128);
    }

    proptest! {
        /// The bucket search agrees with a linear scan for the first bound not below the value.
        #[test]
        fn bucket_matches_linear_scan(ns in prop_oneof![0u64..20_000_000, any::<u64>()]) {
            let h = Histogram::new(&BATCH_BOUNDS_NS);
            h.record(Duration::from_nanos(ns));
            let expected = BATCH_BOUNDS_NS
                .iter()
                .position(|&bound| ns <= bound)
                .unwrap_or(BATCH_BOUNDS_NS.len());
            let s = h.snapshot();
            prop_assert_eq!(s.counts[expected], 1);
            prop_assert_eq!(s.count(), 1);
        }
    }
}
