//! The receive side (VIRTIO 1.2 § 5.1.6.3–4): posting device-writable buffers and assembling
//! each packet from the `num_buffers` used buffers it spans (one without `MRG_RXBUF`), then
//! re-posting them unchanged. Lengths the device reports are checked against what was posted.

use std::time::{Duration, Instant};

use vif_core::offload::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use vm_memory::GuestAddress;

use super::{NetQueue, RxBurst, HDR_LEN};
use crate::guest::error::GuestError;
use crate::guest::memory::GuestRam;
use crate::guest::vring::{Segment, MAX_CHAIN};
use crate::guest::VirtualGuest;

/// Offset of `num_buffers` in `virtio_net_hdr_v1` (VIRTIO 1.2 § 5.1.6).
const NUM_BUFFERS_OFFSET: u64 = 10;

impl NetQueue {
    /// Buffers the next received packet needs (`num_buffers`, or 1 without `MRG_RXBUF`) and
    /// how many used elements are pending. `None` when nothing is pending.
    fn next_packet(
        &mut self,
        ram: &GuestRam,
        mergeable: bool,
    ) -> Result<Option<(u16, u16)>, GuestError> {
        let pending = self.ring.pending_at_least(ram, 1)?;
        if pending == 0 {
            return Ok(None);
        }
        let first = self.ring.peek_used(ram, 0)?;
        if first.raw || !mergeable {
            return Ok(Some((1, pending)));
        }
        let at = GuestAddress(self.slot_addr(first.id) + NUM_BUFFERS_OFFSET);
        let num_buffers = u16::from_le_bytes(ram.read_obj::<[u8; 2]>(at)?);
        let pending = self.ring.pending_at_least(ram, num_buffers)?;
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

impl VirtualGuest {
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
        self.post_rx_chains(qp, count, &[buf_len])
    }

    /// Posts up to `count` RX buffers, each a chain of device-writable descriptors of the given
    /// lengths over one contiguous buffer: Linux's "big packets" layout without `MRG_RXBUF`
    /// (a header descriptor, then page-sized ones). Returns how many chains were posted.
    pub fn post_rx_chains(
        &mut self,
        qp: u16,
        count: u16,
        segment_lens: &[u32],
    ) -> Result<u16, GuestError> {
        if segment_lens.is_empty() || segment_lens.len() > MAX_CHAIN {
            return Err(GuestError::TooManySegments {
                segments: segment_lens.len(),
                max: MAX_CHAIN,
            });
        }
        let total = segment_lens
            .iter()
            .try_fold(0u32, |sum, len| sum.checked_add(*len))
            .filter(|total| *total >= HDR_LEN)
            .ok_or(GuestError::RxBufferTooSmall {
                len: segment_lens
                    .iter()
                    .fold(0u32, |sum, len| sum.saturating_add(*len)),
                min: HDR_LEN,
            })?;
        let q = self.rx_index(qp)?;
        let queue = &mut self.queues[q];
        let mut segments = [Segment {
            addr: GuestAddress(0),
            len: 0,
            device_writable: true,
        }; MAX_CHAIN];
        let n = segment_lens.len();
        let mut posted = 0;
        while posted < count && usize::from(queue.ring.num_free()) >= n {
            let Some(head) = queue.ring.next_free_head() else {
                break;
            };
            let mut addr = queue.slot(&mut self.ram, head, total, total)?;
            queue.slots[usize::from(head)].posted = total;
            for (segment, len) in segments.iter_mut().zip(segment_lens) {
                *segment = Segment {
                    addr: GuestAddress(addr),
                    len: *len,
                    device_writable: true,
                };
                addr += u64::from(*len);
            }
            queue.ring.add_chain(&self.ram, &segments[..n])?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use vm_memory::Le64;

    /// One posted RX buffer of `len` bytes on a fresh queue.
    fn queue_with_buffer(len: u32) -> (GuestRam, NetQueue, u16) {
        let mut ram = GuestRam::new(0x10_0000, 1 << 20).unwrap();
        let mut queue = NetQueue::new(0, 8, &mut ram, false).unwrap();
        let head = queue.ring.next_free_head().unwrap();
        let addr = queue.slot(&mut ram, head, len, len).unwrap();
        queue.slots[usize::from(head)].posted = len;
        let segment = Segment {
            addr: GuestAddress(addr),
            len,
            device_writable: true,
        };
        queue.ring.add_chain(&ram, &[segment]).unwrap();
        queue.ring.publish(&ram).unwrap();
        (ram, queue, head)
    }

    /// Plays a device that reports `len` bytes written into `head`.
    fn device_use(ram: &GuestRam, queue: &NetQueue, head: u16, len: u32) {
        let used = queue.ring.used_ring();
        let elem = Le64::from(u64::from(head) | (u64::from(len) << 32));
        ram.write_obj(elem, GuestAddress(used.0 + 4)).unwrap();
        ram.store(1u16, GuestAddress(used.0 + 2), Ordering::Release)
            .unwrap();
    }

    #[test]
    fn used_len_past_the_buffer_is_an_error_and_the_buffer_is_reposted() {
        let (ram, mut queue, head) = queue_with_buffer(1526);
        device_use(&ram, &queue, head, 4096);
        let err = queue.take_packet(&ram, 1, |_, _, _, _| Ok(())).unwrap_err();
        assert!(matches!(
            err,
            GuestError::UsedLenTooLarge {
                len: 4096,
                posted: 1526,
                ..
            }
        ));
        assert_eq!(queue.ring.in_flight(), 1);
    }

    #[test]
    fn first_buffer_shorter_than_the_header_is_an_error() {
        let (ram, mut queue, head) = queue_with_buffer(1526);
        device_use(&ram, &queue, head, 11);
        let err = queue.take_packet(&ram, 1, |_, _, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, GuestError::UsedLenTooShort { len: 11, .. }));
    }

    #[test]
    fn mergeable_num_buffers_is_read_from_the_header() {
        let (ram, mut queue, head) = queue_with_buffer(1526);
        // virtio_net_hdr_v1 with num_buffers = 3 (bytes 10..12, little-endian).
        let addr = queue.slot_addr(head);
        ram.write(GuestAddress(addr + 10), &3u16.to_le_bytes())
            .unwrap();
        device_use(&ram, &queue, head, 100);
        // Three buffers announced, one used so far: not complete.
        assert_eq!(queue.next_packet(&ram, true).unwrap(), Some((3, 1)));
        assert_eq!(queue.next_packet(&ram, false).unwrap(), Some((1, 1)));
    }
}
