//! Transmit for one VID: frames from the segment, made wire-ready and tagged, batched until the
//! sender's end-of-burst `wake`, then sent with one `sendmmsg(2)` per [`socket::BATCH`] frames.
//!
//! The parent takes neither partial checksums nor GSO frames (vif writes raw frames to it), so
//! [`TxBatch::push`] asks `offload::rx_plan` what a receiver without offloads
//! (`RxOffloadCaps::NONE`) must get: the frame as is, with its checksum completed, or segmented
//! in software into MTU-sized frames with full checksums.
//!
//! Each frame is copied once, into the batch arena at [`vlan::TAG_LEN`] bytes past its slot,
//! and `wire::vlan::push_tag` then moves the MAC addresses into that headroom and writes the tag
//! (IEEE 802.1Q-2018 § 9.3). The arena is allocated once with fixed capacity.
//!
//! [`socket::BATCH`]: super::socket::BATCH

use vif_core::mac::MacAddr;
use vif_core::offload::{
    complete_csum, rx_plan, RxOffloadCaps, RxPlan, RxSource, Segmenter, TxOffload,
};
use vif_core::stats::{CastKind, DropReason, StatsBatch};
use vif_core::wire::vlan::{self, VlanRepr};

use super::socket::PacketSocket;
use crate::port::FrameRef;

/// Bytes of tagged frames one batch holds.
pub const TX_BATCH_BYTES: usize = 512 * 1024;
/// Frames one batch holds.
pub const TX_BATCH_FRAMES: usize = 512;

/// Where one tagged frame sits in the arena.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    len: usize,
}

/// The frames waiting for the next flush of one VID.
pub struct TxBatch {
    tag: VlanRepr,
    /// The longest untagged frame the parent carries with the tag counted against its MTU.
    max_untagged_len: usize,
    arena: Vec<u8>,
    slots: Vec<Slot>,
    segmenter: Segmenter,
    /// Counts since the last publish: packets sent, and drops found at flush.
    pub stats: StatsBatch,
}

/// Why a frame did not go into the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The arena is full: flush, then push again.
    Full,
    Drop(DropReason),
}

impl TxBatch {
    pub fn new(tag: VlanRepr, max_untagged_len: usize) -> TxBatch {
        TxBatch {
            tag,
            max_untagged_len,
            arena: Vec::with_capacity(TX_BATCH_BYTES),
            slots: Vec::with_capacity(TX_BATCH_FRAMES),
            // One TSO super-frame's segments at a time.
            segmenter: Segmenter::with_capacity(128 * 1024, 64),
            stats: StatsBatch::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    fn fits(&self, frames: usize, bytes: usize) -> bool {
        fits(&self.arena, &self.slots, frames, bytes)
    }

    /// Makes `frame` wire-ready, tags it and queues it (all its segments, or none).
    pub fn push(&mut self, frame: FrameRef<'_>) -> Result<(), PushError> {
        match rx_plan(RxSource::Offload(&frame.offload), &RxOffloadCaps::NONE) {
            RxPlan::Deliver(_) => {
                self.check_len(frame.bytes.len())?;
                if !self.fits(1, frame.bytes.len()) {
                    return Err(PushError::Full);
                }
                self.append(frame.bytes, None)
            }
            RxPlan::CompleteCsumThen { csum, .. } => {
                self.check_len(frame.bytes.len())?;
                if !self.fits(1, frame.bytes.len()) {
                    return Err(PushError::Full);
                }
                self.append(frame.bytes, Some(csum))
            }
            RxPlan::Segment { csum } => {
                let TxOffload::Gso(gso) = frame.offload else {
                    return Err(PushError::Drop(DropReason::Malformed));
                };
                let segments = self
                    .segmenter
                    .segment(frame.bytes, &gso, csum)
                    .map_err(|_| PushError::Drop(DropReason::Malformed))?;
                let total: usize = segments.iter().map(<[u8]>::len).sum();
                let longest = segments.iter().map(<[u8]>::len).max().unwrap_or(0);
                if longest > self.max_untagged_len {
                    return Err(PushError::Drop(DropReason::MtuExceeded));
                }
                let TxBatch {
                    tag, arena, slots, ..
                } = self;
                if !fits(arena, slots, segments.len(), total) {
                    return Err(PushError::Full);
                }
                for segment in segments.iter() {
                    append_tagged(arena, slots, *tag, segment, None)?;
                }
                Ok(())
            }
        }
    }

    fn check_len(&self, len: usize) -> Result<(), PushError> {
        if len > self.max_untagged_len {
            return Err(PushError::Drop(DropReason::MtuExceeded));
        }
        Ok(())
    }

    fn append(
        &mut self,
        bytes: &[u8],
        csum: Option<vif_core::offload::CsumRange>,
    ) -> Result<(), PushError> {
        append_tagged(&mut self.arena, &mut self.slots, self.tag, bytes, csum)
    }

    /// Sends every queued frame and empties the batch. Frames the parent refused (its queue
    /// full) are counted as `UplinkError` drops.
    pub fn flush(&mut self, socket: &PacketSocket) {
        if self.slots.is_empty() {
            return;
        }
        let TxBatch {
            arena,
            slots,
            stats,
            ..
        } = self;
        let frames = slots.iter().map(|slot| {
            arena
                .get(slot.start..slot.start + slot.len)
                .unwrap_or_default()
        });
        let (sent, error) = socket.send_frames(frames);
        for slot in slots.iter().take(sent) {
            let frame = arena
                .get(slot.start..slot.start + slot.len)
                .unwrap_or_default();
            let cast = MacAddr::from_bytes(frame).map_or(CastKind::Unicast, CastKind::of);
            stats.record_packet(slot.len, cast);
        }
        for _ in sent..slots.len() {
            stats.record_drop(DropReason::UplinkError);
        }
        if let Some(error) = error {
            // Per-flush, not per-frame, and only when frames were lost.
            log::debug!(
                "vlan tx: {} frame(s) not sent: {error}",
                slots.len().saturating_sub(sent)
            );
        }
        arena.clear();
        slots.clear();
    }
}

/// Whether `frames` more frames of `bytes` untagged bytes in total fit the arena.
fn fits(arena: &[u8], slots: &[Slot], frames: usize, bytes: usize) -> bool {
    let tagged = bytes.saturating_add(frames.saturating_mul(vlan::TAG_LEN));
    slots.len().saturating_add(frames) <= TX_BATCH_FRAMES
        && arena.len().saturating_add(tagged) <= TX_BATCH_BYTES
}

/// Copies `bytes` into the arena with headroom, completes its checksum if asked, and pushes
/// the tag. Nothing stays in the arena on error.
fn append_tagged(
    arena: &mut Vec<u8>,
    slots: &mut Vec<Slot>,
    tag: VlanRepr,
    bytes: &[u8],
    csum: Option<vif_core::offload::CsumRange>,
) -> Result<(), PushError> {
    let start = arena.len();
    let body = start + vlan::TAG_LEN;
    arena.resize(body, 0);
    arena.extend_from_slice(bytes);
    let result = (|| {
        let frame = arena.get_mut(body..).ok_or(DropReason::Malformed)?;
        if let Some(csum) = csum {
            complete_csum(frame, csum).map_err(|_| DropReason::Malformed)?;
        }
        let tagged_start =
            vlan::push_tag(arena, body, bytes.len(), tag).map_err(|_| DropReason::Malformed)?;
        Ok::<usize, DropReason>(tagged_start)
    })();
    match result {
        Ok(tagged_start) => {
            slots.push(Slot {
                start: tagged_start,
                len: bytes.len() + vlan::TAG_LEN,
            });
            Ok(())
        }
        Err(reason) => {
            arena.truncate(start);
            Err(PushError::Drop(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vif_core::ids::VlanId;

    fn tag() -> VlanRepr {
        VlanRepr::c_tag(Some(VlanId::new(100).unwrap()), 5)
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    }

    fn plain(bytes: &[u8]) -> FrameRef<'_> {
        FrameRef {
            offload: TxOffload::None,
            bytes,
        }
    }

    #[test]
    fn tags_in_place_and_bounds_the_frame() {
        let mut batch = TxBatch::new(tag(), 1510);
        let f = frame(60);
        batch.push(plain(&f)).unwrap();
        let slot = batch.slots[0];
        let tagged = &batch.arena[slot.start..slot.start + slot.len];
        assert_eq!(tagged.len(), 64);
        assert_eq!(&tagged[..12], &f[..12]);
        assert_eq!(
            &tagged[12..16],
            &[0x81, 0x00, 0xa0, 0x64],
            "TPID, PCP 5 VID 100"
        );
        assert_eq!(&tagged[16..], &f[12..]);
        assert_eq!(
            batch.push(plain(&frame(1511))),
            Err(PushError::Drop(DropReason::MtuExceeded))
        );
        batch.push(plain(&frame(1510))).unwrap();
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn fills_up_then_says_full() {
        let mut batch = TxBatch::new(tag(), 9000);
        let f = frame(60);
        for _ in 0..TX_BATCH_FRAMES {
            batch.push(plain(&f)).unwrap();
        }
        assert_eq!(batch.push(plain(&f)), Err(PushError::Full));
    }

    #[test]
    fn a_frame_without_ethernet_header_is_dropped_not_half_queued() {
        let mut batch = TxBatch::new(tag(), 1510);
        assert_eq!(
            batch.push(plain(&[0u8; 10])),
            Err(PushError::Drop(DropReason::Malformed))
        );
        assert!(batch.is_empty() && batch.arena.is_empty());
    }
}
