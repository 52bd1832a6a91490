//! A learning L2 switch per local segment: the port table and the forwarding database (FDB).
//!
//! Every VIF on a segment is a [`Port`]; later an uplink is one too. The switch learns source
//! MACs with a timestamp, forwards known unicast to one port, and floods broadcast, multicast and
//! unknown unicast to every other port. A frame never goes back to its ingress port (no hairpin;
//! IEEE 802.1Q-2018 § 8.6.1 forbids forwarding to the reception port), even when the FDB says the
//! destination lives there.
//!
//! Concurrency, because every worker thread of every VIF on the segment reads this per packet:
//! - A worker opens a [`Burst`] once per wake-up: one read lock on the port table and one on the
//!   FDB for the whole burst, instead of several per packet.
//! - Refreshing a known MAC is a relaxed atomic store into its entry, and only when the stored
//!   time is older than [`REFRESH_GRANULARITY`], so the entry's cache line stays read-mostly.
//! - A new or moved MAC is remembered in the burst and written under the FDB write lock when the
//!   burst ends: one write lock per burst that learned something, never per packet.
//! - The clock is a parameter (`now: Instant`), taken once per burst by the caller; tests
//!   inject it.
//!
//! Hostile guests: source MACs are guest-controlled, so the FDB is bounded in total and per port
//! (a guest spraying random source MACs fills only its own share, then stops learning); group
//! and all-zero source addresses are never learned (IEEE 802.1Q-2018 § 8.7: a group address is
//! never a source).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use vif_core::mac::MacAddr;

use crate::port::{Enqueued, FrameRef, Port, PortId};
use vif_core::stats::DropReason;

/// Default FDB ageing time: 300 s (IEEE 802.1Q-2018 § 8.8.3, recommended default).
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);
/// A known MAC's timestamp is rewritten at most this often.
pub const REFRESH_GRANULARITY: Duration = Duration::from_secs(1);
/// Most ports on one segment.
pub const MAX_PORTS: usize = 1024;
/// Most FDB entries on one segment.
pub const MAX_FDB_ENTRIES: usize = 16384;
/// Most FDB entries learned from one port.
pub const MAX_FDB_ENTRIES_PER_PORT: usize = 256;
/// Most new or moved MACs one burst remembers; more are learned on a later burst.
const MAX_PENDING_LEARNS: usize = 16;

/// Why a port cannot join a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error("segment {segment}: port table is full ({max} ports)")]
    PortTableFull { segment: String, max: usize },
}

struct FdbEntry {
    port: PortId,
    /// Milliseconds since the segment's epoch.
    last_seen_ms: AtomicU64,
}

#[derive(Default)]
struct Fdb {
    entries: HashMap<MacAddr, FdbEntry>,
    /// Entries per port, indexed by `PortId`; enforces [`MAX_FDB_ENTRIES_PER_PORT`].
    per_port: Vec<usize>,
}

impl Fdb {
    fn per_port_mut(&mut self, port: PortId) -> Option<&mut usize> {
        if self.per_port.len() <= port.index() {
            self.per_port.resize(port.index() + 1, 0);
        }
        self.per_port.get_mut(port.index())
    }

    fn learn(&mut self, mac: MacAddr, port: PortId, now_ms: u64) {
        if let Some(entry) = self.entries.get_mut(&mac) {
            if entry.port == port {
                entry.last_seen_ms.store(now_ms, Ordering::Relaxed);
                return;
            }
            // The station moved (VM migration, failover): re-point it, if the new port has room.
            let old = entry.port;
            if self
                .per_port_mut(port)
                .is_some_and(|n| *n >= MAX_FDB_ENTRIES_PER_PORT)
            {
                return;
            }
            if let Some(entry) = self.entries.get_mut(&mac) {
                entry.port = port;
                entry.last_seen_ms.store(now_ms, Ordering::Relaxed);
            }
            if let Some(n) = self.per_port_mut(old) {
                *n = n.saturating_sub(1);
            }
            if let Some(n) = self.per_port_mut(port) {
                *n += 1;
            }
            return;
        }
        if self.entries.len() >= MAX_FDB_ENTRIES {
            return;
        }
        match self.per_port_mut(port) {
            Some(n) if *n < MAX_FDB_ENTRIES_PER_PORT => *n += 1,
            _ => return,
        }
        self.entries.insert(
            mac,
            FdbEntry {
                port,
                last_seen_ms: AtomicU64::new(now_ms),
            },
        );
    }

    fn forget_port(&mut self, port: PortId) {
        self.entries.retain(|_, entry| entry.port != port);
        if let Some(n) = self.per_port_mut(port) {
            *n = 0;
        }
    }
}

/// One learning L2 switch, shared by the VIFs of a local segment.
pub struct Segment {
    name: String,
    epoch: Instant,
    ageing: Duration,
    ports: RwLock<Vec<Option<Arc<dyn Port>>>>,
    fdb: RwLock<Fdb>,
}

impl Segment {
    pub fn new(name: &str) -> Arc<Segment> {
        Segment::with_ageing(name, DEFAULT_AGEING)
    }

    pub fn with_ageing(name: &str, ageing: Duration) -> Arc<Segment> {
        Arc::new(Segment {
            name: name.to_owned(),
            epoch: Instant::now(),
            ageing,
            ports: RwLock::new(Vec::new()),
            fdb: RwLock::new(Fdb::default()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Adds a port; it receives floods from now on and can be learned.
    pub fn attach(&self, port: Arc<dyn Port>) -> Result<PortId, SwitchError> {
        let mut ports = self.ports.write().unwrap_or_else(|e| e.into_inner());
        let slot = match ports.iter().position(Option::is_none) {
            Some(free) => free,
            None if ports.len() < MAX_PORTS => {
                ports.push(None);
                ports.len() - 1
            }
            None => {
                return Err(SwitchError::PortTableFull {
                    segment: self.name.clone(),
                    max: MAX_PORTS,
                })
            }
        };
        if let Some(entry) = ports.get_mut(slot) {
            *entry = Some(port);
        }
        // `slot < MAX_PORTS`, which fits a u32.
        Ok(PortId(slot as u32))
    }

    /// Removes a port and every MAC learned on it. Frames already queued to it stay in its
    /// inbox; new ones are no longer forwarded to it.
    pub fn detach(&self, id: PortId) {
        {
            let mut ports = self.ports.write().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = ports.get_mut(id.index()) {
                *entry = None;
            }
        }
        self.fdb
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .forget_port(id);
    }

    /// Forgets MACs not seen for the ageing time, as of `now` (the clock is a parameter).
    pub fn age_out(&self, now: Instant) {
        let now_ms = self.millis(now);
        let ageing_ms = u64::try_from(self.ageing.as_millis()).unwrap_or(u64::MAX);
        let mut fdb = self.fdb.write().unwrap_or_else(|e| e.into_inner());
        let Fdb { entries, per_port } = &mut *fdb;
        entries.retain(|_, entry| {
            let fresh =
                now_ms.saturating_sub(entry.last_seen_ms.load(Ordering::Relaxed)) < ageing_ms;
            if !fresh {
                if let Some(n) = per_port.get_mut(entry.port.index()) {
                    *n = n.saturating_sub(1);
                }
            }
            fresh
        });
    }

    /// The port `mac` was last seen on, if any. For tests and the control plane; the datapath
    /// uses [`Burst::lookup`].
    pub fn lookup(&self, mac: MacAddr) -> Option<PortId> {
        let fdb = self.fdb.read().unwrap_or_else(|e| e.into_inner());
        fdb.entries.get(&mac).map(|entry| entry.port)
    }

    /// Number of learned MACs.
    pub fn fdb_len(&self) -> usize {
        self.fdb
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    /// Starts a burst: read access to the port table and the FDB until the burst is dropped.
    pub fn begin_burst(&self, now: Instant) -> Burst<'_> {
        Burst {
            segment: self,
            now_ms: self.millis(now),
            ports: self.ports.read().unwrap_or_else(|e| e.into_inner()),
            fdb: Some(self.fdb.read().unwrap_or_else(|e| e.into_inner())),
            pending: [(MacAddr::ZERO, PortId(0)); MAX_PENDING_LEARNS],
            pending_len: 0,
        }
    }
}

/// One worker's view of a segment for one burst. Dropping it applies the MACs it learned.
pub struct Burst<'a> {
    segment: &'a Segment,
    now_ms: u64,
    ports: RwLockReadGuard<'a, Vec<Option<Arc<dyn Port>>>>,
    /// `Some` until drop, where it is released before taking the write lock.
    fdb: Option<RwLockReadGuard<'a, Fdb>>,
    pending: [(MacAddr, PortId); MAX_PENDING_LEARNS],
    pending_len: usize,
}

impl Burst<'_> {
    /// Learns that `mac` sits behind `port`.
    pub fn learn(&mut self, mac: MacAddr, port: PortId) {
        if mac.is_multicast() || mac.is_zero() {
            return;
        }
        let refresh_ms = REFRESH_GRANULARITY.as_millis() as u64;
        if let Some(entry) = self.fdb.as_ref().and_then(|fdb| fdb.entries.get(&mac)) {
            if entry.port == port {
                let seen = entry.last_seen_ms.load(Ordering::Relaxed);
                if self.now_ms.saturating_sub(seen) >= refresh_ms {
                    entry.last_seen_ms.store(self.now_ms, Ordering::Relaxed);
                }
                return;
            }
        }
        let pending = self.pending.get(..self.pending_len).unwrap_or_default();
        if pending.iter().any(|&(m, p)| m == mac && p == port) {
            return;
        }
        if let Some(slot) = self.pending.get_mut(self.pending_len) {
            *slot = (mac, port);
            self.pending_len += 1;
        }
    }

    /// The port `mac` was learned on, if any.
    pub fn lookup(&self, mac: MacAddr) -> Option<PortId> {
        self.fdb
            .as_ref()
            .and_then(|fdb| fdb.entries.get(&mac))
            .map(|entry| entry.port)
    }

    /// Hands `frame` to port `to`. Returns the owed wake-up, if any.
    pub fn enqueue(
        &self,
        to: PortId,
        frame: FrameRef<'_>,
        flow_hint: u16,
    ) -> Result<Enqueued, DropReason> {
        match self.ports.get(to.index()) {
            Some(Some(port)) => port.enqueue(frame, flow_hint),
            _ => Err(DropReason::PortDown),
        }
    }

    /// Calls `each` for every attached port except `except` (the ingress port: no hairpin).
    pub fn for_each_other_port(&self, except: PortId, mut each: impl FnMut(PortId, &dyn Port)) {
        for (index, port) in self.ports.iter().enumerate() {
            if let Some(port) = port {
                if index != except.index() {
                    each(PortId(index as u32), port.as_ref());
                }
            }
        }
    }

    /// Writes the MACs learned so far into the FDB and ends lookups for this burst (they
    /// return `None` afterwards). Call before waking receivers, so a receiver that answers at
    /// once finds the sender learned.
    pub fn apply_learned(&mut self) {
        self.fdb = None;
        if self.pending_len == 0 {
            return;
        }
        let mut fdb = self.segment.fdb.write().unwrap_or_else(|e| e.into_inner());
        for &(mac, port) in self.pending.get(..self.pending_len).unwrap_or_default() {
            // A port detached since the burst began must not be re-learned.
            if matches!(self.ports.get(port.index()), Some(Some(_))) {
                fdb.learn(mac, port, self.now_ms);
            }
        }
        self.pending_len = 0;
    }

    /// Wakes receive queue `queue` of port `to` (an owed wake-up from [`Burst::enqueue`]).
    pub fn wake(&self, to: PortId, queue: u16) {
        if let Some(Some(port)) = self.ports.get(to.index()) {
            port.wake(queue);
        }
    }
}

impl Drop for Burst<'_> {
    fn drop(&mut self) {
        // `apply_learned` releases the read lock before taking the write lock: holding both
        // would deadlock.
        self.apply_learned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A port that records what it was given.
    #[derive(Default)]
    struct RecordingPort {
        frames: Mutex<Vec<Vec<u8>>>,
    }

    impl Port for RecordingPort {
        fn name(&self) -> &str {
            "recording"
        }
        fn enqueue(&self, frame: FrameRef<'_>, _flow_hint: u16) -> Result<Enqueued, DropReason> {
            self.frames.lock().unwrap().push(frame.bytes.to_vec());
            Ok(Enqueued::Queued)
        }
        fn wake(&self, _queue: u16) {}
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, last])
    }

    fn segment_with(n: usize) -> (Arc<Segment>, Vec<PortId>) {
        let segment = Segment::with_ageing("seg", Duration::from_secs(10));
        let ids = (0..n)
            .map(|_| segment.attach(Arc::new(RecordingPort::default())).unwrap())
            .collect();
        (segment, ids)
    }

    #[test]
    fn learns_at_end_of_burst_and_forwards() {
        let (segment, ids) = segment_with(2);
        let now = Instant::now();
        {
            let mut burst = segment.begin_burst(now);
            burst.learn(mac(1), ids[0]);
            assert_eq!(
                burst.lookup(mac(1)),
                None,
                "learned at the end of the burst"
            );
        }
        assert_eq!(segment.lookup(mac(1)), Some(ids[0]));
        // A station that moves is re-pointed.
        segment.begin_burst(now).learn(mac(1), ids[1]);
        assert_eq!(segment.lookup(mac(1)), Some(ids[1]));
    }

    #[test]
    fn never_learns_group_or_zero_sources() {
        let (segment, ids) = segment_with(1);
        let mut burst = segment.begin_burst(Instant::now());
        burst.learn(MacAddr::BROADCAST, ids[0]);
        burst.learn("01:00:5e:00:00:01".parse().unwrap(), ids[0]);
        burst.learn(MacAddr::ZERO, ids[0]);
        drop(burst);
        assert_eq!(segment.fdb_len(), 0);
    }

    #[test]
    fn ages_out_with_injected_clock() {
        let (segment, ids) = segment_with(1);
        let start = Instant::now();
        segment.begin_burst(start).learn(mac(1), ids[0]);
        segment.age_out(start + Duration::from_secs(9));
        assert_eq!(segment.lookup(mac(1)), Some(ids[0]));
        // Refreshed at 9 s: survives until 19 s.
        segment
            .begin_burst(start + Duration::from_secs(9))
            .learn(mac(1), ids[0]);
        segment.age_out(start + Duration::from_secs(18));
        assert_eq!(segment.lookup(mac(1)), Some(ids[0]));
        segment.age_out(start + Duration::from_secs(20));
        assert_eq!(segment.lookup(mac(1)), None);
    }

    #[test]
    fn per_port_limit_bounds_a_mac_spraying_guest() {
        let (segment, ids) = segment_with(2);
        let now = Instant::now();
        for chunk in 0..(MAX_FDB_ENTRIES_PER_PORT * 2 / MAX_PENDING_LEARNS) {
            let mut burst = segment.begin_burst(now);
            for i in 0..MAX_PENDING_LEARNS {
                let n = (chunk * MAX_PENDING_LEARNS + i) as u32;
                let bytes = n.to_be_bytes();
                burst.learn(
                    MacAddr([2, 0, bytes[0], bytes[1], bytes[2], bytes[3]]),
                    ids[0],
                );
            }
        }
        assert_eq!(segment.fdb_len(), MAX_FDB_ENTRIES_PER_PORT);
        // The other port still learns.
        segment.begin_burst(now).learn(mac(9), ids[1]);
        assert_eq!(segment.lookup(mac(9)), Some(ids[1]));
    }

    #[test]
    fn detach_forgets_port_and_frees_slot() {
        let (segment, ids) = segment_with(2);
        segment.begin_burst(Instant::now()).learn(mac(1), ids[0]);
        segment.detach(ids[0]);
        assert_eq!(segment.lookup(mac(1)), None);
        let burst = segment.begin_burst(Instant::now());
        let frame = FrameRef {
            offload: vif_core::offload::TxOffload::None,
            bytes: &[0; 60],
        };
        assert_eq!(burst.enqueue(ids[0], frame, 0), Err(DropReason::PortDown));
        drop(burst);
        let again = segment.attach(Arc::new(RecordingPort::default())).unwrap();
        assert_eq!(again, ids[0], "slot reused");
    }

    #[test]
    fn flood_skips_ingress() {
        let (segment, ids) = segment_with(3);
        let burst = segment.begin_burst(Instant::now());
        let mut seen = Vec::new();
        burst.for_each_other_port(ids[1], |id, _| seen.push(id));
        assert_eq!(seen, vec![ids[0], ids[2]]);
    }
}
