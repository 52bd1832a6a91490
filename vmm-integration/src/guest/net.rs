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

use std::time::{Duration, Instant};

use vif_core::offload::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use vm_memory::GuestAddress;

use super::config::{feature, TxLayout};
use super::error::GuestError;
use super::memory::GuestRam;
use super::vring::{DriverRing, Segment, MAX_CHAIN};
use super::VirtualGuest;

const HDR_LEN: u32 = VIRTIO_NET_HDR_LEN as u32;
/// Largest header + frame `send` accepts; hostile sizes go through the raw API.
pub const MAX_TX_LEN: usize = 1 << 20;
/// Offset of `num_buffers` in `virtio_net_hdr_v1` (VIRTIO 1.2 § 5.1.6).
const NUM_BUFFERS_OFFSET: u64 = 10;

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

    /// Buffers the next received packet needs (`num_buffers`, or 1 without `MRG_RXBUF`) and
    /// how many used elements are pending. `None` when nothing is pending.
    fn next_packet(
        &self,
        ram: &GuestRam,
        mergeable: bool,
    ) -> Result<Option<(u16, u16)>, GuestError> {
        let pending = self.ring.pending_used(ram)?;
        if pending == 0 {
            return Ok(None);
        }
        let first = self.ring.peek_used(ram, 0)?;
        if first.raw || !mergeable {
            return Ok(Some((1, pending)));
        }
        let at = GuestAddress(self.slot_addr(first.id) + NUM_BUFFERS_OFFSET);
        let num_buffers = u16::from_le_bytes(ram.read_obj::<[u8; 2]>(at)?);
        Ok(Some((num_buffers, pending)))
    }

    fn check_rx_len(&self, id: u16, len: u32, first: bool) -> Result<(), GuestError> {
        let posted = self.posted(id);
        if len > posted {
            return Err(GuestError::UsedLenTooLarge {
                queue: self.ring.index(),
                id,
                len,
                posted,
            });
        }
        if first && len < HDR_LEN {
            return Err(GuestError::UsedLenTooShort {
                queue: self.ring.index(),
                id,
                len,
                min: HDR_LEN,
            });
        }
        Ok(())
    }

    /// Pops one element and re-posts its buffer; used for skipping a bad packet.
    fn drop_one(&mut self, ram: &GuestRam) -> Result<(), GuestError> {
        if let Some(elem) = self.ring.pop_used(ram)? {
            if !elem.raw {
                self.ring.recycle(ram, elem.id)?;
            }
        }
        Ok(())
    }

    /// Validates a packet of `count` buffers, then hands each `(head, len, first)` to `visit`,
    /// consumes them and re-posts the buffers.
    fn take_packet(
        &mut self,
        ram: &GuestRam,
        count: u16,
        mut visit: impl FnMut(&GuestRam, u64, u32, bool) -> Result<(), GuestError>,
    ) -> Result<(), GuestError> {
        for k in 0..count {
            let elem = self.ring.peek_used(ram, k)?;
            if let Err(e) = self.check_rx_len(elem.id, elem.len, k == 0) {
                self.drop_one(ram)?;
                return Err(e);
            }
        }
        for k in 0..count {
            let Some(elem) = self.ring.pop_used(ram)? else {
                break;
            };
            visit(ram, self.slot_addr(elem.id), elem.len, k == 0)?;
            self.ring.recycle(ram, elem.id)?;
        }
        Ok(())
    }
}

/// Splits `total` bytes into `parts` near-equal lengths, the larger ones first.
fn piece_len(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
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

    /// Posts up to `count` device-writable buffers of `buf_len` bytes, one descriptor each, on
    /// pair `qp`'s RX queue, then kicks if the device wants it. Returns how many were posted
    /// (fewer when the ring fills). Without `MRG_RXBUF` a buffer must hold header + a whole
    /// frame; with it the device spreads a packet over several (VIRTIO 1.2 § 5.1.6.3).
    pub fn post_rx_buffers(
        &mut self,
        qp: u16,
        count: u16,
        buf_len: u32,
    ) -> Result<u16, GuestError> {
        if buf_len < HDR_LEN {
            return Err(GuestError::RxBufferTooSmall {
                len: buf_len,
                min: HDR_LEN,
            });
        }
        let q = self.rx_index(qp)?;
        let queue = &mut self.queues[q];
        let mut posted = 0;
        while posted < count {
            let Some(head) = queue.ring.next_free_head() else {
                break;
            };
            let addr = queue.slot(&mut self.ram, head, buf_len, buf_len)?;
            queue.slots[usize::from(head)].posted = buf_len;
            let segment = Segment {
                addr: GuestAddress(addr),
                len: buf_len,
                device_writable: true,
            };
            queue.ring.add_chain(&self.ram, &[segment])?;
            posted += 1;
        }
        queue.ring.publish(&self.ram)?;
        queue.ring.kick_if_needed(&self.ram)?;
        Ok(posted)
    }

    /// Posts RX buffers until the ring is full.
    pub fn fill_rx(&mut self, qp: u16, buf_len: u32) -> Result<u16, GuestError> {
        self.post_rx_buffers(qp, u16::MAX, buf_len)
    }

    /// RX buffers currently owned by the device on pair `qp`.
    pub fn rx_posted(&mut self, qp: u16) -> Result<u16, GuestError> {
        let q = self.rx_index(qp)?;
        Ok(self.queues[q].ring.in_flight())
    }

    /// Transmits `hdr` + `frame` on pair `qp` with the configured [`TxLayout`].
    pub fn send(&mut self, qp: u16, hdr: &VirtioNetHdr, frame: &[u8]) -> Result<(), GuestError> {
        self.send_with(qp, hdr, frame, self.cfg.tx_layout)
    }

    /// Transmits with an explicit descriptor layout. On a full ring it reclaims completed
    /// chains, waiting up to `op_timeout` for the device to complete some.
    pub fn send_with(
        &mut self,
        qp: u16,
        hdr: &VirtioNetHdr,
        frame: &[u8],
        layout: TxLayout,
    ) -> Result<(), GuestError> {
        let q = self.tx_index(qp)?;
        let needed = self.tx_descs_needed(frame.len(), layout)?;
        self.ensure_tx_room(q, needed)?;
        self.add_tx_chain(q, hdr, frame, layout)?;
        let queue = &mut self.queues[q];
        queue.ring.publish(&self.ram)?;
        queue.ring.kick_if_needed(&self.ram)?;
        Ok(())
    }

    /// Queues as many `(header, frame)` pairs as fit after reclaiming completed chains, with one
    /// publish and at most one kick. Returns how many were queued; never waits.
    pub fn send_batch<'a, I>(&mut self, qp: u16, frames: I) -> Result<usize, GuestError>
    where
        I: IntoIterator<Item = (&'a VirtioNetHdr, &'a [u8])>,
    {
        let q = self.tx_index(qp)?;
        let layout = self.cfg.tx_layout;
        self.queues[q].reap(&self.ram)?;
        let mut sent = 0;
        for (hdr, frame) in frames {
            let needed = self.tx_descs_needed(frame.len(), layout)?;
            if self.queues[q].ring.num_free() < needed {
                break;
            }
            self.add_tx_chain(q, hdr, frame, layout)?;
            sent += 1;
        }
        let queue = &mut self.queues[q];
        queue.ring.publish(&self.ram)?;
        queue.ring.kick_if_needed(&self.ram)?;
        Ok(sent)
    }

    /// Writes `hdr` + `frame` once into guest memory for [`VirtualGuest::send_burst`]. The
    /// memory is never reclaimed: prepare a handful of frames up front.
    pub fn prepare_frame(
        &mut self,
        hdr: &VirtioNetHdr,
        frame: &[u8],
    ) -> Result<PreparedFrame, GuestError> {
        let len = VIRTIO_NET_HDR_LEN + frame.len();
        if len > MAX_TX_LEN {
            return Err(GuestError::FrameTooLarge {
                len: frame.len(),
                max: MAX_TX_LEN,
            });
        }
        let addr = self.ram.alloc(len as u64, 64)?;
        self.ram.write(addr, &hdr.to_bytes())?;
        self.ram
            .write(GuestAddress(addr.0 + u64::from(HDR_LEN)), frame)?;
        Ok(PreparedFrame {
            addr,
            len: len as u32,
        })
    }

    /// Benchmark fast path: reclaims completed chains, then queues up to `count` one-descriptor
    /// chains cycling through `frames` (nothing copied, nothing allocated), publishes once and
    /// kicks at most once. Returns how many were queued.
    pub fn send_burst(
        &mut self,
        qp: u16,
        frames: &[PreparedFrame],
        count: usize,
    ) -> Result<usize, GuestError> {
        let q = self.tx_index(qp)?;
        if frames.is_empty() {
            return Ok(0);
        }
        let queue = &mut self.queues[q];
        queue.reap(&self.ram)?;
        let mut sent = 0;
        while sent < count && queue.ring.num_free() > 0 {
            let frame = frames[queue.burst_cursor % frames.len()];
            queue.burst_cursor = queue.burst_cursor.wrapping_add(1);
            let segment = Segment {
                addr: frame.addr,
                len: frame.len,
                device_writable: false,
            };
            queue.ring.add_chain(&self.ram, &[segment])?;
            sent += 1;
        }
        queue.ring.publish(&self.ram)?;
        queue.ring.kick_if_needed(&self.ram)?;
        Ok(sent)
    }

    /// Returns completed TX chains of pair `qp` to the free list; how many.
    pub fn reap_tx(&mut self, qp: u16) -> Result<usize, GuestError> {
        let q = self.tx_index(qp)?;
        self.queues[q].reap(&self.ram)
    }

    /// TX chains the device has not completed yet.
    pub fn tx_in_flight(&mut self, qp: u16) -> Result<u16, GuestError> {
        let q = self.tx_index(qp)?;
        Ok(self.queues[q].ring.in_flight())
    }

    /// Waits until the device has completed every TX chain of pair `qp`, reclaiming them.
    pub fn wait_tx_done(&mut self, qp: u16, timeout: Duration) -> Result<(), GuestError> {
        let q = self.tx_index(qp)?;
        let deadline = Instant::now() + timeout;
        let queue = &mut self.queues[q];
        loop {
            queue.reap(&self.ram)?;
            if queue.ring.in_flight() == 0 {
                return Ok(());
            }
            queue
                .ring
                .wait_used(&self.ram, 0, deadline, "wait_tx_done", timeout)?;
        }
    }

    fn tx_descs_needed(&self, frame_len: usize, layout: TxLayout) -> Result<u16, GuestError> {
        if VIRTIO_NET_HDR_LEN + frame_len > MAX_TX_LEN {
            return Err(GuestError::FrameTooLarge {
                len: frame_len,
                max: MAX_TX_LEN,
            });
        }
        if layout.indirect {
            if !self.negotiated.has(feature::INDIRECT_DESC) {
                return Err(GuestError::FeatureNotNegotiated {
                    feature: "VIRTIO_RING_F_INDIRECT_DESC",
                    op: "an indirect TX layout",
                });
            }
            return Ok(1);
        }
        let (segments, _) = tx_pieces(frame_len, layout);
        Ok(segments as u16)
    }

    /// Reclaims, then waits, until `needed` descriptors are free on vring `q`.
    fn ensure_tx_room(&mut self, q: usize, needed: u16) -> Result<(), GuestError> {
        let timeout = self.cfg.op_timeout;
        let deadline = Instant::now() + timeout;
        let queue = &mut self.queues[q];
        if needed > queue.ring.size() {
            return Err(GuestError::RingFull {
                queue: queue.ring.index(),
                needed,
                free: queue.ring.num_free(),
            });
        }
        loop {
            if queue.ring.num_free() >= needed {
                return Ok(());
            }
            if queue.reap(&self.ram)? > 0 {
                continue;
            }
            queue
                .ring
                .wait_used(&self.ram, 0, deadline, "send (ring full)", timeout)?;
        }
    }

    /// Copies `hdr` + `frame` into the next head's buffer and adds the chain (unpublished).
    fn add_tx_chain(
        &mut self,
        q: usize,
        hdr: &VirtioNetHdr,
        frame: &[u8],
        layout: TxLayout,
    ) -> Result<u16, GuestError> {
        let min_capacity = self.cfg.tx_buf_len;
        let queue = &mut self.queues[q];
        let head = queue.ring.next_free_head().ok_or(GuestError::RingFull {
            queue: queue.ring.index(),
            needed: 1,
            free: 0,
        })?;
        // Bounded by MAX_TX_LEN in `tx_descs_needed`.
        let total = (VIRTIO_NET_HDR_LEN + frame.len()) as u32;
        let base = queue.slot(&mut self.ram, head, total, min_capacity)?;
        self.ram.write(GuestAddress(base), &hdr.to_bytes())?;
        self.ram
            .write(GuestAddress(base + u64::from(HDR_LEN)), frame)?;

        let (count, frame_parts) = tx_pieces(frame.len(), layout);
        let mut segments = [Segment {
            addr: GuestAddress(base),
            len: 0,
            device_writable: false,
        }; MAX_CHAIN];
        let mut n = 0;
        let mut offset = 0u64;
        if layout.header_separate {
            segments[0].len = HDR_LEN;
            offset = u64::from(HDR_LEN);
            n = 1;
        }
        for part in 0..frame_parts {
            let mut len = piece_len(frame.len(), frame_parts, part) as u32;
            if part == 0 && !layout.header_separate {
                len += HDR_LEN;
            }
            segments[n] = Segment {
                addr: GuestAddress(base + offset),
                len,
                device_writable: false,
            };
            offset += u64::from(len);
            n += 1;
        }
        debug_assert_eq!(n, count);
        let queue = &mut self.queues[q];
        if layout.indirect {
            queue.ring.add_indirect(&mut self.ram, &segments[..n])
        } else {
            queue.ring.add_chain(&self.ram, &segments[..n])
        }
    }

    /// Receives one packet from pair `qp` if a complete one is there, re-posting its buffers.
    pub fn recv(&mut self, qp: u16) -> Result<Option<(VirtioNetHdr, Vec<u8>)>, GuestError> {
        let mut frame = Vec::new();
        Ok(self.recv_into(qp, &mut frame)?.map(|hdr| (hdr, frame)))
    }

    /// Like [`VirtualGuest::recv`], but into a reused buffer (cleared first): no allocation
    /// once `frame` has grown to the largest packet.
    pub fn recv_into(
        &mut self,
        qp: u16,
        frame: &mut Vec<u8>,
    ) -> Result<Option<VirtioNetHdr>, GuestError> {
        let q = self.rx_index(qp)?;
        let mergeable = self.mergeable();
        let queue = &mut self.queues[q];
        loop {
            let Some((num_buffers, pending)) = queue.next_packet(&self.ram, mergeable)? else {
                return Ok(None);
            };
            if queue.ring.peek_used(&self.ram, 0)?.raw {
                queue.ring.pop_used(&self.ram)?;
                continue;
            }
            if num_buffers == 0 || num_buffers > queue.ring.size() {
                queue.drop_one(&self.ram)?;
                return Err(GuestError::NumBuffersOutOfRange {
                    queue: queue.ring.index(),
                    num_buffers,
                    max: queue.ring.size(),
                });
            }
            if pending < num_buffers {
                // The device publishes buffers of a merged packet one by one.
                return Ok(None);
            }
            frame.clear();
            let mut header = [0u8; VIRTIO_NET_HDR_LEN];
            queue.take_packet(&self.ram, num_buffers, |ram, addr, len, first| {
                let (skip, len) = if first {
                    ram.read(GuestAddress(addr), &mut header)?;
                    (u64::from(HDR_LEN), len - HDR_LEN)
                } else {
                    (0, len)
                };
                let start = frame.len();
                frame.resize(start + len as usize, 0);
                ram.read(GuestAddress(addr + skip), &mut frame[start..])
            })?;
            queue.ring.publish(&self.ram)?;
            queue.ring.kick_if_needed(&self.ram)?;
            return Ok(Some(VirtioNetHdr::from_bytes(&header)));
        }
    }

    /// Waits until a complete packet is ready on pair `qp`, or `Timeout`.
    pub fn wait_rx(&mut self, qp: u16, timeout: Duration) -> Result<(), GuestError> {
        let q = self.rx_index(qp)?;
        let mergeable = self.mergeable();
        let deadline = Instant::now() + timeout;
        let queue = &mut self.queues[q];
        loop {
            let have = match queue.next_packet(&self.ram, mergeable)? {
                // An impossible `num_buffers` is "ready" too: `recv` reports it.
                Some((needed, pending))
                    if pending >= needed || needed == 0 || needed > queue.ring.size() =>
                {
                    return Ok(())
                }
                Some((_, pending)) => pending,
                None => 0,
            };
            queue
                .ring
                .wait_used(&self.ram, have, deadline, "wait_rx", timeout)?;
        }
    }

    /// Waits up to `timeout` for a packet on pair `qp` and receives it.
    pub fn recv_timeout(
        &mut self,
        qp: u16,
        timeout: Duration,
    ) -> Result<(VirtioNetHdr, Vec<u8>), GuestError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(packet) = self.recv(qp)? {
                return Ok(packet);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_rx(qp, left) {
                Err(GuestError::Timeout { op, queue, .. }) => {
                    return Err(GuestError::Timeout { op, queue, timeout })
                }
                other => other?,
            }
        }
    }

    /// Benchmark fast path: counts every complete packet on pair `qp`, re-posts the buffers,
    /// publishes once and kicks at most once. Copies nothing, allocates nothing.
    pub fn recv_count(&mut self, qp: u16) -> Result<RxBurst, GuestError> {
        let q = self.rx_index(qp)?;
        let mergeable = self.mergeable();
        let queue = &mut self.queues[q];
        let mut burst = RxBurst::default();
        let result = loop {
            let (num_buffers, pending) = match queue.next_packet(&self.ram, mergeable) {
                Ok(Some(next)) => next,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if num_buffers == 0 || num_buffers > queue.ring.size() {
                let _ = queue.drop_one(&self.ram);
                break Err(GuestError::NumBuffersOutOfRange {
                    queue: queue.ring.index(),
                    num_buffers,
                    max: queue.ring.size(),
                });
            }
            if pending < num_buffers {
                break Ok(());
            }
            let mut bytes = 0u64;
            if let Err(e) = queue.take_packet(&self.ram, num_buffers, |_, _, len, first| {
                bytes += u64::from(if first { len - HDR_LEN } else { len });
                Ok(())
            }) {
                break Err(e);
            }
            burst.packets += 1;
            burst.bytes += bytes;
        };
        queue.ring.publish(&self.ram)?;
        queue.ring.kick_if_needed(&self.ram)?;
        result.map(|()| burst)
    }
}

/// Descriptors for a frame of `frame_len` bytes under `layout`: (total, frame pieces).
fn tx_pieces(frame_len: usize, layout: TxLayout) -> (usize, usize) {
    let wanted = usize::from(layout.frame_segments.max(1));
    // Never a zero-length piece: at most one piece per byte (an empty frame still gets one
    // piece when the header shares it).
    let frame_parts = if layout.header_separate {
        wanted.min(frame_len)
    } else {
        wanted.min(frame_len.max(1))
    };
    let total = frame_parts + usize::from(layout.header_separate);
    (
        total.min(MAX_CHAIN),
        frame_parts.min(MAX_CHAIN - usize::from(layout.header_separate)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_frame() {
        for (len, parts) in [(0usize, 3usize), (1, 1), (10, 3), (1514, 4), (7, 7)] {
            let total: usize = (0..parts).map(|i| piece_len(len, parts, i)).sum();
            assert_eq!(total, len, "len {len} parts {parts}");
        }
    }

    #[test]
    fn layouts_count_descriptors() {
        assert_eq!(tx_pieces(60, TxLayout::CONTIGUOUS), (1, 1));
        assert_eq!(tx_pieces(60, TxLayout::HEADER_SEPARATE), (2, 1));
        assert_eq!(tx_pieces(0, TxLayout::HEADER_SEPARATE), (1, 0));
        let split = TxLayout {
            frame_segments: 200,
            ..TxLayout::HEADER_SEPARATE
        };
        // Capped at one piece per byte, then at the chain limit.
        assert_eq!(tx_pieces(3, split), (4, 3));
        assert_eq!(tx_pieces(1000, split), (MAX_CHAIN, MAX_CHAIN - 1));
    }
}
