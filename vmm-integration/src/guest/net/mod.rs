//! virtio-net operations on queue pairs (VIRTIO 1.2 § 5.1.6): posting receive buffers,
//! transmitting header + frame chains, reclaiming completed transmits, and assembling received
//! packets from one or (`MRG_RXBUF`) several used buffers.
//!
//! Each descriptor head owns one buffer in guest memory (`SlotBuf`), grown on demand and reused
//! after completion, so steady-state traffic allocates nothing. The fast paths for benchmarks
//! are [`VirtualGuest::send_burst`] (chains pointing at frames written once with
//! [`VirtualGuest::prepare_frame`]; the device only reads TX buffers, so many chains may share
//! one) and [`VirtualGuest::recv_count`] (count, recycle, no copy).
//!
//! What the device reports is checked: a used length past the buffer posted, a first buffer
//! shorter than the 12-byte header, or `num_buffers` of 0 or more than the ring holds are
//! errors naming the queue, not panics or hangs.

mod rx;
mod tx;

use vif_core::offload::VIRTIO_NET_HDR_LEN;
use vm_memory::GuestAddress;

use super::config::feature;
use super::error::GuestError;
use super::memory::GuestRam;
use super::vring::DriverRing;
use super::VirtualGuest;

pub use tx::MAX_TX_LEN;

const HDR_LEN: u32 = VIRTIO_NET_HDR_LEN as u32;

/// The buffer a descriptor head owns.
#[derive(Debug, Clone, Copy, Default)]
struct SlotBuf {
    addr: u64,
    capacity: u32,
    /// Bytes described to the device (RX: device-writable length).
    posted: u32,
}

/// One virtqueue of the net device and its buffers.
#[derive(Debug)]
pub(super) struct NetQueue {
    pub(super) ring: DriverRing,
    slots: Vec<SlotBuf>,
    /// Where `send_burst` continues in its frame list.
    burst_cursor: usize,
}

/// A frame written once into guest memory, header included, for [`VirtualGuest::send_burst`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedFrame {
    addr: GuestAddress,
    /// Header + frame bytes.
    len: u32,
}

impl PreparedFrame {
    /// Frame bytes, without the virtio-net header.
    pub fn frame_len(&self) -> u32 {
        self.len - HDR_LEN
    }
}

/// What [`VirtualGuest::recv_count`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxBurst {
    pub packets: u64,
    /// Frame bytes, virtio-net headers excluded.
    pub bytes: u64,
}

impl NetQueue {
    pub(super) fn new(
        index: u16,
        size: u16,
        ram: &mut GuestRam,
        event_idx: bool,
    ) -> Result<NetQueue, GuestError> {
        Ok(NetQueue {
            ring: DriverRing::new(index, size, ram, event_idx)?,
            slots: vec![SlotBuf::default(); usize::from(size)],
            burst_cursor: 0,
        })
    }

    pub(super) fn reset(&mut self, ram: &GuestRam, event_idx: bool) -> Result<(), GuestError> {
        self.ring.set_event_idx(event_idx);
        self.ring.reset(ram)?;
        for slot in &mut self.slots {
            slot.posted = 0;
        }
        self.burst_cursor = 0;
        Ok(())
    }

    /// The buffer of `head`, at least `len` bytes; reallocated (the old one is abandoned to the
    /// bump allocator) when too small.
    fn slot(
        &mut self,
        ram: &mut GuestRam,
        head: u16,
        len: u32,
        min_capacity: u32,
    ) -> Result<u64, GuestError> {
        let slot =
            self.slots
                .get_mut(usize::from(head))
                .ok_or(GuestError::DescIndexOutOfRange {
                    queue: self.ring.index(),
                    index: head,
                    size: self.ring.size(),
                })?;
        if slot.capacity < len {
            let capacity = len
                .max(min_capacity)
                .checked_next_power_of_two()
                .unwrap_or(len);
            slot.addr = ram.alloc(u64::from(capacity), 64)?.0;
            slot.capacity = capacity;
        }
        Ok(slot.addr)
    }

    fn posted(&self, head: u16) -> u32 {
        self.slots
            .get(usize::from(head))
            .map_or(0, |slot| slot.posted)
    }

    fn slot_addr(&self, head: u16) -> u64 {
        self.slots
            .get(usize::from(head))
            .map_or(0, |slot| slot.addr)
    }

    /// Completed TX chains back to the free list; returns how many.
    fn reap(&mut self, ram: &GuestRam) -> Result<usize, GuestError> {
        let mut reaped = 0;
        while let Some(elem) = self.ring.pop_used(ram)? {
            if !elem.raw {
                self.ring.free_chain(elem.id);
                reaped += 1;
            }
        }
        Ok(reaped)
    }
}

impl VirtualGuest {
    fn pair(&mut self, qp: u16) -> Result<(), GuestError> {
        if qp >= self.cfg.queue_pairs {
            return Err(GuestError::QueuePairOutOfRange {
                qp,
                queue_pairs: self.cfg.queue_pairs,
            });
        }
        Ok(())
    }

    fn rx_index(&mut self, qp: u16) -> Result<usize, GuestError> {
        self.pair(qp)?;
        Ok(usize::from(qp) * 2)
    }

    fn tx_index(&mut self, qp: u16) -> Result<usize, GuestError> {
        self.pair(qp)?;
        Ok(usize::from(qp) * 2 + 1)
    }

    fn mergeable(&self) -> bool {
        self.negotiated.has(feature::MRG_RXBUF)
    }
}
