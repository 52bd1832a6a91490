//! One worker's flow cache: a fixed table of sampled flows, updated per frame without
//! allocation, swept by the exporter (see the module docs of [`super`]).
//!
//! The table is open-addressed with a short linear probe ([`PROBE`] slots). A flow that finds no
//! free or matching slot evicts the entry at its home slot into a bounded pending list (exported
//! at the next sweep, marked `evicted`); if the pending list is full the evicted record is
//! counted in [`FlowCache::dropped`]. Either way the worker never waits and memory stays fixed.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vif_core::flow::FlowKey;
use vif_core::stats::DropReason;

/// Slots probed from a flow's home slot.
pub const PROBE: usize = 8;

/// What the pipeline did with a flow's frames. Frames of one flow with different verdicts are
/// separate records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowVerdict {
    /// Sent to one port.
    Forwarded,
    /// Sent to every other port of the segment (broadcast, multicast, unknown unicast).
    Flooded,
    Dropped(DropReason),
}

impl FlowVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowVerdict::Forwarded => "forwarded",
            FlowVerdict::Flooded => "flooded",
            FlowVerdict::Dropped(_) => "dropped",
        }
    }

    pub fn reason(self) -> Option<DropReason> {
        match self {
            FlowVerdict::Dropped(reason) => Some(reason),
            _ => None,
        }
    }
}

/// Why a record was exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    /// No frame for the idle timeout: the flow is over.
    Idle,
    /// The flow is still running; this record covers it since the last one.
    Active,
    /// A new flow needed the slot.
    Evicted,
    /// The VIF or the daemon is stopping.
    Shutdown,
}

impl FlowEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowEnd::Idle => "idle",
            FlowEnd::Active => "active",
            FlowEnd::Evicted => "evicted",
            FlowEnd::Shutdown => "shutdown",
        }
    }
}

/// One flow's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub verdict: FlowVerdict,
    pub packets: u64,
    pub bytes: u64,
    pub first: Instant,
    pub last: Instant,
}

/// A flow record leaving a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub entry: FlowEntry,
    pub end: FlowEnd,
}

/// A worker's sampled flows.
#[derive(Debug)]
pub struct FlowCache {
    slots: Box<[Option<FlowEntry>]>,
    mask: usize,
    pending: Vec<Exported>,
    pending_max: usize,
    dropped: u64,
    sample_rate: u32,
}

impl FlowCache {
    /// A cache of `entries` slots (rounded up to a power of two, at least [`PROBE`]) sampling one
    /// flow in `sample_rate` (0 is taken as 1).
    pub fn new(entries: usize, sample_rate: u32) -> FlowCache {
        let size = entries
            .max(PROBE)
            .checked_next_power_of_two()
            .unwrap_or(1 << 20);
        FlowCache {
            slots: vec![None; size].into_boxed_slice(),
            mask: size - 1,
            pending: Vec::with_capacity(size / 8),
            pending_max: size / 8,
            dropped: 0,
            sample_rate: sample_rate.max(1),
        }
    }

    /// Accounts one frame of `len` bytes with `verdict`, if its flow is sampled. Frames whose
    /// headers do not parse have no flow and are skipped (they are counted as drops already).
    #[inline]
    pub fn observe(&mut self, frame: &[u8], verdict: FlowVerdict, now: Instant) {
        let Ok(key) = FlowKey::extract(frame) else {
            return;
        };
        let hash = key.hash();
        if hash % self.sample_rate != 0 {
            return;
        }
        // The sampled hashes share their residue modulo the rate; the quotient spreads them.
        let home = (hash / self.sample_rate) as usize & self.mask;
        let len = u64::try_from(frame.len()).unwrap_or(u64::MAX);
        let mut free = None;
        for step in 0..PROBE {
            let index = (home + step) & self.mask;
            match self.slots.get_mut(index) {
                Some(Some(entry)) if entry.key == key && entry.verdict == verdict => {
                    entry.packets = entry.packets.wrapping_add(1);
                    entry.bytes = entry.bytes.wrapping_add(len);
                    entry.last = now;
                    return;
                }
                Some(None) if free.is_none() => free = Some(index),
                _ => {}
            }
        }
        let slot = free.unwrap_or(home);
        let fresh = FlowEntry {
            key,
            verdict,
            packets: 1,
            bytes: len,
            first: now,
            last: now,
        };
        if let Some(old) = self.slots.get_mut(slot).and_then(|s| s.replace(fresh)) {
            self.park(Exported {
                entry: old,
                end: FlowEnd::Evicted,
            });
        }
    }

    fn park(&mut self, record: Exported) {
        if record.entry.packets == 0 {
            return;
        }
        if self.pending.len() < self.pending_max {
            self.pending.push(record);
        } else {
            self.dropped = self.dropped.wrapping_add(1);
        }
    }

    /// Moves what is due into `out`: evicted records, flows idle for `idle`, and a record of
    /// each flow running for `active` since its last record (its counts then start again).
    pub fn sweep(
        &mut self,
        now: Instant,
        idle: Duration,
        active: Duration,
        out: &mut Vec<Exported>,
    ) {
        out.append(&mut self.pending);
        for slot in self.slots.iter_mut() {
            let Some(entry) = slot else {
                continue;
            };
            if now.saturating_duration_since(entry.last) >= idle {
                if entry.packets > 0 {
                    out.push(Exported {
                        entry: *entry,
                        end: FlowEnd::Idle,
                    });
                }
                *slot = None;
            } else if now.saturating_duration_since(entry.first) >= active && entry.packets > 0 {
                out.push(Exported {
                    entry: *entry,
                    end: FlowEnd::Active,
                });
                entry.packets = 0;
                entry.bytes = 0;
                entry.first = now;
            }
        }
    }

    /// Moves every flow into `out` (the VIF or daemon is stopping).
    pub fn drain(&mut self, out: &mut Vec<Exported>) {
        out.append(&mut self.pending);
        for slot in self.slots.iter_mut() {
            if let Some(entry) = slot.take() {
                if entry.packets > 0 {
                    out.push(Exported {
                        entry,
                        end: FlowEnd::Shutdown,
                    });
                }
            }
        }
    }

    /// Records lost because the cache and its pending list were full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
}

/// A worker's handle on its cache; the exporter holds the other.
#[derive(Debug, Clone)]
pub struct FlowSampler {
    cache: Arc<Mutex<FlowCache>>,
}

impl FlowSampler {
    pub fn new(cache: Arc<Mutex<FlowCache>>) -> FlowSampler {
        FlowSampler { cache }
    }

    /// Locks the cache for one pass. The only other holder is the exporter's sweep; a panic
    /// while holding it leaves counts, not broken invariants, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, FlowCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A UDP/IPv4 frame from port `sport` (Ethernet II, IPv4 without options, UDP, 4 bytes of
    /// payload), built field by field; checksums are not checked by the flow key.
    pub(crate) fn udp_frame(sport: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]);
        f
    }

    #[test]
    fn counts_per_flow_and_verdict() {
        let mut cache = FlowCache::new(64, 1);
        let t0 = Instant::now();
        let frame = udp_frame(1000);
        for _ in 0..3 {
            cache.observe(&frame, FlowVerdict::Forwarded, t0);
        }
        cache.observe(&frame, FlowVerdict::Dropped(DropReason::AclDeny), t0);
        cache.observe(&[0u8; 10], FlowVerdict::Forwarded, t0); // no flow: skipped
        let mut out = Vec::new();
        cache.drain(&mut out);
        out.sort_by_key(|e| e.entry.packets);
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].entry.packets, out[1].entry.bytes), (3, 3 * 46));
        assert_eq!(
            out[0].entry.verdict,
            FlowVerdict::Dropped(DropReason::AclDeny)
        );
        assert_eq!(out[0].end, FlowEnd::Shutdown);
    }

    #[test]
    fn idle_flows_leave_and_active_ones_report_then_continue() {
        let mut cache = FlowCache::new(64, 1);
        let t0 = Instant::now();
        let (idle, active) = (Duration::from_secs(15), Duration::from_secs(60));
        cache.observe(&udp_frame(1), FlowVerdict::Forwarded, t0);
        cache.observe(&udp_frame(2), FlowVerdict::Forwarded, t0);
        let mut out = Vec::new();
        // Flow 2 keeps sending; flow 1 goes quiet.
        for s in (10..=70).step_by(10) {
            cache.observe(
                &udp_frame(2),
                FlowVerdict::Forwarded,
                t0 + Duration::from_secs(s),
            );
        }
        cache.sweep(t0 + Duration::from_secs(70), idle, active, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        let ended: Vec<_> = out
            .iter()
            .map(|e| (e.entry.key.src_port, e.end, e.entry.packets))
            .collect();
        assert!(ended.contains(&(1, FlowEnd::Idle, 1)));
        assert!(ended.contains(&(2, FlowEnd::Active, 8)));
        out.clear();
        cache.drain(&mut out);
        assert!(
            out.is_empty(),
            "flow 2's counts started again: nothing new to report"
        );
    }

    #[test]
    fn a_full_cache_evicts_into_pending_then_counts_drops() {
        let mut cache = FlowCache::new(16, 1);
        let t0 = Instant::now();
        for port in 0..200u16 {
            cache.observe(&udp_frame(port), FlowVerdict::Forwarded, t0);
        }
        let mut out = Vec::new();
        cache.drain(&mut out);
        let evicted = out.iter().filter(|e| e.end == FlowEnd::Evicted).count();
        assert_eq!(evicted, 2, "pending holds size / 8");
        assert!(out.len() - evicted <= 16);
        // Every flow is in the table, exported as evicted, or counted as dropped.
        assert_eq!(out.len() as u64 + cache.dropped(), 200);
    }

    proptest! {
        /// Sampling is by flow: a flow is either always or never counted, and about one flow in
        /// `rate` is.
        #[test]
        fn sampling_is_per_flow(rate in 1u32..8, ports in prop::collection::vec(any::<u16>(), 1..64)) {
            let mut cache = FlowCache::new(1024, rate);
            let t0 = Instant::now();
            for &port in ports.iter().chain(&ports) {
                cache.observe(&udp_frame(port), FlowVerdict::Forwarded, t0);
            }
            let mut out = Vec::new();
            cache.drain(&mut out);
            for record in &out {
                let sent = ports.iter().filter(|&&p| p == record.entry.key.src_port).count() as u64;
                prop_assert_eq!(record.entry.packets, 2 * sent);
                prop_assert_eq!(record.entry.key.hash() % rate, 0);
            }
        }
    }
}
