//! Connection tracking for stateful ACLs: a bounded per-VIF table of flows the rules allowed,
//! so that their later packets and their return traffic pass without consulting the rules
//! (VPP's "permit+reflect" sessions, OVS's `ct_state=+est`).
//!
//! # Keys
//!
//! A flow is keyed by its 5-tuple with the two endpoints in a fixed order (the smaller
//! (address, port) first), so both directions find the same entry; the entry remembers which
//! endpoint opened it. TCP, UDP and SCTP use their ports; ICMP and ICMPv6 echo use the echo
//! identifier as both ports (as Linux's `nf_conntrack_proto_icmp`), and only an echo request
//! opens a flow, only a reply from the responder counts as its return. Other IP protocols are
//! tracked on addresses alone. Not tracked, so always judged by the rules: non-IP frames (ARP),
//! ICMP errors (no "related" state) and non-initial fragments (no ports to key on).
//!
//! # TCP
//!
//! A simplified state machine in the spirit of VPP's "transient/established" and Linux's
//! `nf_conntrack_proto_tcp` (without window tracking): SYN → `SynSent`, SYN+ACK from the
//! responder → `SynReceived`, ACK from the opener → `Established`, a FIN → `FinWait`, the
//! other side's FIN → `Closing`, an RST → `Closed`. Established flows get the long timeout,
//! the others the transient one, closed ones a short one. A new SYN on a closing or closed entry
//! starts over (port reuse). A flow first seen mid-stream is taken up as established, as Linux
//! does with `nf_conntrack_tcp_loose=1` (a restarted daemon must not cut live connections).
//!
//! # Bound and concurrency
//!
//! The table is split into up to [`MAX_SHARDS`] shards by key hash, each a `Mutex` around a
//! hash map allocated once at its full share of the capacity: no allocation after
//! construction, and workers of different queues contend only when their flows share a shard.
//! The clock is the caller's (`now` in nanoseconds). Entries past their timeout are dead: a
//! lookup removes the one it finds, [`Conntrack::expire`] sweeps, and a full shard sweeps
//! itself at most once per [`PURGE_INTERVAL_NS`] before refusing. A live flow is never evicted:
//! when a shard is full of live flows, a new flow is refused and counted
//! ([`ConntrackStats::full`]); what happens to its packet is the caller's policy
//! ([`FullPolicy`]). Shards fill independently, so refusals can start a few percent below the
//! nominal capacity when flows hash unevenly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::error::AclError;
use super::fields::addr_bits;
use super::key::{AclKey, PacketFamily};
use crate::wire::tcp::TcpFlags;

/// Most shards; fewer when the capacity is small, so each holds at least a few hundred flows.
pub const MAX_SHARDS: usize = 64;
/// How often a full shard may sweep itself for expired entries (1 s), bounding the cost of a
/// flood of new flows against a full table.
pub const PURGE_INTERVAL_NS: u64 = 1_000_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;

/// What to do with a packet whose new flow the rules allow but the full table cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Drop it (fail closed): its return traffic could not pass anyway.
    #[default]
    Refuse,
    /// Let it pass untracked; its return traffic faces the other direction's rules.
    AllowUntracked,
}

/// Idle timeouts in seconds. Defaults follow VPP's ACL plugin for TCP and UDP (transient 120 s,
/// TCP idle 24 h, UDP 600 s), Linux for ICMP (30 s) and closed TCP (10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub tcp_established_secs: u32,
    pub tcp_transient_secs: u32,
    pub tcp_closed_secs: u32,
    pub udp_secs: u32,
    pub icmp_secs: u32,
    /// Other IP protocols.
    pub other_secs: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established_secs: 86_400,
            tcp_transient_secs: 120,
            tcp_closed_secs: 10,
            udp_secs: 600,
            icmp_secs: 30,
            other_secs: 600,
        }
    }
}

/// A VIF's conntrack settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackConfig {
    /// Most tracked flows (allocated up front: roughly 100 bytes each).
    pub capacity: usize,
    pub timeouts: Timeouts,
    pub on_full: FullPolicy,
}

/// Bounds of [`ConntrackConfig::capacity`].
pub const MIN_CAPACITY: usize = 1;
pub const MAX_CAPACITY: usize = 1 << 24;

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            capacity: 32_768,
            timeouts: Timeouts::default(),
            on_full: FullPolicy::Refuse,
        }
    }
}

/// The TCP states followed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    SynSent,
    SynReceived,
    Established,
    /// One side sent FIN; `by_opener` tells which.
    FinWait {
        by_opener: bool,
    },
    /// Both sides sent FIN.
    Closing,
    /// An RST was seen.
    Closed,
}

/// The state of a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowState {
    Tcp(TcpState),
    Udp,
    IcmpEcho,
    Other,
}

/// A flow key with its endpoints in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    lo_addr: u128,
    hi_addr: u128,
    lo_port: u16,
    hi_port: u16,
    proto: u8,
    v6: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// True when the endpoint that opened the flow is the key's `lo` one.
    opener_is_lo: bool,
    state: FlowState,
    /// Dead at and after this instant (ns).
    expires: u64,
}

/// FxHash-style word mixing with a MurmurHash3 finaliser: the key is trusted to be hostile
/// only in content, not to be chosen against this hash, since a flood of colliding flows can
/// fill no more than the shard's bound anyway.
#[derive(Default)]
struct ConnHasher(u64);

impl Hasher for ConnHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word.iter_mut().zip(chunk).for_each(|(w, b)| *w = *b);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n.into());
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(n.into());
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

type FlowMap = HashMap<ConnKey, Entry, BuildHasherDefault<ConnHasher>>;

#[derive(Debug)]
struct Shard {
    flows: FlowMap,
    capacity: usize,
    next_purge: u64,
}

/// Whether a packet belongs to a live tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// It does; the flow's state and timer were updated.
    Hit(FlowState),
    /// No live flow: judge it by the rules.
    Miss,
    /// Not a trackable packet (see the module docs).
    Untrackable,
}

/// The outcome of opening a flow for an allowed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Created,
    /// Another worker opened it first, or it was already live.
    Exists,
    /// Not a packet that opens a flow (untrackable, an RST, an echo reply).
    NotOpened,
    /// The shard is full of live flows; counted in [`ConntrackStats::full`].
    Full,
}

/// Counters of a table; monotonic except `occupancy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConntrackStats {
    pub occupancy: usize,
    pub capacity: usize,
    pub created: u64,
    pub expired: u64,
    /// New flows refused because their shard was full of live flows.
    pub full: u64,
}

/// A VIF's flow table; see the module docs.
#[derive(Debug)]
pub struct Conntrack {
    shards: Box<[Mutex<Shard>]>,
    config: ConntrackConfig,
    occupancy: AtomicUsize,
    created: AtomicU64,
    expired: AtomicU64,
    full: AtomicU64,
}

impl Conntrack {
    pub fn new(config: ConntrackConfig) -> Result<Conntrack, AclError> {
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&config.capacity) {
            return Err(AclError::Conntrack {
                field: "capacity",
                value: config.capacity as u64,
                bound: "in 1..=16777216",
            });
        }
        // MAX_SHARDS is a power of two, so rounding up stays within it.
        let shards = (config.capacity / 512)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        let per_shard = config.capacity.div_ceil(shards);
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    flows: FlowMap::with_capacity_and_hasher(per_shard, Default::default()),
                    capacity: per_shard,
                    next_purge: 0,
                })
            })
            .collect();
        Ok(Conntrack {
            shards,
            config,
            occupancy: AtomicUsize::new(0),
            created: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            full: AtomicU64::new(0),
        })
    }

    pub const fn config(&self) -> &ConntrackConfig {
        &self.config
    }

    /// Live and not yet swept flows. One relaxed load: callers may skip the table when it is 0.
    #[inline]
    pub fn occupancy(&self) -> usize {
        self.occupancy.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> ConntrackStats {
        ConntrackStats {
            occupancy: self.occupancy(),
            capacity: self.config.capacity,
            created: self.created.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
        }
    }

    /// Looks `key` up; on a live flow, advances its state and timer.
    pub fn track(&self, key: &AclKey, now: u64) -> Track {
        let Some((conn, from_lo)) = conn_key(key) else {
            return Track::Untrackable;
        };
        let mut shard = self.shard(&conn);
        let Some(entry) = shard.flows.get_mut(&conn) else {
            return Track::Miss;
        };
        if now >= entry.expires {
            shard.flows.remove(&conn);
            self.occupancy.fetch_sub(1, Ordering::Relaxed);
            self.expired.fetch_add(1, Ordering::Relaxed);
            return Track::Miss;
        }
        let from_opener = from_lo == entry.opener_is_lo;
        let flags = key.tcp_flags;
        match entry.state {
            // Only the responder's reply answers an echo; anything else is judged anew.
            FlowState::IcmpEcho if key.echo_kind() != Some(from_opener) => return Track::Miss,
            // A fresh SYN on a finished connection starts a new one (port reuse).
            FlowState::Tcp(TcpState::Closing | TcpState::Closed)
                if flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN =>
            {
                return Track::Miss
            }
            FlowState::Tcp(state) => {
                entry.state = FlowState::Tcp(tcp_next(state, from_opener, flags))
            }
            _ => {}
        }
        entry.expires = now.saturating_add(self.timeout_ns(entry.state));
        Track::Hit(entry.state)
    }

    /// Opens a flow for `key`, whose packet the rules allowed. A finished TCP entry for the
    /// same key is replaced.
    pub fn admit(&self, key: &AclKey, now: u64) -> Admit {
        let Some((conn, from_lo)) = conn_key(key) else {
            return Admit::NotOpened;
        };
        let state = match conn.proto {
            6 => {
                let flags = key.tcp_flags;
                if flags.contains(TcpFlags::RST) {
                    return Admit::NotOpened;
                }
                if flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN {
                    FlowState::Tcp(TcpState::SynSent)
                } else {
                    FlowState::Tcp(TcpState::Established)
                }
            }
            17 => FlowState::Udp,
            1 | 58 if key.echo_kind() == Some(true) => FlowState::IcmpEcho,
            1 | 58 => return Admit::NotOpened,
            _ => FlowState::Other,
        };
        let entry = Entry {
            opener_is_lo: from_lo,
            state,
            expires: now.saturating_add(self.timeout_ns(state)),
        };
        let mut shard = self.shard(&conn);
        if let Some(existing) = shard.flows.get_mut(&conn) {
            let finished = matches!(
                existing.state,
                FlowState::Tcp(TcpState::Closing | TcpState::Closed)
            );
            if now < existing.expires && !finished {
                return Admit::Exists;
            }
            *existing = entry;
            self.created.fetch_add(1, Ordering::Relaxed);
            return Admit::Created;
        }
        if shard.flows.len() >= shard.capacity {
            if now >= shard.next_purge {
                shard.next_purge = now.saturating_add(PURGE_INTERVAL_NS);
                let removed = purge(&mut shard.flows, now);
                self.note_expired(removed);
            }
            if shard.flows.len() >= shard.capacity {
                self.full.fetch_add(1, Ordering::Relaxed);
                return Admit::Full;
            }
        }
        shard.flows.insert(conn, entry);
        self.occupancy.fetch_add(1, Ordering::Relaxed);
        self.created.fetch_add(1, Ordering::Relaxed);
        Admit::Created
    }

    /// Removes every expired flow; returns how many. For a housekeeping timer: it visits every
    /// shard, one lock at a time.
    pub fn expire(&self, now: u64) -> usize {
        let removed = self
            .shards
            .iter()
            .map(|shard| purge(&mut lock(shard).flows, now))
            .sum();
        self.note_expired(removed);
        removed
    }

    /// Forgets every flow, e.g. after a rule change that must cut established flows.
    pub fn flush(&self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let count = shard.flows.len();
            shard.flows.clear();
            self.occupancy.fetch_sub(count, Ordering::Relaxed);
        }
    }

    fn note_expired(&self, removed: usize) {
        if removed > 0 {
            self.occupancy.fetch_sub(removed, Ordering::Relaxed);
            self.expired.fetch_add(removed as u64, Ordering::Relaxed);
        }
    }

    fn shard(&self, conn: &ConnKey) -> MutexGuard<'_, Shard> {
        let mut hasher = ConnHasher::default();
        conn.hash(&mut hasher);
        // The map hashes the same key again; the high bits pick the shard so the two uses
        // of the hash stay independent.
        // `new` builds at least one shard, so the modulo is defined and the index in bounds.
        let index = (hasher.finish() >> 32) as usize % self.shards.len();
        lock(&self.shards[index])
    }

    fn timeout_ns(&self, state: FlowState) -> u64 {
        let t = &self.config.timeouts;
        let secs = match state {
            FlowState::Tcp(TcpState::Established) => t.tcp_established_secs,
            FlowState::Tcp(TcpState::Closed) => t.tcp_closed_secs,
            FlowState::Tcp(_) => t.tcp_transient_secs,
            FlowState::Udp => t.udp_secs,
            FlowState::IcmpEcho => t.icmp_secs,
            FlowState::Other => t.other_secs,
        };
        u64::from(secs) * NS_PER_SEC
    }
}

/// A poisoned shard (a worker panicked while holding it) still holds a consistent map: every
/// update under the lock is a single map operation. Keep serving it.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn purge(flows: &mut FlowMap, now: u64) -> usize {
    let before = flows.len();
    flows.retain(|_, entry| now < entry.expires);
    before - flows.len()
}

/// The next TCP state after a segment with `flags` from the opener (or the responder).
fn tcp_next(state: TcpState, from_opener: bool, flags: TcpFlags) -> TcpState {
    if flags.contains(TcpFlags::RST) {
        return TcpState::Closed;
    }
    let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
    match state {
        TcpState::SynSent if !from_opener && flags.contains(syn_ack) => TcpState::SynReceived,
        TcpState::SynReceived
            if from_opener && flags.contains(TcpFlags::ACK) && !flags.contains(TcpFlags::SYN) =>
        {
            TcpState::Established
        }
        TcpState::Established if flags.contains(TcpFlags::FIN) => TcpState::FinWait {
            by_opener: from_opener,
        },
        TcpState::FinWait { by_opener }
            if flags.contains(TcpFlags::FIN) && from_opener != by_opener =>
        {
            TcpState::Closing
        }
        other => other,
    }
}

/// The ordered key of a trackable packet and whether its source is the `lo` endpoint.
fn conn_key(key: &AclKey) -> Option<(ConnKey, bool)> {
    if !key.has_l4() {
        return None;
    }
    let flow = &key.flow;
    let (src, dst) = (flow.src_ip()?, flow.dst_ip()?);
    let (src_port, dst_port) = match flow.ip_proto {
        6 | 17 | 132 => (flow.src_port, flow.dst_port),
        1 | 58 => {
            key.echo_kind()?;
            (key.icmp_echo_id, key.icmp_echo_id)
        }
        _ => (0, 0),
    };
    let src = (addr_bits(src), src_port);
    let dst = (addr_bits(dst), dst_port);
    let from_lo = src <= dst;
    let (lo, hi) = if from_lo { (src, dst) } else { (dst, src) };
    Some((
        ConnKey {
            lo_addr: lo.0,
            hi_addr: hi.0,
            lo_port: lo.1,
            hi_port: hi.1,
            proto: flow.ip_proto,
            v6: key.family() == PacketFamily::V6,
        },
        from_lo,
    ))
}

#[cfg(test)]
mod tests;
