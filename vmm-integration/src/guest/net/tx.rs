//! The transmit side (VIRTIO 1.2 § 5.1.6.2): header + frame copied into the head's buffer and
//! described in one of several descriptor layouts, batches with a single kick, the zero-copy
//! burst path, and reclaiming completed chains.

use std::time::{Duration, Instant};

use vif_core::offload::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use vm_memory::GuestAddress;

use super::{PreparedFrame, HDR_LEN};
use crate::guest::config::{feature, TxLayout};
use crate::guest::error::GuestError;
use crate::guest::vring::{Segment, MAX_CHAIN};
use crate::guest::VirtualGuest;

/// Largest header + frame `send` accepts; hostile sizes go through the raw API.
pub const MAX_TX_LEN: usize = 1 << 20;

impl VirtualGuest {
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

        let (_, frame_parts) = tx_pieces(frame.len(), layout);
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
        let queue = &mut self.queues[q];
        if layout.indirect {
            queue.ring.add_indirect(&mut self.ram, &segments[..n])
        } else {
            queue.ring.add_chain(&self.ram, &segments[..n])
        }
    }
}

/// Splits `total` bytes into `parts` near-equal lengths, the larger ones first.
fn piece_len(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
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
