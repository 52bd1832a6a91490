//! The driver side of one split virtqueue (VIRTIO 1.2 § 2.7): descriptor table, available ring
//! and used ring in guest memory, a shadow free list, notification suppression, and the call /
//! kick eventfds.
//!
//! Nothing the device writes is trusted: the free list and chain bookkeeping live in shadow
//! arrays here (never read back from the descriptor table), and every used element is checked
//! against them (`id` in range and in flight, `used.idx` not past the chains in flight) before
//! it is acted on. What a used element *means* (lengths against buffers) is `net.rs`'s concern.
//!
//! Ring indices are accessed with atomic loads/stores: the device is another thread or process
//! mapping the same memfd (VIRTIO 1.2 § 2.7.13 on the barriers between ring writes and `idx`).

mod notify;
mod raw_access;
#[cfg(test)]
mod tests;

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use vhost::VringConfigData;
use vm_memory::GuestAddress;

pub use notify::vring_need_event;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::error::GuestError;
use super::memory::GuestRam;

/// `VRING_DESC_F_NEXT`: the chain continues at `next` (VIRTIO 1.2 § 2.7.5).
pub const VRING_DESC_F_NEXT: u16 = 1;
/// `VRING_DESC_F_WRITE`: device-writable buffer.
pub const VRING_DESC_F_WRITE: u16 = 2;
/// `VRING_DESC_F_INDIRECT`: the buffer is a table of descriptors (§ 2.7.5.3).
pub const VRING_DESC_F_INDIRECT: u16 = 4;

/// Bytes of one descriptor (`struct virtq_desc`).
pub const DESC_LEN: u64 = 16;
/// Most descriptors one chain built by the guest may have (a stack array bounds it).
pub const MAX_CHAIN: usize = 64;
/// Entries of each per-head indirect table the guest keeps for `TxLayout::indirect`.
pub const INDIRECT_TABLE_LEN: u16 = MAX_CHAIN as u16;
/// Largest split queue (VIRTIO 1.2 § 2.7: "Queue Size ... maximum 32768").
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// One buffer of a chain, as the driver describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
    pub device_writable: bool,
}

/// A used-ring element (`struct virtq_used_elem`) that passed the ring-level checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsedElem {
    pub id: u16,
    pub len: u32,
    /// The head was posted through the raw API; its buffers are the raw user's business.
    pub raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadState {
    /// On the free list.
    Free,
    /// Made available; the device owns it.
    InFlight,
    /// Returned by the device, not yet freed or re-posted.
    Completed,
    /// Taken by the raw API: never freed or validated by the normal path.
    Raw,
}

#[derive(Debug, Clone, Copy)]
struct ChainInfo {
    state: HeadState,
    desc_count: u16,
    tail: u16,
}

/// Counters of one ring, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Kicks written to the kick eventfd.
    pub kicks: u64,
    /// Kicks skipped because the device asked not to be notified.
    pub kicks_suppressed: u64,
    /// Times a wait slept on the call eventfd.
    pub sleeps: u64,
    /// Used elements consumed.
    pub used: u64,
}

/// One split virtqueue, driven from the driver side.
#[derive(Debug)]
pub struct DriverRing {
    index: u16,
    size: u16,
    desc_table: GuestAddress,
    avail_ring: GuestAddress,
    used_ring: GuestAddress,
    /// `size * INDIRECT_TABLE_LEN` descriptors, allocated on first indirect use.
    indirect_area: Option<GuestAddress>,
    event_idx: bool,
    free_head: u16,
    num_free: u16,
    /// Shadow `next` links: the free list, and the links inside chains in flight.
    links: Vec<u16>,
    chains: Vec<ChainInfo>,
    /// Entries made available and not yet used.
    in_flight: u16,
    /// False once the raw API moved `avail.idx` by hand: the jump check cannot hold then.
    counts_trusted: bool,
    next_avail: u16,
    published_avail: u16,
    /// `avail.idx` when the guest last decided whether to kick (`old` of `vring_need_event`).
    last_kick_avail: u16,
    last_used: u16,
    /// `used.idx` as last loaded: elements up to it are consumed without touching the cache
    /// line the device writes (the index is re-read only when these run out).
    seen_used: u16,
    call: EventFd,
    kick: EventFd,
    epoll: Epoll,
    stats: RingStats,
}

impl DriverRing {
    /// Allocates the three ring areas in `ram` and the eventfds of virtqueue `index`.
    pub fn new(
        index: u16,
        size: u16,
        ram: &mut GuestRam,
        event_idx: bool,
    ) -> Result<DriverRing, GuestError> {
        if !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return Err(GuestError::QueueSize { size });
        }
        let n = u64::from(size);
        // Alignments of VIRTIO 1.2 § 2.7 (16 / 2 / 4); page-aligned anyway to keep rings apart.
        let desc_table = ram.alloc(DESC_LEN * n, 4096)?;
        let avail_ring = ram.alloc(6 + 2 * n, 4096)?;
        let used_ring = ram.alloc(6 + 8 * n, 4096)?;
        let notify_err = |source| GuestError::Notify {
            op: "eventfd setup",
            queue: index,
            source,
        };
        let call = EventFd::new(EFD_NONBLOCK).map_err(notify_err)?;
        let kick = EventFd::new(EFD_NONBLOCK).map_err(notify_err)?;
        let epoll = Epoll::new().map_err(notify_err)?;
        epoll
            .ctl(
                ControlOperation::Add,
                call.as_raw_fd(),
                EpollEvent::new(EventSet::IN, 0),
            )
            .map_err(notify_err)?;
        let mut ring = DriverRing {
            index,
            size,
            desc_table,
            avail_ring,
            used_ring,
            indirect_area: None,
            event_idx,
            free_head: 0,
            num_free: 0,
            links: vec![0; usize::from(size)],
            chains: vec![
                ChainInfo {
                    state: HeadState::Free,
                    desc_count: 0,
                    tail: 0,
                };
                usize::from(size)
            ],
            in_flight: 0,
            counts_trusted: true,
            next_avail: 0,
            published_avail: 0,
            last_kick_avail: 0,
            last_used: 0,
            seen_used: 0,
            call,
            kick,
            epoll,
            stats: RingStats::default(),
        };
        ring.reset(ram)?;
        Ok(ring)
    }

    /// Empties the ring: zeroed memory, every descriptor free, all indices 0. What a driver does
    /// on device reset; in-flight buffers are forgotten.
    pub fn reset(&mut self, ram: &GuestRam) -> Result<(), GuestError> {
        let n = usize::from(self.size);
        ram.zero(self.desc_table, 16 * n)?;
        ram.zero(self.avail_ring, 6 + 2 * n)?;
        ram.zero(self.used_ring, 6 + 8 * n)?;
        for (i, link) in self.links.iter_mut().enumerate() {
            // Free list 0 -> 1 -> ... -> size-1; the last link is never followed.
            *link = u16::try_from(i + 1).unwrap_or(0);
        }
        for chain in &mut self.chains {
            *chain = ChainInfo {
                state: HeadState::Free,
                desc_count: 0,
                tail: 0,
            };
        }
        self.free_head = 0;
        self.num_free = self.size;
        self.in_flight = 0;
        self.counts_trusted = true;
        self.next_avail = 0;
        self.published_avail = 0;
        self.last_kick_avail = 0;
        self.last_used = 0;
        self.seen_used = 0;
        // Drain a stale call from the previous device.
        let _ = self.call.read();
        self.disable_interrupts(ram)
    }

    /// Takes over the device's progress after a reconnect without reset: the new device starts
    /// at `used.idx` (QEMU's `virtio_queue_restore_last_avail_idx`), and every chain made
    /// available but not used is processed again. Returns that base for `SET_VRING_BASE`.
    pub fn resume_base(&mut self, ram: &GuestRam) -> Result<u16, GuestError> {
        self.used_idx(ram)
    }

    pub fn set_event_idx(&mut self, event_idx: bool) {
        self.event_idx = event_idx;
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    pub fn stats(&self) -> RingStats {
        self.stats
    }

    pub fn call_fd(&self) -> &EventFd {
        &self.call
    }

    pub fn kick_fd(&self) -> &EventFd {
        &self.kick
    }

    pub fn desc_table(&self) -> GuestAddress {
        self.desc_table
    }

    pub fn avail_ring(&self) -> GuestAddress {
        self.avail_ring
    }

    pub fn used_ring(&self) -> GuestAddress {
        self.used_ring
    }

    /// `SET_VRING_ADDR` payload: our process's addresses of the three areas.
    pub fn config_data(&self, ram: &GuestRam) -> Result<VringConfigData, GuestError> {
        Ok(VringConfigData {
            queue_max_size: self.size,
            queue_size: self.size,
            flags: 0,
            desc_table_addr: ram.host_address(self.desc_table)?,
            used_ring_addr: ram.host_address(self.used_ring)?,
            avail_ring_addr: ram.host_address(self.avail_ring)?,
            log_addr: None,
        })
    }

    /// The head the next `add_chain`/`add_indirect` will use.
    pub fn next_free_head(&self) -> Option<u16> {
        (self.num_free > 0).then_some(self.free_head)
    }

    fn desc_addr(&self, index: u16) -> GuestAddress {
        GuestAddress(self.desc_table.0 + DESC_LEN * u64::from(index))
    }

    fn mask(&self, idx: u16) -> u64 {
        u64::from(idx & (self.size - 1))
    }

    fn ring_full(&self, needed: usize) -> GuestError {
        GuestError::RingFull {
            queue: self.index,
            needed: u16::try_from(needed).unwrap_or(u16::MAX),
            free: self.num_free,
        }
    }

    fn check_chain_len(&self, segments: &[Segment]) -> Result<(), GuestError> {
        if segments.is_empty() || segments.len() > MAX_CHAIN {
            return Err(GuestError::TooManySegments {
                segments: segments.len(),
                max: MAX_CHAIN,
            });
        }
        Ok(())
    }

    /// Writes `segments` as a chain of descriptors taken from the free list and appends its head
    /// to the available ring (not yet published).
    pub fn add_chain(&mut self, ram: &GuestRam, segments: &[Segment]) -> Result<u16, GuestError> {
        self.check_chain_len(segments)?;
        if segments.len() > usize::from(self.num_free) {
            return Err(self.ring_full(segments.len()));
        }
        let head = self.free_head;
        let mut index = head;
        let mut tail = head;
        for (i, segment) in segments.iter().enumerate() {
            let has_next = i + 1 < segments.len();
            let link = self.links[usize::from(index)];
            let flags = segment_flags(segment) | if has_next { VRING_DESC_F_NEXT } else { 0 };
            let next = if has_next { link } else { 0 };
            write_desc(ram, self.desc_addr(index), segment, flags, next)?;
            tail = index;
            index = link;
        }
        self.free_head = index;
        // `segments.len() <= num_free <= size <= 32768` was checked above.
        self.num_free -= segments.len() as u16;
        self.chains[usize::from(head)] = ChainInfo {
            state: HeadState::InFlight,
            desc_count: segments.len() as u16,
            tail,
        };
        self.push_avail(ram, head)?;
        Ok(head)
    }

    /// Writes `segments` into the head's indirect table and makes one `INDIRECT` descriptor of it
    /// available (VIRTIO 1.2 § 2.7.5.3).
    pub fn add_indirect(
        &mut self,
        ram: &mut GuestRam,
        segments: &[Segment],
    ) -> Result<u16, GuestError> {
        self.check_chain_len(segments)?;
        if self.num_free == 0 {
            return Err(self.ring_full(1));
        }
        let area = match self.indirect_area {
            Some(area) => area,
            None => {
                let len = DESC_LEN * u64::from(INDIRECT_TABLE_LEN) * u64::from(self.size);
                let area = ram.alloc(len, 16)?;
                self.indirect_area = Some(area);
                area
            }
        };
        let head = self.free_head;
        let table =
            GuestAddress(area.0 + DESC_LEN * u64::from(INDIRECT_TABLE_LEN) * u64::from(head));
        for (i, segment) in segments.iter().enumerate() {
            let has_next = i + 1 < segments.len();
            let flags = segment_flags(segment) | if has_next { VRING_DESC_F_NEXT } else { 0 };
            let next = if has_next { (i + 1) as u16 } else { 0 };
            let at = GuestAddress(table.0 + DESC_LEN * i as u64);
            write_desc(ram, at, segment, flags, next)?;
        }
        let table_segment = Segment {
            addr: table,
            len: DESC_LEN as u32 * segments.len() as u32,
            device_writable: false,
        };
        write_desc(
            ram,
            self.desc_addr(head),
            &table_segment,
            VRING_DESC_F_INDIRECT,
            0,
        )?;
        self.free_head = self.links[usize::from(head)];
        self.num_free -= 1;
        self.chains[usize::from(head)] = ChainInfo {
            state: HeadState::InFlight,
            desc_count: 1,
            tail: head,
        };
        self.push_avail(ram, head)?;
        Ok(head)
    }

    /// Puts `head` in the next available-ring slot (published by [`DriverRing::publish`]).
    fn push_avail(&mut self, ram: &GuestRam, head: u16) -> Result<(), GuestError> {
        let slot = GuestAddress(self.avail_ring.0 + 4 + 2 * self.mask(self.next_avail));
        ram.store(head, slot, Ordering::Relaxed)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        self.in_flight = self.in_flight.wrapping_add(1);
        Ok(())
    }

    /// Makes the entries pushed so far visible: `avail.idx` is stored with release ordering, so
    /// the descriptors and ring slots written before it are seen first (VIRTIO 1.2 § 2.7.13.2).
    pub fn publish(&mut self, ram: &GuestRam) -> Result<(), GuestError> {
        if self.next_avail != self.published_avail {
            ram.store(
                self.next_avail,
                GuestAddress(self.avail_ring.0 + 2),
                Ordering::Release,
            )?;
            self.published_avail = self.next_avail;
        }
        Ok(())
    }

    /// `used.idx` as the device last published it.
    pub fn used_idx(&self, ram: &GuestRam) -> Result<u16, GuestError> {
        ram.load(GuestAddress(self.used_ring.0 + 2), Ordering::Acquire)
    }

    /// `avail.idx` as published.
    pub fn avail_idx(&self) -> u16 {
        self.published_avail
    }

    /// The driver's position in the used ring.
    pub fn last_used(&self) -> u16 {
        self.last_used
    }

    /// Used elements the device published and the driver has not consumed. A device that
    /// claims more than is in flight is caught here.
    pub fn pending_used(&mut self, ram: &GuestRam) -> Result<u16, GuestError> {
        let used_idx = self.used_idx(ram)?;
        self.seen_used = used_idx;
        let pending = used_idx.wrapping_sub(self.last_used);
        if self.counts_trusted && pending > self.in_flight {
            return Err(GuestError::UsedIdxJump {
                queue: self.index,
                used_idx,
                last_used: self.last_used,
                pending,
                in_flight: self.in_flight,
            });
        }
        Ok(pending)
    }

    /// Pending used elements, re-reading `used.idx` only when fewer than `want` are known:
    /// batches then cost one load of the shared index, not one per element.
    pub fn pending_at_least(&mut self, ram: &GuestRam, want: u16) -> Result<u16, GuestError> {
        let known = self.seen_used.wrapping_sub(self.last_used);
        if known >= want && known <= self.in_flight {
            return Ok(known);
        }
        self.pending_used(ram)
    }

    fn read_used(&self, ram: &GuestRam, offset: u16) -> Result<(u32, u32), GuestError> {
        let idx = self.last_used.wrapping_add(offset);
        let at = GuestAddress(self.used_ring.0 + 4 + 8 * self.mask(idx));
        // `struct virtq_used_elem { le32 id; le32 len; }`, 4-aligned. Relaxed is enough: the
        // acquire load of `used.idx` that revealed the element ordered it.
        let id = u32::from_le(ram.load(at, Ordering::Relaxed)?);
        let len = u32::from_le(ram.load(GuestAddress(at.0 + 4), Ordering::Relaxed)?);
        Ok((id, len))
    }

    fn check_used(&self, id: u32, len: u32) -> Result<UsedElem, GuestError> {
        let head = u16::try_from(id)
            .ok()
            .filter(|head| *head < self.size)
            .ok_or(GuestError::UsedIdOutOfRange {
                queue: self.index,
                id,
                size: self.size,
            })?;
        match self.chains[usize::from(head)].state {
            HeadState::InFlight => Ok(UsedElem {
                id: head,
                len,
                raw: false,
            }),
            HeadState::Raw => Ok(UsedElem {
                id: head,
                len,
                raw: true,
            }),
            HeadState::Free | HeadState::Completed => Err(GuestError::UsedIdNotInFlight {
                queue: self.index,
                id,
            }),
        }
    }

    /// The element `offset` places past the driver's position, checked but not consumed. The
    /// caller has seen `pending_used() > offset`.
    pub fn peek_used(&self, ram: &GuestRam, offset: u16) -> Result<UsedElem, GuestError> {
        let (id, len) = self.read_used(ram, offset)?;
        self.check_used(id, len)
    }

    /// Consumes the next used element. It is consumed even when invalid, so one bad element
    /// does not wedge the queue. A valid head becomes `Completed`: the caller frees or re-posts.
    pub fn pop_used(&mut self, ram: &GuestRam) -> Result<Option<UsedElem>, GuestError> {
        if self.pending_at_least(ram, 1)? == 0 {
            return Ok(None);
        }
        let (id, len) = self.read_used(ram, 0)?;
        self.last_used = self.last_used.wrapping_add(1);
        self.in_flight = self.in_flight.wrapping_sub(1);
        self.stats.used += 1;
        let elem = self.check_used(id, len)?;
        if !elem.raw {
            self.chains[usize::from(elem.id)].state = HeadState::Completed;
        }
        Ok(Some(elem))
    }

    /// Returns a completed chain's descriptors to the free list.
    pub fn free_chain(&mut self, head: u16) {
        let Some(chain) = self.chains.get_mut(usize::from(head)) else {
            return;
        };
        if chain.state != HeadState::Completed {
            return;
        }
        chain.state = HeadState::Free;
        let tail = chain.tail;
        let count = chain.desc_count;
        self.links[usize::from(tail)] = self.free_head;
        self.free_head = head;
        self.num_free += count;
    }

    /// Makes a completed chain available again unchanged (RX buffer recycling: the descriptors
    /// still describe the same buffers).
    pub fn recycle(&mut self, ram: &GuestRam, head: u16) -> Result<(), GuestError> {
        match self.chains.get(usize::from(head)).map(|chain| chain.state) {
            Some(HeadState::Completed) => {
                self.chains[usize::from(head)].state = HeadState::InFlight;
                self.push_avail(ram, head)
            }
            _ => Err(GuestError::UsedIdNotInFlight {
                queue: self.index,
                id: u32::from(head),
            }),
        }
    }
}

/// Writes one `struct virtq_desc` (VIRTIO 1.2 § 2.7.5) as two little-endian u64 stores into the
/// 16-aligned table: cheaper than a 16-byte object copy. The device reads it only after the
/// release store of `avail.idx`, so relaxed stores suffice.
#[inline]
fn write_desc(
    ram: &GuestRam,
    at: GuestAddress,
    segment: &Segment,
    flags: u16,
    next: u16,
) -> Result<(), GuestError> {
    ram.store(segment.addr.0.to_le(), at, Ordering::Relaxed)?;
    let tail = u64::from(segment.len) | u64::from(flags) << 32 | u64::from(next) << 48;
    ram.store(tail.to_le(), GuestAddress(at.0 + 8), Ordering::Relaxed)
}

fn segment_flags(segment: &Segment) -> u16 {
    if segment.device_writable {
        VRING_DESC_F_WRITE
    } else {
        0
    }
}
