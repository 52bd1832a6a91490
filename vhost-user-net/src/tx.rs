//! Transmit: guest TX descriptor chains → frames → pipeline → ports.
//!
//! Each popped chain is walked exactly once. Its descriptors are checked (device-readable only,
//! inside guest memory, total length bounded) and their bytes are copied into a backend-owned
//! frame buffer; nothing after that reads guest memory, so a guest rewriting its buffer while we
//! parse cannot change what we validated (TOCTOU; DPDK CVE-2020-14375). The walk uses
//! `DescriptorChain` directly rather than `virtio_queue::Reader`, which allocates a `VecDeque`
//! per chain: steady state here allocates nothing.
//!
//! A bad chain is a counted drop (`QueueError`, `BadOffload`, `Malformed`, `MtuExceeded`) and is still
//! returned to the used ring with length 0 so the guest does not leak descriptors (VIRTIO 1.2
//! § 2.7.8; Cloud Hypervisor does the same). An avail index that jumps more than the queue size
//! (`InvalidAvailRingIndex`, QEMU CVE-2016-5403 class) marks the queue broken: it is not touched
//! again until the device is reset. Work per wake-up is capped by a budget; the caller re-arms
//! when it runs out.
//!
//! A frame the VIF's rate limit holds back (`Verdict::Throttle`) is not a drop: its chain goes
//! back to the ring (`go_to_previous_position`), unused, and the pass stops there, so the guest
//! sees its completions lag as behind a slow NIC. `TxOutcome::throttled` tells the caller when
//! to run again (STYLE.md § 6, Firecracker's `undo_pop`).

use std::time::Instant;

use vif_core::acl::Direction;
use vif_core::mac::MacAddr;
use vif_core::offload::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use virtio_queue::{Error as QueueErr, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

use crate::device::Negotiated;
use crate::flowlog::{FlowCache, FlowSampler, FlowVerdict};
use crate::offload_check;
use crate::pipeline::{Pipeline, Verdict};
use crate::policy::{clock_ns, PolicyBurst, VifPolicy};
use crate::port::{Enqueued, FrameRef, PortId};
use crate::switch::{Burst, Segment};
use vif_core::stats::{CastKind, DropReason, StatsBatch};

/// Chains processed per wake-up before yielding to the thread's other queues.
pub const TX_BUDGET: usize = 256;
/// The longest frame a guest may send with TSO: a 64 KiB IP datagram (the IPv4/IPv6 length
/// fields are 16 bits) behind an Ethernet header and two VLAN tags.
pub const MAX_TSO_FRAME: usize = 65535 + 14 + 8;
/// Room for VLAN tags on top of `mtu + 14`: a guest may tag its own frames (802.1ad + 802.1Q).
pub const VLAN_ALLOWANCE: usize = 8;

/// What one TX pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOutcome {
    pub chains: usize,
    /// The budget ran out with chains possibly left: process again without waiting for a kick.
    pub budget_exhausted: bool,
    /// The avail index is impossible: stop serving this queue until reset.
    pub broken: bool,
    /// The rate limit held a chain back: run again in this many nanoseconds.
    pub throttled: Option<u64>,
}

/// Per-queue TX state, owned by one worker thread; allocated once.
pub struct TxPath {
    /// Header then frame, copied out of guest memory.
    buffer: Vec<u8>,
    used: Vec<(u16, u32)>,
    wakes: Vec<(PortId, u16)>,
    pub batch: StatsBatch,
    /// Sampled flow records (`crate::flowlog`); `None` when flow logs are off.
    pub flows: Option<FlowSampler>,
}

/// What a TX pass needs to know about its device.
pub struct TxContext<'a> {
    pub negotiated: Negotiated,
    pub mtu: u16,
    pub segment: &'a Segment,
    pub pipeline: Pipeline,
    /// Picks the receiver's queue: this queue pair's index.
    pub flow_hint: u16,
    pub now: Instant,
}

impl TxContext<'_> {
    /// The longest frame accepted: a TSO super-frame if the guest may send them, else the MTU.
    pub fn max_frame(&self) -> usize {
        let n = self.negotiated;
        if n.host_tso4() || n.host_tso6() {
            MAX_TSO_FRAME
        } else {
            usize::from(self.mtu) + vif_core::wire::ethernet::HEADER_LEN + VLAN_ALLOWANCE
        }
    }
}

impl TxPath {
    pub fn new() -> TxPath {
        TxPath {
            buffer: vec![0; VIRTIO_NET_HDR_LEN + MAX_TSO_FRAME],
            used: Vec::with_capacity(TX_BUDGET),
            wakes: Vec::with_capacity(64),
            batch: StatsBatch::new(),
            flows: None,
        }
    }

    /// Processes up to [`TX_BUDGET`] chains from `queue`, with no policy.
    pub fn process(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
        ctx: &TxContext<'_>,
    ) -> TxOutcome {
        self.process_with(queue, mem, ctx, None)
    }

    /// Processes up to [`TX_BUDGET`] chains from `queue`; the sending VIF's `policy` judges
    /// each frame before the switch does. Its snapshot is taken after the avail index is read,
    /// so a chain the guest posted after a policy swap returned is judged by the new policy.
    pub fn process_with(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
        ctx: &TxContext<'_>,
        policy: Option<&VifPolicy>,
    ) -> TxOutcome {
        let mut outcome = TxOutcome::default();
        let limit = VIRTIO_NET_HDR_LEN.saturating_add(ctx.max_frame());
        let mut burst = ctx.segment.begin_burst(ctx.now);
        // One lock per pass when flow logs are on; nothing when off.
        let mut flows = self.flows.as_ref().map(FlowSampler::lock);
        self.used.clear();
        self.wakes.clear();
        {
            let mut chains = match queue.iter(mem) {
                Ok(chains) => chains,
                Err(QueueErr::InvalidAvailRingIndex) => {
                    self.batch.record_drop(DropReason::QueueError);
                    outcome.broken = true;
                    return outcome;
                }
                // Not ready (reset, or rings not set up yet): nothing to do.
                Err(_) => return outcome,
            };
            let mut policy = match policy {
                Some(policy) => {
                    let worker = usize::from(ctx.flow_hint);
                    policy.burst(Direction::Egress, clock_ns(ctx.now), worker)
                }
                None => PolicyBurst::none(),
            };
            while outcome.chains < TX_BUDGET {
                let Some(chain) = chains.next() else {
                    break;
                };
                let head = chain.head_index();
                let copied =
                    copy_chain(chain, mem, self.buffer.get_mut(..limit).unwrap_or_default());
                match copied {
                    Ok(len) => {
                        let bytes = self.buffer.get(..len).unwrap_or_default();
                        let held = handle_frame(
                            bytes,
                            ctx,
                            &mut burst,
                            &mut self.batch,
                            &mut self.wakes,
                            flows.as_deref_mut(),
                            &mut policy,
                        );
                        if held {
                            // Back into the ring, unused: the guest gets it back later.
                            chains.go_to_previous_position();
                            self.batch.record_throttled();
                            outcome.throttled = Some(policy.retry_in_ns());
                            break;
                        }
                    }
                    Err(reason) => self.batch.record_drop(reason),
                }
                outcome.chains += 1;
                // TX buffers are device-readable: the device wrote 0 bytes (VIRTIO 1.2 § 2.7.8).
                self.used.push((head, 0));
            }
        }
        outcome.budget_exhausted = outcome.chains >= TX_BUDGET;
        for &(head, len) in &self.used {
            // Fails only for a head index >= queue size, a chain the guest made up; counted.
            if queue.add_used(mem, head, len).is_err() {
                self.batch.record_drop(DropReason::QueueError);
            }
        }
        burst.apply_learned();
        for &(port, queue) in &self.wakes {
            burst.wake(port, queue);
        }
        outcome
    }
}

impl Default for TxPath {
    fn default() -> Self {
        TxPath::new()
    }
}

/// Validates one copied chain (header + frame) and acts on the pipeline's verdict. Returns
/// true when the rate limit holds the frame back: the caller puts the chain back.
fn handle_frame(
    bytes: &[u8],
    ctx: &TxContext<'_>,
    burst: &mut Burst<'_>,
    batch: &mut StatsBatch,
    wakes: &mut Vec<(PortId, u16)>,
    mut flows: Option<&mut FlowCache>,
    policy: &mut PolicyBurst<'_>,
) -> bool {
    let Some(hdr) = VirtioNetHdr::from_slice(bytes) else {
        // Shorter than the virtio-net header (DPDK CVE-2022-2132).
        batch.record_drop(DropReason::QueueError);
        return false;
    };
    let frame = bytes.get(VIRTIO_NET_HDR_LEN..).unwrap_or_default();
    let mut note = |verdict: FlowVerdict| {
        if let Some(cache) = flows.as_deref_mut() {
            cache.observe(frame, verdict, ctx.now);
        }
    };
    let offload = match offload_check::validate_tx(&hdr, frame, ctx.negotiated, ctx.mtu) {
        Ok(offload) => offload,
        Err(reason) => {
            batch.record_drop(reason);
            note(FlowVerdict::Dropped(reason));
            return false;
        }
    };
    let frame_ref = FrameRef {
        offload,
        bytes: frame,
    };
    let verdict = ctx.pipeline.classify_guest(frame, burst, policy);
    // `classify` accepted at least an Ethernet header, so the destination is there.
    let cast = MacAddr::from_bytes(frame).map_or(CastKind::Unicast, CastKind::of);
    let burst: &Burst<'_> = burst;
    let mut owe = |to: PortId, queue: u16| {
        if wakes.len() < wakes.capacity() {
            wakes.push((to, queue));
        } else {
            // More destinations than the list holds: wake now rather than lose it.
            burst.wake(to, queue);
        }
    };
    match verdict {
        Verdict::Forward(to) => match burst.enqueue(to, frame_ref, ctx.flow_hint) {
            Ok(enqueued) => {
                if let Enqueued::WakeOwed { queue } = enqueued {
                    owe(to, queue);
                }
                batch.record_packet(frame.len(), cast);
                note(FlowVerdict::Forwarded);
            }
            Err(reason) => {
                batch.record_drop(reason);
                note(FlowVerdict::Dropped(reason));
            }
        },
        Verdict::Flood => {
            // A copy that does not fit one receiver is that receiver's loss, not a TX drop: the
            // frame did reach the segment.
            burst.for_each_other_port(ctx.pipeline.ingress(), |to, port| {
                if let Ok(Enqueued::WakeOwed { queue }) = port.enqueue(frame_ref, ctx.flow_hint) {
                    owe(to, queue);
                }
            });
            batch.record_packet(frame.len(), cast);
            note(FlowVerdict::Flooded);
        }
        Verdict::Drop(reason) => {
            batch.record_drop(reason);
            note(FlowVerdict::Dropped(reason));
        }
        // Counted by the caller as throttled once it has put the chain back.
        Verdict::Throttle => return true,
    }
    false
}

/// Copies a TX chain into `buffer`; returns the number of bytes copied.
///
/// Rejects (as `QueueError`): a device-writable descriptor (wrong direction for TX, VIRTIO 1.2
/// § 5.1.6.2), a range outside guest memory (DPDK CVE-2018-1059), and a chain that ends while
/// its last descriptor still says `NEXT` — `DescriptorChain` stops silently on a loop longer
/// than the queue, a `next` index out of range, or a bad indirect table, and this is how we see
/// it. An empty chain (bad head index) is also a `QueueError`; a chain longer than `buffer` is
/// `MtuExceeded`.
pub fn copy_chain<I>(
    chain: I,
    mem: &GuestMemoryMmap,
    buffer: &mut [u8],
) -> Result<usize, DropReason>
where
    I: Iterator<Item = virtio_queue::desc::split::Descriptor>,
{
    let mut copied = 0usize;
    let mut descriptors = 0usize;
    let mut last_has_next = false;
    for desc in chain {
        descriptors += 1;
        last_has_next = desc.has_next();
        if desc.is_write_only() {
            return Err(DropReason::QueueError);
        }
        let len = usize::try_from(desc.len()).map_err(|_| DropReason::MtuExceeded)?;
        let end = copied.checked_add(len).ok_or(DropReason::MtuExceeded)?;
        let into = buffer.get_mut(copied..end).ok_or(DropReason::MtuExceeded)?;
        mem.read_slice(into, desc.addr())
            .map_err(|_| DropReason::QueueError)?;
        copied = end;
    }
    if descriptors == 0 || last_has_next {
        return Err(DropReason::QueueError);
    }
    Ok(copied)
}
