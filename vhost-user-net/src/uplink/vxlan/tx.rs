//! The VTEP's transmit side: frames a segment forwards to a VNI's port are queued in a shard on
//! the sender's thread, then encapsulated and sent in batches when the sender wakes the port.
//!
//! `Port::enqueue` runs on the sending VIF's worker thread and must copy and return at once
//! (`port.rs`). Here it also makes the frame wire-ready, because the uplink takes neither
//! partial checksums nor GSO frames: `rx_plan` with no offload caps says whether to copy it as
//! is, copy it and complete its checksum (VIRTIO 1.2 § 5.1.6.2), or segment it (TSO/USO) with
//! the shard's [`Segmenter`]. Each copy lands after [`MAX_OVERHEAD`] bytes of headroom, where the
//! per-remote [`vif_core::wire::encap::EncapTemplate`] writes the outer headers in place later,
//! so encapsulation adds no copy of the payload. An inner frame longer than the VNI's underlay
//! allows is a counted `MtuExceeded` drop; a full shard is a `NoRxBuffer` drop (the receiver had
//! no room, as with a VIF's inbox).
//!
//! `Port::wake` flushes the shard: one thread at a time swaps the shard's frames out (so
//! producers keep appending), then per frame looks up the destination VTEPs in the VNI's
//! forwarding table (one unicast VTEP, or every static remote for broadcast, multicast and
//! unknown unicast: head-end replication, RFC 7348 § 4.2), writes the outer headers with the
//! inner flow's hash as UDP source port (§ 5) and hands up to [`IO_BATCH`] datagrams at a time
//! to `sendmmsg(2)` as (headers, inner frame) scatter-gather pairs. A replicated frame is one
//! copy in memory and one header per remote. A flush requested while another thread flushes is
//! left to that thread (a flag it re-checks), so `wake` never waits on another thread's syscall.
//!
//! Memory is fixed per VTEP: [`SHARDS`] shards of two [`PENDING_BYTES`] arenas each, allocated
//! once.

use std::io;
use std::ops::Range;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use vif_core::flow::FlowKey;
use vif_core::ids::Vni;
use vif_core::mac::MacAddr;
use vif_core::offload::{
    complete_csum, rx_plan, RxOffloadCaps, RxPlan, RxSource, Segmenter, TxOffload,
};
use vif_core::stats::{CastKind, DropReason, StatsBatch};
use vif_core::wire::encap::{PacketFields, MAX_OVERHEAD};
use vif_core::wire::ethernet;
use vif_core::wire::vxlan;

use super::socket::{send_batch, OutMsg, SockAddr, TxMode, IO_BATCH};
use super::{VniPort, VtepShared};
use crate::port::FrameRef;

/// Transmit shards per VTEP: senders pick one by their queue index, and move to a free one
/// when it is busy.
pub const SHARDS: usize = 4;
/// Bytes of frames (with their headroom) one shard holds between flushes: a segmented 64 KiB
/// TSO frame several times over.
pub const PENDING_BYTES: usize = 512 << 10;
/// Frames one shard holds between flushes.
pub const PENDING_FRAMES: usize = 512;
/// The outer headers sent from a header slot: IPv6 (40) + UDP (8) + VXLAN (8).
const MAX_SENT_HEADER: usize = MAX_OVERHEAD - ethernet::HEADER_LEN;

/// A queued inner frame and the VNI it is for.
#[derive(Debug, Clone)]
struct QueuedFrame {
    vni: Vni,
    /// The inner frame in the arena; `MAX_OVERHEAD` bytes of headroom precede it.
    inner: Range<usize>,
}

/// Frames back to back, each after its headroom, in buffers allocated once.
struct Pending {
    bytes: Vec<u8>,
    frames: Vec<QueuedFrame>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            bytes: Vec::with_capacity(PENDING_BYTES),
            frames: Vec::with_capacity(PENDING_FRAMES),
        }
    }

    fn room_for(&self, frames: usize, bytes: usize) -> bool {
        let need = bytes.saturating_add(frames.saturating_mul(MAX_OVERHEAD));
        self.frames.len().saturating_add(frames) <= PENDING_FRAMES
            && self.bytes.len().saturating_add(need) <= PENDING_BYTES
    }

    /// Appends `frame` after headroom; the caller checked [`Pending::room_for`]. Returns the
    /// copy, for in-place checksum completion.
    fn push(&mut self, vni: Vni, frame: &[u8]) -> &mut [u8] {
        let headroom_end = self.bytes.len() + MAX_OVERHEAD;
        self.bytes.resize(headroom_end, 0);
        self.bytes.extend_from_slice(frame);
        let inner = headroom_end..self.bytes.len();
        self.frames.push(QueuedFrame {
            vni,
            inner: inner.clone(),
        });
        self.bytes.get_mut(inner).unwrap_or_default()
    }

    /// Forgets the last frame pushed (its checksum could not be completed).
    fn pop(&mut self) {
        if let Some(frame) = self.frames.pop() {
            self.bytes
                .truncate(frame.inner.start.saturating_sub(MAX_OVERHEAD));
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
    }
}

/// What a sending thread writes under the shard's producer lock.
struct Producer {
    pending: Pending,
    segmenter: Segmenter,
}

/// One datagram waiting for `sendmmsg`.
struct Outgoing {
    to: SockAddr,
    header_len: usize,
    inner: Range<usize>,
    cast: CastKind,
}

/// What the flushing thread owns: the swapped-out frames and the datagrams being built.
struct Flusher {
    frames: Pending,
    headers: Box<[[u8; MAX_SENT_HEADER]; IO_BATCH]>,
    outgoing: Vec<Outgoing>,
    batch: StatsBatch,
}

/// One transmit shard.
pub struct TxShard {
    producer: Mutex<Producer>,
    /// Set by the producer that owes the next flush; cleared by the flusher before it swaps.
    wake_owed: AtomicBool,
    flusher: Mutex<Flusher>,
    /// A flush was asked for; whoever holds `flusher` runs it.
    flush_requested: AtomicBool,
}

impl TxShard {
    pub fn new() -> TxShard {
        TxShard {
            producer: Mutex::new(Producer {
                pending: Pending::new(),
                segmenter: Segmenter::with_capacity(1 << 17, 64),
            }),
            wake_owed: AtomicBool::new(false),
            flusher: Mutex::new(Flusher {
                frames: Pending::new(),
                headers: Box::new([[0; MAX_SENT_HEADER]; IO_BATCH]),
                outgoing: Vec::with_capacity(IO_BATCH),
                batch: StatsBatch::new(),
            }),
            flush_requested: AtomicBool::new(false),
        }
    }

    /// Locks the producer side if no one holds it.
    fn try_producer(&self) -> Option<MutexGuard<'_, Producer>> {
        match self.producer.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn lock_producer(&self) -> MutexGuard<'_, Producer> {
        self.producer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for TxShard {
    fn default() -> Self {
        TxShard::new()
    }
}

/// Queues `frame` for `port` in one of `shards`, starting with `preferred`; returns the shard
/// used and whether the caller owes it a wake-up.
pub fn enqueue(
    shards: &[TxShard],
    preferred: usize,
    port: &VniPort,
    frame: FrameRef<'_>,
) -> Result<(usize, bool), DropReason> {
    let count = shards.len();
    if count == 0 {
        return Err(DropReason::UplinkError);
    }
    let first = preferred % count;
    // A busy shard (another sender, or a flush swapping it) is skipped for a free one; if all
    // are busy, wait for ours: the holders only copy.
    let (index, mut producer) = (0..count)
        .map(|step| (first + step) % count)
        .find_map(|i| shards.get(i)?.try_producer().map(|guard| (i, guard)))
        .or_else(|| Some((first, shards.get(first)?.lock_producer())))
        .ok_or(DropReason::UplinkError)?;
    queue_frame(&mut producer, port, frame)?;
    drop(producer);
    let owes = shards
        .get(index)
        .is_some_and(|shard| !shard.wake_owed.swap(true, Ordering::AcqRel));
    Ok((index, owes))
}

/// Makes `frame` wire-ready into the producer's arena (see the module docs).
fn queue_frame(
    producer: &mut Producer,
    port: &VniPort,
    frame: FrameRef<'_>,
) -> Result<(), DropReason> {
    let max = port.max_inner_len();
    let Producer { pending, segmenter } = producer;
    match rx_plan(RxSource::Offload(&frame.offload), &RxOffloadCaps::NONE) {
        RxPlan::Deliver(_) => {
            check_fits(frame.bytes.len(), max)?;
            if !pending.room_for(1, frame.bytes.len()) {
                return Err(DropReason::NoRxBuffer);
            }
            pending.push(port.vni(), frame.bytes);
        }
        RxPlan::CompleteCsumThen { csum, .. } => {
            check_fits(frame.bytes.len(), max)?;
            if !pending.room_for(1, frame.bytes.len()) {
                return Err(DropReason::NoRxBuffer);
            }
            if complete_csum(pending.push(port.vni(), frame.bytes), csum).is_err() {
                pending.pop();
                return Err(DropReason::BadOffload);
            }
        }
        RxPlan::Segment { csum } => {
            let TxOffload::Gso(gso) = frame.offload else {
                return Err(DropReason::BadOffload);
            };
            let segments = segmenter
                .segment(frame.bytes, &gso, csum)
                .map_err(|_| DropReason::BadOffload)?;
            let mut total = 0usize;
            for segment in segments.iter() {
                check_fits(segment.len(), max)?;
                total = total.saturating_add(segment.len());
            }
            // All or nothing: half a super-frame is worse than none for the receiver's TCP.
            if !pending.room_for(segments.len(), total) {
                return Err(DropReason::NoRxBuffer);
            }
            for segment in segments.iter() {
                pending.push(port.vni(), segment);
            }
        }
    }
    Ok(())
}

fn check_fits(len: usize, max: usize) -> Result<(), DropReason> {
    if len < ethernet::HEADER_LEN {
        Err(DropReason::Malformed)
    } else if len > max {
        Err(DropReason::MtuExceeded)
    } else {
        Ok(())
    }
}

/// Flushes `shard` (see the module docs), or leaves it to the thread already flushing it.
pub fn flush(shard: &TxShard, vtep: &VtepShared) {
    shard.flush_requested.store(true, Ordering::SeqCst);
    loop {
        let mut flusher = match shard.flusher.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // The holder re-checks the flag after its pass and flushes again.
            Err(TryLockError::WouldBlock) => return,
        };
        while shard.flush_requested.swap(false, Ordering::SeqCst) {
            // Cleared before the swap: a frame pushed after this owes a new wake-up.
            shard.wake_owed.store(false, Ordering::SeqCst);
            {
                let mut producer = shard.lock_producer();
                std::mem::swap(&mut producer.pending, &mut flusher.frames);
            }
            flusher.send_all(vtep);
        }
        drop(flusher);
        // A request that arrived after our last check but found the lock still held.
        if !shard.flush_requested.load(Ordering::SeqCst) {
            return;
        }
    }
}

impl Flusher {
    /// Encapsulates and sends every swapped-out frame, one run of same-VNI frames at a time.
    fn send_all(&mut self, vtep: &VtepShared) {
        let vnis = vtep.read_vnis();
        let mut start = 0;
        while let Some(first) = self.frames.frames.get(start) {
            let vni = first.vni;
            let run = self
                .frames
                .frames
                .get(start..)
                .unwrap_or_default()
                .iter()
                .take_while(|frame| frame.vni == vni)
                .count();
            let end = start + run;
            match vnis.get(&vni) {
                Some(port) => self.send_run(vtep, port, start..end),
                // The VNI left between enqueue and flush.
                None => vtep.count_tx_drops(DropReason::PortDown, run),
            }
            start = end;
        }
        self.frames.clear();
    }

    /// Sends the frames at `run` (indices into the frame list), all for `port`.
    fn send_run(&mut self, vtep: &VtepShared, port: &VniPort, run: Range<usize>) {
        let fdb = port.fdb().read();
        let remotes = port.read_remotes();
        let mode = vtep.tx_mode();
        let Flusher {
            frames,
            headers,
            outgoing,
            batch,
        } = self;
        for index in run {
            let Some(frame) = frames.frames.get(index) else {
                continue;
            };
            let inner_range = frame.inner.clone();
            let Some(inner) = frames.bytes.get(inner_range.clone()) else {
                continue;
            };
            let dst = MacAddr::from_bytes(inner).unwrap_or(MacAddr::ZERO);
            let cast = CastKind::of(dst);
            // RFC 7348 § 5: a hash of the inner flow as the source port, so the underlay's
            // ECMP spreads flows; frames that do not parse share one port.
            let hash = FlowKey::extract(inner).map_or(0, |key| key.hash());
            let fields = PacketFields::from_flow_hash(hash);
            let destinations = fdb.destinations(dst);
            if destinations.as_slice().is_empty() {
                batch.record_drop(DropReason::NoRoute);
                continue;
            }
            for &remote_ip in destinations.as_slice() {
                if outgoing.len() >= IO_BATCH {
                    send_outgoing(vtep.tx_fd(), outgoing, headers, &frames.bytes, batch);
                }
                let built;
                let remote = match remotes.get(&remote_ip) {
                    Some(remote) => remote,
                    None => match port.build_remote(remote_ip, mode) {
                        Ok(remote) => {
                            built = remote;
                            &built
                        }
                        Err(_) => {
                            batch.record_drop(DropReason::UplinkError);
                            continue;
                        }
                    },
                };
                let len = inner_range.len();
                let Ok(outer_start) =
                    remote
                        .template
                        .write(&mut frames.bytes, inner_range.start, len, fields)
                else {
                    batch.record_drop(DropReason::UplinkError);
                    continue;
                };
                // Raw sockets take the IP datagram; the UDP socket only the VXLAN header.
                let header_start = match mode {
                    TxMode::Raw => outer_start + ethernet::HEADER_LEN,
                    TxMode::Udp => inner_range.start.saturating_sub(vxlan::HEADER_LEN),
                };
                let header = frames
                    .bytes
                    .get(header_start..inner_range.start)
                    .unwrap_or_default();
                let slot = outgoing.len();
                let Some(dst_slot) = headers
                    .get_mut(slot)
                    .and_then(|h| h.get_mut(..header.len()))
                else {
                    batch.record_drop(DropReason::UplinkError);
                    continue;
                };
                dst_slot.copy_from_slice(header);
                outgoing.push(Outgoing {
                    to: remote.to,
                    header_len: header.len(),
                    inner: inner_range.clone(),
                    cast,
                });
            }
        }
        send_outgoing(vtep.tx_fd(), outgoing, headers, &frames.bytes, batch);
        port.publish_tx(batch);
    }
}

/// Hands `outgoing` to the kernel in `sendmmsg` batches and empties it. A datagram the kernel
/// refuses (no route, too big for the device) is dropped and the rest go on; a full socket
/// buffer drops the rest of the batch: UDP has no backpressure to give the guest.
fn send_outgoing(
    fd: BorrowedFd<'_>,
    outgoing: &mut Vec<Outgoing>,
    headers: &[[u8; MAX_SENT_HEADER]; IO_BATCH],
    bytes: &[u8],
    batch: &mut StatsBatch,
) {
    let mut sent = 0;
    while sent < outgoing.len() {
        let msgs = outgoing
            .iter()
            .enumerate()
            .skip(sent)
            .map(|(slot, out)| OutMsg {
                to: &out.to,
                header: headers
                    .get(slot)
                    .and_then(|h| h.get(..out.header_len))
                    .unwrap_or_default(),
                payload: bytes.get(out.inner.clone()).unwrap_or_default(),
            });
        match send_batch(fd, msgs) {
            Ok(0) => break,
            Ok(n) => {
                let done = outgoing.get(sent..sent + n).unwrap_or_default();
                for out in done {
                    batch.record_packet(out.inner.len(), out.cast);
                }
                sent += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                let unsent = outgoing.len() - sent;
                (0..unsent).for_each(|_| batch.record_drop(DropReason::UplinkError));
                break;
            }
            Err(_) => {
                batch.record_drop(DropReason::UplinkError);
                sent += 1;
            }
        }
    }
    outgoing.clear();
}
