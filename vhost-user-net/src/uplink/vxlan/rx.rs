//! The VTEP's receive thread: `recvmmsg(2)` batches → VXLAN header check → VNI demultiplexing →
//! learning → the VNI's segment.
//!
//! Every datagram is peer-controlled. What the kernel already checked: the outer IP header, the
//! UDP length and checksum, and that the datagram is addressed to our (address, port). What is
//! checked here, each failure a counted drop on the VTEP's `rx` counters (never a panic, never a
//! log line per packet): a datagram cut short by the slot (`Malformed`), the VXLAN header (8
//! bytes, I flag set; RFC 7348 § 5, reserved bits ignored) and an inner frame of at least an
//! Ethernet header (`Malformed`), and a VNI served by this VTEP (`NoRoute`).
//!
//! A valid inner frame then enters its VNI's segment from the VNI's port, exactly as a guest's
//! frame enters from its VIF (`pipeline.rs` learns its source MAC behind the port, looks up its
//! destination, and the frame is enqueued to one VIF or flooded to all), so a remote never
//! receives its own frame back and frames are never relayed from one remote to another (the
//! segment forbids hairpins). The VNI's table learns the inner source MAC as behind the outer
//! source address (RFC 7348 § 4.1). Consecutive datagrams of one VNI share one segment burst:
//! one pair of read locks, one FDB write, one wake-up per destination queue.
//!
//! The thread waits in `poll(2)` on the socket and a stop eventfd, with a timeout of
//! [`AGEING_TICK`] so it also ages the VNIs' tables.

use std::io;
use std::net::IpAddr;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vif_core::ids::Vni;
use vif_core::mac::MacAddr;
use vif_core::offload::TxOffload;
use vif_core::stats::{CastKind, DropReason, StatsBatch};
use vif_core::wire::ethernet;
use vif_core::wire::vxlan::{self, VxlanPacket, VxlanRepr};
use vmm_sys_util::eventfd::EventFd;

use super::socket::{wait_readable, Datagram, RecvSlots, IO_BATCH};
use super::{VniPort, VtepShared};
use crate::pipeline::{Pipeline, Verdict};
use crate::port::{Enqueued, FrameRef, PortId};

/// Datagrams read per `recvmmsg` call.
pub const RX_BATCH: usize = 32;
/// How often the forwarding tables are aged (and the longest the thread sleeps).
pub const AGEING_TICK: Duration = Duration::from_secs(1);
/// Receive passes per wake-up before checking the stop event and the ageing clock again.
const PASSES_PER_WAKE: usize = 16;

/// A datagram that passed the VXLAN checks.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    /// Its slot in the receive batch.
    slot: usize,
    vni: Vni,
    /// The remote VTEP (outer source address).
    remote: IpAddr,
    /// The outer UDP source port: the remote's hash of the inner flow, so it keeps one flow
    /// on one receive queue of the destination VIF.
    flow_hint: u16,
}

/// The receive thread's reusable state.
struct RxState {
    slots: RecvSlots,
    accepted: Vec<Accepted>,
    learned: Vec<(MacAddr, IpAddr)>,
    wakes: Vec<(PortId, u16)>,
    /// Drops that belong to no VNI.
    vtep_batch: StatsBatch,
    port_batch: StatsBatch,
}

/// Starts the receive thread of `vtep`; it returns when `stop` is written.
pub(super) fn spawn(vtep: Arc<VtepShared>, stop: Arc<EventFd>) -> io::Result<JoinHandle<()>> {
    let name = format!("vxlan-rx-{}", vtep.local_addr.port());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&vtep, &stop))
}

fn run(vtep: &VtepShared, stop: &EventFd) {
    let mut state = RxState {
        slots: RecvSlots::new(RX_BATCH),
        accepted: Vec::with_capacity(IO_BATCH),
        learned: Vec::with_capacity(IO_BATCH),
        wakes: Vec::with_capacity(IO_BATCH),
        vtep_batch: StatsBatch::new(),
        port_batch: StatsBatch::new(),
    };
    let mut last_ageing = Instant::now();
    let mut reported_error = false;
    loop {
        let ready = match wait_readable([vtep.rx_socket.as_raw_fd(), stop.as_raw_fd()], AGEING_TICK)
        {
            Ok(ready) => ready,
            Err(error) => {
                log::error!(
                    "VTEP {}: poll failed: {error}; receive stopped",
                    vtep.local_addr
                );
                return;
            }
        };
        if ready[1] {
            return;
        }
        if ready[0] {
            for _ in 0..PASSES_PER_WAKE {
                match state.slots.recv(vtep.rx_socket.as_fd()) {
                    Ok(0) => break,
                    Ok(received) => {
                        deliver(vtep, &mut state, Instant::now());
                        if received < state.slots.capacity() {
                            break;
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        // Asynchronous socket errors (an ICMP error on the socket) are read
                        // and cleared by the failing call; report the first only.
                        if !reported_error {
                            log::warn!("VTEP {}: receive error: {error}", vtep.local_addr);
                            reported_error = true;
                        }
                        break;
                    }
                }
            }
        }
        let now = Instant::now();
        if now.saturating_duration_since(last_ageing) >= AGEING_TICK {
            last_ageing = now;
            let ports: Vec<Arc<VniPort>> = vtep.read_vnis().values().cloned().collect();
            ports.iter().for_each(|port| port.age_out(now));
        }
    }
}

/// Checks one datagram's VXLAN header and inner frame.
fn accept(slot: usize, datagram: &Datagram<'_>) -> Result<Accepted, DropReason> {
    if datagram.truncated {
        return Err(DropReason::Malformed);
    }
    let from = datagram.from.ok_or(DropReason::Malformed)?;
    let packet = VxlanPacket::new_checked(datagram.payload).map_err(|_| DropReason::Malformed)?;
    let repr = VxlanRepr::parse(&packet).map_err(|_| DropReason::Malformed)?;
    if packet.payload().len() < ethernet::HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    Ok(Accepted {
        slot,
        vni: repr.vni,
        remote: from.ip(),
        flow_hint: from.port(),
    })
}

/// Hands the last received batch to the segments.
fn deliver(vtep: &VtepShared, state: &mut RxState, now: Instant) {
    state.accepted.clear();
    for slot in 0..state.slots.len() {
        let Some(datagram) = state.slots.datagram(slot) else {
            continue;
        };
        match accept(slot, &datagram) {
            Ok(accepted) => state.accepted.push(accepted),
            Err(reason) => state.vtep_batch.record_drop(reason),
        }
    }
    let mut start = 0;
    while let Some(first) = state.accepted.get(start) {
        let vni = first.vni;
        let run = state
            .accepted
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|accepted| accepted.vni == vni)
            .count();
        let range = start..start + run;
        match vtep.vni_port(vni) {
            Some(port) => deliver_run(&port, state, range, now),
            None => (0..run).for_each(|_| state.vtep_batch.record_drop(DropReason::NoRoute)),
        }
        start += run;
    }
    if !state.vtep_batch.is_empty() {
        vtep.stats.rx.publish(&mut state.vtep_batch);
    }
}

/// Delivers `state.accepted[range]`, all for `port`, into its segment.
fn deliver_run(port: &VniPort, state: &mut RxState, range: Range<usize>, now: Instant) {
    let RxState {
        slots,
        accepted,
        learned,
        wakes,
        port_batch: batch,
        ..
    } = state;
    let Some(ingress) = port.port_id() else {
        (0..range.len()).for_each(|_| batch.record_drop(DropReason::PortDown));
        port.publish_rx(batch);
        return;
    };
    let pipeline = Pipeline::new(ingress);
    let run = accepted.get(range).unwrap_or_default();
    // The VNI's table learns first, so a VIF that answers at once unicasts to the right VTEP
    // instead of flooding.
    learned.clear();
    learned.extend(run.iter().filter_map(|accepted| {
        let inner = slots
            .datagram(accepted.slot)?
            .payload
            .get(vxlan::HEADER_LEN..)?;
        let src = MacAddr::from_bytes(inner.get(6..12)?)?;
        Some((src, accepted.remote))
    }));
    port.learn(now, learned);
    wakes.clear();
    let mut burst = port.segment().begin_burst(now);
    for accepted in run {
        let Some(datagram) = slots.datagram(accepted.slot) else {
            continue;
        };
        // `accept` proved the header and an Ethernet header behind it.
        let inner = datagram
            .payload
            .get(vxlan::HEADER_LEN..)
            .unwrap_or_default();
        let frame = FrameRef {
            offload: TxOffload::None,
            bytes: inner,
        };
        let cast = MacAddr::from_bytes(inner).map_or(CastKind::Unicast, CastKind::of);
        let verdict = pipeline.classify(inner, &mut burst);
        let burst_ref = &burst;
        let mut owe = |to: PortId, queue: u16| {
            if wakes.len() < wakes.capacity() {
                wakes.push((to, queue));
            } else {
                burst_ref.wake(to, queue);
            }
        };
        match verdict {
            Verdict::Forward(to) => match burst_ref.enqueue(to, frame, accepted.flow_hint) {
                Ok(Enqueued::WakeOwed { queue }) => owe(to, queue),
                Ok(Enqueued::Queued) => {}
                Err(reason) => {
                    batch.record_drop(reason);
                    continue;
                }
            },
            Verdict::Flood => {
                // A copy that does not fit one receiver is that receiver's loss (as in tx.rs).
                burst_ref.for_each_other_port(ingress, |to, other| {
                    if let Ok(Enqueued::WakeOwed { queue }) =
                        other.enqueue(frame, accepted.flow_hint)
                    {
                        owe(to, queue);
                    }
                });
            }
            Verdict::Drop(reason) => {
                batch.record_drop(reason);
                continue;
            }
            // No policer on the uplink's ingress: traffic from the network cannot be pushed
            // back, so a throttle would be a drop.
            Verdict::Throttle => {
                batch.record_drop(DropReason::RateLimited);
                continue;
            }
        }
        batch.record_packet(inner.len(), cast);
    }
    // Publish and learn before waking, so a VIF that answers at once finds the remote MAC
    // known, and whoever sees the frames also sees the counters that describe them.
    port.publish_rx(batch);
    burst.apply_learned();
    for &(to, queue) in wakes.iter() {
        burst.wake(to, queue);
    }
}
