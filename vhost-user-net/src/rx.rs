//! Receive: frames from the VIF's inbox → guest RX descriptor chains.
//!
//! For each frame, `vif_core::offload::rx_plan` decides what the guest may take (VIRTIO 1.2
//! § 5.1.6.4): as is, with its partial checksum completed first (the guest did not ack
//! `GUEST_CSUM`), or segmented first (it did not ack the `GUEST_TSO*` the frame needs).
//!
//! - With `MRG_RXBUF` a frame spreads over as many chains as it needs, and `num_buffers` in the
//!   first chain's header says how many (§ 5.1.6.3.1). The header is written last, once the
//!   count is known, through the guest address recorded when the first chain was walked, while
//!   the same guest-memory guard is still held: nothing is written through a mapping that could
//!   have gone away (QEMU CVE-2021-3748 wrote `num_buffers` after unmapping).
//! - Without it, one chain per frame; a frame that does not fit is a counted
//!   `RxBufferTooSmall` drop, and the chain is put back for the next frame.
//!
//! Each chain is walked once: its writable descriptors are checked (device-writable only, inside
//! guest memory, bounded count) into a local list, and only that list is written through. A bad
//! chain is returned with length 0 and counted as `QueueError`.
//!
//! Before a frame is written, the receiving VIF's policy judges it ([`RxPath::deliver_with`]):
//! the ingress ACL and the receive rate limit; a refused frame is a counted drop (`AclDeny`,
//! `RateLimited`). A frame is judged once even if it waits for buffers (the backlog remembers).
//!
//! When the ring runs dry mid-frame, every chain taken for that frame is put back
//! (`go_to_previous_position`) and the frame stays first in the backlog: the caller enables RX
//! notifications and retries on the guest's next RX kick. The backlog is the caller's bounded
//! arena, so waiting costs no memory beyond it (senders see a full inbox and count drops).

use vif_core::mac::MacAddr;
use vif_core::offload::{
    complete_csum, rx_plan, RxOffloadCaps, RxPlan, RxSource, Segmenter, TxOffload, VirtioNetHdr,
    VIRTIO_NET_HDR_LEN,
};
use vif_core::stats::{CastKind, DropReason, StatsBatch};
use virtio_queue::{AvailIter, Error as QueueErr, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::device::Negotiated;
use crate::inbox::FrameArena;
use crate::policy::PolicyBurst;

/// Chains filled per wake-up before yielding to the thread's other queues.
pub const RX_BUDGET: usize = 256;
/// Most writable descriptors one RX chain may have; longer chains (an indirect table can hold
/// 65535) are refused so the per-chain list never grows past its first allocation.
pub const MAX_RX_DESCRIPTORS: usize = 256;

/// What one RX pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxOutcome {
    pub frames: usize,
    pub chains: usize,
    /// The guest ran out of buffers with frames left: wait for its RX kick.
    pub starved: bool,
    /// The budget ran out with frames left: process again without waiting.
    pub budget_exhausted: bool,
    /// The avail index is impossible: stop serving this queue until reset.
    pub broken: bool,
}

/// A checked, writable span of guest memory.
#[derive(Debug, Clone, Copy)]
struct Span {
    addr: GuestAddress,
    len: usize,
}

/// Why one frame was not (fully) delivered.
enum Fill {
    Delivered,
    /// Out of chains: everything taken for the frame was put back.
    Starved,
    Dropped(DropReason),
}

/// Per-queue RX state, owned by one worker thread; allocated once.
pub struct RxPath {
    segmenter: Segmenter,
    spans: Vec<Span>,
    /// Where the first chain's 12 header bytes go (at most 12 one-byte spans).
    header_spans: Vec<Span>,
    /// The chains taken for the frame being written: head, bytes written, and whether it was bad.
    frame_chains: Vec<(u16, u32, bool)>,
    used: Vec<(u16, u32)>,
    pub batch: StatsBatch,
}

impl RxPath {
    pub fn new() -> RxPath {
        RxPath {
            segmenter: Segmenter::with_capacity(1 << 17, 64),
            spans: Vec::with_capacity(MAX_RX_DESCRIPTORS),
            header_spans: Vec::with_capacity(VIRTIO_NET_HDR_LEN),
            frame_chains: Vec::with_capacity(RX_BUDGET),
            used: Vec::with_capacity(RX_BUDGET * 2),
            batch: StatsBatch::new(),
        }
    }

    /// Writes frames from `backlog` into `queue` until the backlog, the guest's buffers or the
    /// budget run out. Delivered (or dropped) frames leave the backlog; the rest stay.
    pub fn deliver(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
        backlog: &mut FrameArena,
        negotiated: Negotiated,
    ) -> RxOutcome {
        self.deliver_with(queue, mem, backlog, negotiated, &mut PolicyBurst::none())
    }

    /// [`RxPath::deliver`], with the receiving VIF's `policy` judging each frame first.
    pub fn deliver_with(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
        backlog: &mut FrameArena,
        negotiated: Negotiated,
        policy: &mut PolicyBurst<'_>,
    ) -> RxOutcome {
        let mut outcome = RxOutcome::default();
        let caps = RxOffloadCaps::from_features(negotiated.bits());
        let mergeable = negotiated.mrg_rxbuf();
        self.used.clear();
        {
            let mut chains = match queue.iter(mem) {
                Ok(chains) => chains,
                Err(QueueErr::InvalidAvailRingIndex) => {
                    self.batch.record_drop(DropReason::QueueError);
                    outcome.broken = true;
                    return outcome;
                }
                Err(_) => return outcome,
            };
            while !backlog.is_empty() {
                if self.used.len() >= RX_BUDGET {
                    outcome.budget_exhausted = true;
                    break;
                }
                if !policy.is_idle() && !backlog.head_judged() {
                    let judged = backlog.peek().map(|frame| policy.judge_rx(frame.bytes));
                    if let Some(Err(reason)) = judged {
                        self.batch.record_drop(reason);
                        backlog.advance();
                        continue;
                    }
                    backlog.mark_head_judged();
                }
                let Some((offload, frame)) = backlog.peek_mut() else {
                    break;
                };
                let cast = MacAddr::from_bytes(frame).map_or(CastKind::Unicast, CastKind::of);
                match self.fill_planned(&mut chains, mem, offload, frame, &caps, mergeable, cast) {
                    Fill::Delivered => outcome.frames += 1,
                    Fill::Dropped(reason) => self.batch.record_drop(reason),
                    Fill::Starved => {
                        outcome.starved = true;
                        break;
                    }
                }
                backlog.advance();
            }
        }
        outcome.chains = self.used.len();
        for &(head, len) in &self.used {
            if queue.add_used(mem, head, len).is_err() {
                self.batch.record_drop(DropReason::QueueError);
            }
        }
        outcome
    }

    /// Applies the receive plan to one frame and writes the result.
    #[allow(clippy::too_many_arguments)]
    fn fill_planned(
        &mut self,
        chains: &mut AvailIter<'_, &GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
        offload: TxOffload,
        frame: &mut [u8],
        caps: &RxOffloadCaps,
        mergeable: bool,
        cast: CastKind,
    ) -> Fill {
        match rx_plan(RxSource::Offload(&offload), caps) {
            RxPlan::Deliver(hdr) => self.fill_counted(chains, mem, hdr, frame, mergeable, cast),
            RxPlan::CompleteCsumThen { csum, hdr } => {
                if complete_csum(frame, csum).is_err() {
                    return Fill::Dropped(DropReason::BadOffload);
                }
                self.fill_counted(chains, mem, hdr, frame, mergeable, cast)
            }
            RxPlan::Segment { csum } => {
                let TxOffload::Gso(gso) = offload else {
                    return Fill::Dropped(DropReason::BadOffload);
                };
                // Move the segmenter out so its output can be borrowed while `self` writes.
                let mut segmenter = std::mem::take(&mut self.segmenter);
                let result = match segmenter.segment(frame, &gso, csum) {
                    Ok(segments) => {
                        let hdr = segments.virtio_hdr();
                        let mut result = Fill::Delivered;
                        for segment in segments.iter() {
                            match self.fill_counted(chains, mem, hdr, segment, mergeable, cast) {
                                Fill::Delivered => {}
                                // Segments already delivered stay delivered; the rest of this
                                // super-frame is dropped (TCP retransmits), not retried, so a
                                // half-delivered frame is never delivered twice.
                                Fill::Starved => {
                                    result = Fill::Dropped(DropReason::NoRxBuffer);
                                    break;
                                }
                                dropped @ Fill::Dropped(_) => {
                                    result = dropped;
                                    break;
                                }
                            }
                        }
                        result
                    }
                    Err(_) => Fill::Dropped(DropReason::BadOffload),
                };
                self.segmenter = segmenter;
                result
            }
        }
    }

    /// [`RxPath::fill`], counting a delivered frame.
    fn fill_counted(
        &mut self,
        chains: &mut AvailIter<'_, &GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
        hdr: VirtioNetHdr,
        frame: &[u8],
        mergeable: bool,
        cast: CastKind,
    ) -> Fill {
        let result = self.fill(chains, mem, hdr, frame, mergeable);
        if let Fill::Delivered = result {
            self.batch.record_packet(frame.len(), cast);
        }
        result
    }

    /// Writes `hdr` and `frame` into as many chains as needed (one without `MRG_RXBUF`).
    fn fill(
        &mut self,
        chains: &mut AvailIter<'_, &GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
        mut hdr: VirtioNetHdr,
        frame: &[u8],
        mergeable: bool,
    ) -> Fill {
        let Some(total) = frame.len().checked_add(VIRTIO_NET_HDR_LEN) else {
            return Fill::Dropped(DropReason::MtuExceeded);
        };
        self.frame_chains.clear();
        self.header_spans.clear();
        let mut written = 0usize; // of the frame
        let mut good_chains: u16 = 0;
        while written < frame.len() || good_chains == 0 {
            let Some(chain) = chains.next() else {
                self.put_back(chains);
                return Fill::Starved;
            };
            let head = chain.head_index();
            if !collect_writable(chain, mem, &mut self.spans) {
                self.reject(head, good_chains);
                continue;
            }
            let capacity: usize = self.spans.iter().map(|span| span.len).sum();
            let mut offset = 0usize; // in this chain
            if good_chains == 0 {
                // The header goes at the start of the first chain (§ 5.1.6.3).
                if capacity < VIRTIO_NET_HDR_LEN {
                    self.reject(head, good_chains);
                    continue;
                }
                if !mergeable && capacity < total {
                    // Put this chain back for a smaller frame; this one cannot be delivered.
                    chains.go_to_previous_position();
                    self.frame_chains.clear();
                    return Fill::Dropped(DropReason::RxBufferTooSmall);
                }
                record_header_spans(&self.spans, &mut self.header_spans);
                offset = VIRTIO_NET_HDR_LEN;
            }
            let rest = frame.get(written..).unwrap_or_default();
            let chunk = rest
                .get(..rest.len().min(capacity.saturating_sub(offset)))
                .unwrap_or_default();
            if write_spans(mem, &self.spans, offset, chunk).is_err() {
                self.reject(head, good_chains);
                continue;
            }
            written += chunk.len();
            // offset + chunk <= capacity <= u32::MAX (descriptor lengths are u32 and
            // `collect_writable` checked the sum).
            let used_len = u32::try_from(offset + chunk.len()).unwrap_or(u32::MAX);
            self.frame_chains.push((head, used_len, false));
            good_chains = good_chains.saturating_add(1);
            if !mergeable {
                break;
            }
        }
        // VIRTIO 1.2 § 5.1.6.3.1: num_buffers is 1 without MRG_RXBUF, else the chains used.
        hdr.num_buffers = if mergeable { good_chains } else { 1 };
        if write_spans(mem, &self.header_spans, 0, &hdr.to_bytes()).is_err() {
            // Checked when the chain was walked; cannot fail while we hold the memory guard.
            self.batch.record_drop(DropReason::QueueError);
        }
        for &(head, len, bad) in &self.frame_chains {
            if bad {
                self.batch.record_drop(DropReason::QueueError);
            }
            self.used.push((head, len));
        }
        Fill::Delivered
    }

    /// A bad chain. Before the frame's first good chain it is returned at once (length 0), so a
    /// ring holding only bad chains is drained rather than re-walked forever; after it, the
    /// chain stays with the frame so a rewind on starvation stays exact, and is returned (and
    /// counted) when the frame completes.
    fn reject(&mut self, head: u16, good_chains: u16) {
        if good_chains == 0 {
            self.batch.record_drop(DropReason::QueueError);
            self.used.push((head, 0));
        } else {
            self.frame_chains.push((head, 0, true));
        }
    }

    /// Puts back every chain taken for the current frame.
    fn put_back(&mut self, chains: &mut AvailIter<'_, &GuestMemoryMmap>) {
        for _ in self.frame_chains.drain(..) {
            chains.go_to_previous_position();
        }
    }
}

impl Default for RxPath {
    fn default() -> Self {
        RxPath::new()
    }
}

/// Walks an RX chain once into `spans`. `false` for a bad chain: a device-readable descriptor
/// (receive buffers are device-writable, VIRTIO 1.2 § 5.1.6.3), a range outside guest memory, more
/// than [`MAX_RX_DESCRIPTORS`] descriptors, a total over `u32::MAX`, or a chain cut short by a
/// loop, a bad `next` or a bad indirect table (its last descriptor still says `NEXT`).
fn collect_writable<I>(chain: I, mem: &GuestMemoryMmap, spans: &mut Vec<Span>) -> bool
where
    I: Iterator<Item = virtio_queue::desc::split::Descriptor>,
{
    spans.clear();
    let mut total: u32 = 0;
    let mut last_has_next = false;
    let mut descriptors = 0usize;
    for desc in chain {
        descriptors += 1;
        last_has_next = desc.has_next();
        if !desc.is_write_only() || spans.len() >= MAX_RX_DESCRIPTORS {
            return false;
        }
        let Some(sum) = total.checked_add(desc.len()) else {
            return false;
        };
        total = sum;
        let Ok(len) = usize::try_from(desc.len()) else {
            return false;
        };
        if len == 0 {
            continue;
        }
        if !GuestMemoryBackend::check_range(mem, desc.addr(), len) {
            return false;
        }
        spans.push(Span {
            addr: desc.addr(),
            len,
        });
    }
    descriptors > 0 && !last_has_next
}

/// Copies the spans covering the first [`VIRTIO_NET_HDR_LEN`] bytes of `spans`.
fn record_header_spans(spans: &[Span], header: &mut Vec<Span>) {
    header.clear();
    let mut need = VIRTIO_NET_HDR_LEN;
    for span in spans {
        if need == 0 {
            break;
        }
        let len = span.len.min(need);
        header.push(Span {
            addr: span.addr,
            len,
        });
        need -= len;
    }
}

/// Writes `bytes` into the concatenation of `spans`, starting `offset` bytes in.
fn write_spans(
    mem: &GuestMemoryMmap,
    spans: &[Span],
    mut offset: usize,
    mut bytes: &[u8],
) -> Result<(), vm_memory::GuestMemoryError> {
    for span in spans {
        if bytes.is_empty() {
            break;
        }
        if offset >= span.len {
            offset -= span.len;
            continue;
        }
        let room = span.len - offset;
        let (now, rest) = bytes.split_at(room.min(bytes.len()));
        // `offset < span.len` and the span was range-checked, so this cannot overflow.
        let addr = span.addr.unchecked_add(offset as u64);
        mem.write_slice(now, addr)?;
        bytes = rest;
        offset = 0;
    }
    Ok(())
}
