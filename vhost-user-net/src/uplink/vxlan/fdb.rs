//! The forwarding table of one VNI: behind which remote VTEP an inner MAC lives (RFC 7348 § 4).
//!
//! Two sources, as § 4.1 and § 4.2 describe:
//! - *static remotes* from the configuration: the head-end replication list. Broadcast,
//!   multicast and unknown unicast frames go to every one of them (§ 4.2 without an underlay
//!   multicast group: "ingress replication"), once each;
//! - *learned entries*: the inner source MAC of a decapsulated frame is behind the outer source
//!   IP (§ 4.1, "the association of VM's MAC to VTEP's IP address is discovered via source-address
//!   learning"). Known unicast then goes to that one VTEP only. Entries age out when not
//!   refreshed for the ageing time; the clock is a parameter so tests inject it.
//!
//! A learned VTEP is not added to the replication list: like Linux's vxlan driver, flooding goes
//! to the configured remotes only (a VTEP that sends to us but is not configured gets unicast
//! replies, never floods).
//!
//! Everything learned is peer-controlled, so the table is bounded in total ([`MAX_LEARNED`]) and
//! per remote ([`MAX_LEARNED_PER_REMOTE`]): a remote spraying random source MACs fills only its
//! own share. Group and all-zero source MACs are never learned (IEEE 802.1Q-2018 § 8.7).
//!
//! Concurrency follows `switch.rs`: lookups (every sending thread, per flush) and refreshes of a
//! known entry (the receive thread, a relaxed atomic store at most once per
//! [`REFRESH_GRANULARITY`]) share a read lock; only a new or moved MAC takes the write lock,
//! once per received batch.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use vif_core::mac::MacAddr;

/// Default ageing of learned entries: 300 s, as Linux's vxlan (`ageing`) and IEEE 802.1Q-2018
/// § 8.8.3's recommended bridge default.
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);
/// A known entry's timestamp is rewritten at most this often.
pub const REFRESH_GRANULARITY: Duration = Duration::from_secs(1);
/// Most learned MACs per VNI.
pub const MAX_LEARNED: usize = 4096;
/// Most learned MACs behind one remote VTEP.
pub const MAX_LEARNED_PER_REMOTE: usize = 1024;

/// Where a frame for one destination MAC goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destinations<'a> {
    /// A learned unicast MAC: to its VTEP only.
    Unicast(IpAddr),
    /// Broadcast, multicast or unknown unicast: to every static remote (may be none).
    Flood(&'a [IpAddr]),
}

impl Destinations<'_> {
    /// The remotes, as a slice.
    pub fn as_slice(&self) -> &[IpAddr] {
        match self {
            Destinations::Unicast(remote) => std::slice::from_ref(remote),
            Destinations::Flood(remotes) => remotes,
        }
    }
}

struct Entry {
    remote: IpAddr,
    /// Milliseconds since the table's epoch.
    last_seen_ms: AtomicU64,
}

#[derive(Default)]
struct Table {
    entries: HashMap<MacAddr, Entry>,
    /// Learned entries per remote; enforces [`MAX_LEARNED_PER_REMOTE`]. No zero counts.
    per_remote: HashMap<IpAddr, usize>,
}

impl Table {
    fn count_up(&mut self, remote: IpAddr) {
        *self.per_remote.entry(remote).or_insert(0) += 1;
    }

    fn count_down(&mut self, remote: IpAddr) {
        if let Some(n) = self.per_remote.get_mut(&remote) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_remote.remove(&remote);
            }
        }
    }

    fn has_room(&self, remote: IpAddr) -> bool {
        self.per_remote.get(&remote).copied().unwrap_or(0) < MAX_LEARNED_PER_REMOTE
    }

    /// Inserts or moves `mac`; returns whether the table changed.
    fn learn(&mut self, mac: MacAddr, remote: IpAddr, now_ms: u64) -> bool {
        if let Some(entry) = self.entries.get(&mac) {
            let old = entry.remote;
            if old == remote {
                entry.last_seen_ms.store(now_ms, Ordering::Relaxed);
                return false;
            }
            // The station moved to another VTEP (VM migration): re-point it if there is room.
            if !self.has_room(remote) {
                return false;
            }
            if let Some(entry) = self.entries.get_mut(&mac) {
                entry.remote = remote;
                entry.last_seen_ms.store(now_ms, Ordering::Relaxed);
            }
            self.count_down(old);
            self.count_up(remote);
            return true;
        }
        if self.entries.len() >= MAX_LEARNED || !self.has_room(remote) {
            return false;
        }
        self.entries.insert(
            mac,
            Entry {
                remote,
                last_seen_ms: AtomicU64::new(now_ms),
            },
        );
        self.count_up(remote);
        true
    }
}

/// The forwarding table of one VNI.
pub struct VniFdb {
    epoch: Instant,
    ageing: Duration,
    static_remotes: Box<[IpAddr]>,
    table: RwLock<Table>,
}

impl VniFdb {
    /// A table flooding to `static_remotes` (duplicates removed, order kept), ageing learned
    /// entries after `ageing`. `epoch` is the zero of the table's clock: any instant not after
    /// the first `now` passed in.
    pub fn new(static_remotes: &[IpAddr], ageing: Duration, epoch: Instant) -> VniFdb {
        let mut unique: Vec<IpAddr> = Vec::with_capacity(static_remotes.len());
        for &remote in static_remotes {
            if !unique.contains(&remote) {
                unique.push(remote);
            }
        }
        VniFdb {
            epoch,
            ageing,
            static_remotes: unique.into_boxed_slice(),
            table: RwLock::new(Table::default()),
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The head-end replication list.
    pub fn static_remotes(&self) -> &[IpAddr] {
        &self.static_remotes
    }

    /// Whether `remote` is a configured remote.
    pub fn is_static(&self, remote: IpAddr) -> bool {
        self.static_remotes.contains(&remote)
    }

    /// Read access for a batch of lookups.
    pub fn read(&self) -> FdbView<'_> {
        FdbView {
            table: self.table.read().unwrap_or_else(|e| e.into_inner()),
            static_remotes: &self.static_remotes,
        }
    }

    /// Learns that each `(mac, remote)` pair was seen at `now`; returns how many entries were
    /// added or moved. Refreshing a known entry only takes the read lock; the write lock is
    /// taken once, and only if something is new.
    pub fn learn(&self, now: Instant, seen: &[(MacAddr, IpAddr)]) -> usize {
        let now_ms = self.millis(now);
        let refresh_ms = u64::try_from(REFRESH_GRANULARITY.as_millis()).unwrap_or(u64::MAX);
        let mut needs_write = false;
        {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            for &(mac, remote) in seen {
                if !learnable(mac) {
                    continue;
                }
                match table.entries.get(&mac) {
                    Some(entry) if entry.remote == remote => {
                        let last = entry.last_seen_ms.load(Ordering::Relaxed);
                        if now_ms.saturating_sub(last) >= refresh_ms {
                            entry.last_seen_ms.store(now_ms, Ordering::Relaxed);
                        }
                    }
                    _ => needs_write = true,
                }
            }
        }
        if !needs_write {
            return 0;
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|&&(mac, _)| learnable(mac))
            .filter(|&&(mac, remote)| table.learn(mac, remote, now_ms))
            .count()
    }

    /// Forgets entries not refreshed for the ageing time as of `now`; returns how many.
    pub fn age_out(&self, now: Instant) -> usize {
        let now_ms = self.millis(now);
        let ageing_ms = u64::try_from(self.ageing.as_millis()).unwrap_or(u64::MAX);
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let Table {
            entries,
            per_remote,
        } = &mut *table;
        let before = entries.len();
        entries.retain(|_, entry| {
            let fresh =
                now_ms.saturating_sub(entry.last_seen_ms.load(Ordering::Relaxed)) < ageing_ms;
            if !fresh {
                if let Some(n) = per_remote.get_mut(&entry.remote) {
                    *n = n.saturating_sub(1);
                }
            }
            fresh
        });
        per_remote.retain(|_, n| *n > 0);
        before - entries.len()
    }

    /// The VTEP `mac` was learned behind, if any.
    pub fn remote_of(&self, mac: MacAddr) -> Option<IpAddr> {
        self.read().learned(mac)
    }

    /// Whether any learned entry points at `remote`.
    pub fn has_learned_remote(&self, remote: IpAddr) -> bool {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table.per_remote.contains_key(&remote)
    }

    /// Number of learned entries.
    pub fn len(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Group and all-zero addresses are never a station (IEEE 802.1Q-2018 § 8.7).
fn learnable(mac: MacAddr) -> bool {
    !mac.is_multicast() && !mac.is_zero()
}

/// A read-locked table for a batch of lookups.
pub struct FdbView<'a> {
    table: RwLockReadGuard<'a, Table>,
    static_remotes: &'a [IpAddr],
}

impl<'a> FdbView<'a> {
    /// Where a frame to `dst` goes (RFC 7348 § 4.1, § 4.2).
    pub fn destinations(&self, dst: MacAddr) -> Destinations<'a> {
        if !dst.is_multicast() {
            if let Some(remote) = self.learned(dst) {
                return Destinations::Unicast(remote);
            }
        }
        Destinations::Flood(self.static_remotes)
    }

    /// The VTEP `mac` was learned behind, if any.
    pub fn learned(&self, mac: MacAddr) -> Option<IpAddr> {
        self.table.entries.get(&mac).map(|entry| entry.remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        Ipv4Addr::new(192, 0, 2, last).into()
    }

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([0x02, 0, b[0], b[1], b[2], b[3]])
    }

    fn fdb(remotes: &[IpAddr], epoch: Instant) -> VniFdb {
        VniFdb::new(remotes, Duration::from_secs(10), epoch)
    }

    #[test]
    fn unknown_broadcast_and_multicast_flood_to_static_remotes() {
        let start = Instant::now();
        let fdb = fdb(&[ip(2), ip(3), ip(2)], start);
        assert_eq!(
            fdb.static_remotes(),
            &[ip(2), ip(3)],
            "deduplicated, in order"
        );
        let view = fdb.read();
        for dst in [
            mac(1),
            MacAddr::BROADCAST,
            "01:00:5e:00:00:01".parse().unwrap(),
        ] {
            assert_eq!(view.destinations(dst).as_slice(), &[ip(2), ip(3)], "{dst}");
        }
    }

    #[test]
    fn learned_unicast_goes_to_its_vtep_only() {
        let start = Instant::now();
        let fdb = fdb(&[ip(2), ip(3)], start);
        assert_eq!(fdb.learn(start, &[(mac(1), ip(2))]), 1);
        assert_eq!(
            fdb.read().destinations(mac(1)),
            Destinations::Unicast(ip(2))
        );
        // Learned from a VTEP that is not configured: unicast to it, but no floods.
        assert_eq!(fdb.learn(start, &[(mac(2), ip(9))]), 1);
        assert_eq!(fdb.read().destinations(mac(2)).as_slice(), &[ip(9)]);
        assert_eq!(
            fdb.read().destinations(MacAddr::BROADCAST).as_slice(),
            &[ip(2), ip(3)]
        );
        // A group MAC in the table would never be used for a multicast destination anyway,
        // and is never learned.
        assert_eq!(
            fdb.learn(
                start,
                &[(MacAddr::BROADCAST, ip(2)), (MacAddr::ZERO, ip(2))]
            ),
            0
        );
        assert_eq!(fdb.len(), 2);
    }

    #[test]
    fn a_station_that_moves_is_repointed() {
        let start = Instant::now();
        let fdb = fdb(&[], start);
        fdb.learn(start, &[(mac(1), ip(2))]);
        assert_eq!(fdb.learn(start, &[(mac(1), ip(2))]), 0, "refresh only");
        assert_eq!(fdb.learn(start, &[(mac(1), ip(3))]), 1);
        assert_eq!(fdb.remote_of(mac(1)), Some(ip(3)));
        assert!(!fdb.has_learned_remote(ip(2)));
        assert!(fdb.has_learned_remote(ip(3)));
    }

    #[test]
    fn ages_out_with_injected_clock() {
        let start = Instant::now();
        let fdb = fdb(&[ip(2)], start);
        fdb.learn(start, &[(mac(1), ip(2)), (mac(2), ip(3))]);
        assert_eq!(fdb.age_out(start + Duration::from_secs(9)), 0);
        // mac(1) refreshed at 9 s lives until 19 s; mac(2) goes at 10 s.
        fdb.learn(start + Duration::from_secs(9), &[(mac(1), ip(2))]);
        assert_eq!(fdb.age_out(start + Duration::from_secs(10)), 1);
        assert_eq!(fdb.remote_of(mac(2)), None);
        assert!(!fdb.has_learned_remote(ip(3)));
        assert_eq!(fdb.remote_of(mac(1)), Some(ip(2)));
        assert_eq!(fdb.age_out(start + Duration::from_secs(19)), 1);
        assert!(fdb.is_empty());
        // Aged out: unicast to it floods again.
        assert_eq!(
            fdb.read().destinations(mac(1)),
            Destinations::Flood(&[ip(2)])
        );
    }

    #[test]
    fn refresh_is_rate_limited_but_keeps_entries_alive() {
        let start = Instant::now();
        let fdb = fdb(&[], start);
        fdb.learn(start, &[(mac(1), ip(2))]);
        // Refreshed every 0.5 s: only every other refresh writes, and the entry never ages.
        for half_seconds in 1..=40u64 {
            let now = start + Duration::from_millis(500 * half_seconds);
            fdb.learn(now, &[(mac(1), ip(2))]);
            assert_eq!(fdb.age_out(now), 0);
        }
    }

    #[test]
    fn a_mac_spraying_remote_fills_only_its_share() {
        let start = Instant::now();
        let fdb = fdb(&[], start);
        let spray: Vec<(MacAddr, IpAddr)> = (0..MAX_LEARNED_PER_REMOTE as u32 + 10)
            .map(|n| (mac(n), ip(66)))
            .collect();
        assert_eq!(fdb.learn(start, &spray), MAX_LEARNED_PER_REMOTE);
        assert_eq!(fdb.len(), MAX_LEARNED_PER_REMOTE);
        // Another remote still learns, and a station cannot move onto the full remote.
        assert_eq!(fdb.learn(start, &[(mac(1 << 20), ip(7))]), 1);
        assert_eq!(fdb.learn(start, &[(mac(1 << 20), ip(66))]), 0);
        assert_eq!(fdb.remote_of(mac(1 << 20)), Some(ip(7)));
    }

    #[test]
    fn total_bound_holds_across_remotes() {
        let start = Instant::now();
        let fdb = fdb(&[], start);
        let per = MAX_LEARNED_PER_REMOTE as u32;
        for remote in 0..=(MAX_LEARNED as u32 / per) {
            let batch: Vec<_> = (0..per)
                .map(|n| (mac(remote * per + n), ip(remote as u8 + 1)))
                .collect();
            fdb.learn(start, &batch);
        }
        assert_eq!(fdb.len(), MAX_LEARNED);
    }
}
