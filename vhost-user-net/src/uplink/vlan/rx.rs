//! Receive for a VLAN parent: one thread reads the parent's packet socket in batches, sorts the
//! frames by VID, pops the tag and hands each frame to the segment of its (parent, VID) as any
//! port would (learn the source MAC as behind the VLAN port, forward by destination MAC or
//! flood).
//!
//! The tag reaches us one of two ways, and both are handled: stripped by the kernel into
//! `PACKET_AUXDATA` (the common case: `skb_vlan_untag` on receive, or NIC VLAN stripping; the
//! frame in the buffer is then untagged), or still in the frame (a kernel or driver that keeps
//! it), in which case `wire::vlan::walk_tags` reads it and `pop_tag` removes it in place.
//!
//! Frames that are not ours are skipped without a drop count: untagged or priority-tagged
//! frames, 802.1ad S-tagged frames, VIDs with no VIF, and frames the host itself sent.

use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Instant;

use vif_core::flow::FlowKey;
use vif_core::mac::MacAddr;
use vif_core::offload::TxOffload;
use vif_core::stats::{CastKind, DropReason, StatsBatch};
use vif_core::wire::ethernet::EtherType;
use vif_core::wire::vlan;
use vmm_sys_util::eventfd::EventFd;

use super::socket::{Received, RecvBatch, BATCH};
use super::{ParentShared, VidEntry};
use crate::pipeline::{Pipeline, Verdict};
use crate::port::{Enqueued, FrameRef, PortId};

/// `PACKET_OUTGOING` (linux/if_packet.h): a frame this host sent, looped back to packet sockets.
const PACKET_OUTGOING: u8 = 4;

/// One accepted frame of the current batch.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    slot: usize,
    vid: u16,
    /// The untagged frame's range in its slot.
    range: (usize, usize),
}

/// The receive thread's reusable state.
struct RxState {
    batch: RecvBatch,
    accepted: Vec<Accepted>,
    wakes: Vec<(PortId, u16)>,
    port_batch: StatsBatch,
}

/// Runs until `stop` is signalled. Errors on the socket other than "nothing to read" end the
/// thread with a log line: the parent went away.
pub(super) fn run(parent: Arc<ParentShared>, stop: Arc<EventFd>) {
    let mut state = RxState {
        batch: RecvBatch::new(parent.slot_len),
        accepted: Vec::with_capacity(BATCH),
        wakes: Vec::with_capacity(BATCH),
        port_batch: StatsBatch::new(),
    };
    loop {
        match wait_readable(&parent, &stop) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                log::error!(
                    "vlan parent {}: poll failed: {e}; receive stopped",
                    parent.name
                );
                return;
            }
        }
        // Drain what is queued, a batch at a time, then wait again.
        loop {
            match parent.socket.recv_batch(&mut state.batch) {
                Ok(0) => break,
                Ok(n) => {
                    deliver(&parent, &mut state, Instant::now());
                    if n < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    log::error!(
                        "vlan parent {}: receive failed: {e}; receive stopped",
                        parent.name
                    );
                    return;
                }
            }
        }
    }
}

/// Waits until the socket has frames (`true`) or `stop` fires (`false`).
fn wait_readable(parent: &ParentShared, stop: &EventFd) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd {
            fd: parent.socket.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd, and its length is passed.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if fds[1].revents != 0 {
            return Ok(false);
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(io::Error::other("packet socket error (parent gone?)"));
        }
        if fds[0].revents != 0 {
            return Ok(true);
        }
    }
}

/// Finds the VID of frame `slot` and untags it; `None` for frames that are not ours.
fn accept(slot: &mut [u8], received: &Received) -> Result<Option<(u16, Range<usize>)>, DropReason> {
    if received.pkttype == PACKET_OUTGOING {
        return Ok(None);
    }
    if received.truncated {
        return Err(DropReason::MtuExceeded);
    }
    let len = received.len;
    let (tpid, tci, range) = match received.stripped_tag {
        Some((tpid, tci)) => (tpid, tci, 0..len),
        None => {
            let Ok(stack) = vlan::walk_tags(slot.get(..len).unwrap_or_default()) else {
                return Err(DropReason::Malformed);
            };
            // Only a lone C-tag is an access-port frame of ours; QinQ is not.
            match (stack.s_tag, stack.c_tag) {
                (None, Some(_)) => {}
                _ => return Ok(None),
            }
            let (tag, start) = vlan::pop_tag(slot, 0, len).map_err(|_| DropReason::Malformed)?;
            let tci = tag.tci();
            (EtherType::VLAN.0, tci, start..len)
        }
    };
    if tpid != EtherType::VLAN.0 {
        return Ok(None);
    }
    let vid = tci & 0x0fff;
    // VID 0 is a priority tag and 0xfff is reserved (IEEE 802.1Q-2018 table 9-2): no VLAN.
    if vid == 0 || vid == vlan::VID_RESERVED {
        return Ok(None);
    }
    if range.len() < vif_core::wire::ethernet::HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    Ok(Some((vid, range)))
}

/// Hands the last received batch to the segments, one run of same-VID frames at a time.
fn deliver(parent: &ParentShared, state: &mut RxState, now: Instant) {
    state.accepted.clear();
    let mut parent_drops = StatsBatch::new();
    for slot in 0..state.batch.len() {
        let Some((frame, received)) = state.batch.frame_mut(slot) else {
            continue;
        };
        match accept(frame, &received) {
            Ok(Some((vid, range))) => state.accepted.push(Accepted {
                slot,
                vid,
                range: (range.start, range.end),
            }),
            Ok(None) => {}
            Err(reason) => parent_drops.record_drop(reason),
        }
    }
    if !parent_drops.is_empty() {
        parent.stats.rx.publish(&mut parent_drops);
    }
    let vids = parent.vids.read().unwrap_or_else(|e| e.into_inner());
    let mut start = 0;
    while let Some(first) = state.accepted.get(start) {
        let vid = first.vid;
        let run = state
            .accepted
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|accepted| accepted.vid == vid)
            .count();
        if let Some(entry) = vids.get(&vid) {
            deliver_run(entry, state, start..start + run, now);
        }
        start += run;
    }
}

/// Delivers `state.accepted[range]`, all for `entry`'s VID, into its segment.
fn deliver_run(entry: &VidEntry, state: &mut RxState, range: Range<usize>, now: Instant) {
    let RxState {
        batch,
        accepted,
        wakes,
        port_batch,
    } = state;
    let ingress = entry.port_id;
    let pipeline = Pipeline::new(ingress);
    wakes.clear();
    let mut burst = entry.segment.begin_burst(now);
    for accepted in accepted.get(range).unwrap_or_default() {
        let Some((slot, _)) = batch.frame_mut(accepted.slot) else {
            continue;
        };
        let Some(inner) = slot.get(accepted.range.0..accepted.range.1) else {
            continue;
        };
        let frame = FrameRef {
            offload: TxOffload::None,
            bytes: inner,
        };
        // Spread a multi-queue receiver's load by flow, as its guest's own TX would be.
        let flow_hint = FlowKey::extract(inner).map_or(0, |key| key.hash() as u16);
        let cast = MacAddr::from_bytes(inner).map_or(CastKind::Unicast, CastKind::of);
        let verdict = pipeline.classify(inner, &mut burst);
        let burst_ref = &burst;
        let mut owe = |to: PortId, queue: u16| {
            if wakes.len() < wakes.capacity() {
                if !wakes.contains(&(to, queue)) {
                    wakes.push((to, queue));
                }
            } else {
                burst_ref.wake(to, queue);
            }
        };
        match verdict {
            Verdict::Forward(to) => match burst_ref.enqueue(to, frame, flow_hint) {
                Ok(Enqueued::WakeOwed { queue }) => owe(to, queue),
                Ok(Enqueued::Queued) => {}
                Err(reason) => {
                    port_batch.record_drop(reason);
                    continue;
                }
            },
            Verdict::Flood => burst_ref.for_each_other_port(ingress, |to, other| {
                // A copy that does not fit one receiver is that receiver's loss.
                if let Ok(Enqueued::WakeOwed { queue }) = other.enqueue(frame, flow_hint) {
                    owe(to, queue);
                }
            }),
            Verdict::Drop(reason) => {
                port_batch.record_drop(reason);
                continue;
            }
            // No policer on the uplink's ingress: the network cannot be pushed back.
            Verdict::Throttle => {
                port_batch.record_drop(DropReason::RateLimited);
                continue;
            }
        }
        port_batch.record_packet(inner.len(), cast);
    }
    // Learn before waking, so a VIF that answers at once finds the sender known.
    burst.apply_learned();
    for &(to, queue) in wakes.iter() {
        burst.wake(to, queue);
    }
    drop(burst);
    entry.port.stats().rx.publish(port_batch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(len: usize, stripped_tag: Option<(u16, u16)>) -> Received {
        Received {
            len,
            truncated: false,
            pkttype: 3, // PACKET_OTHERHOST
            stripped_tag,
        }
    }

    /// MACs, then `tail` (from the TPID or EtherType on), padded to 60 bytes.
    fn frame(tail: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(tail);
        f.resize(60, 0);
        f
    }

    #[test]
    fn tag_in_the_frame_is_popped() {
        let mut f = frame(&[0x81, 0x00, 0xa0, 0x64, 0x08, 0x00]);
        let (vid, range) = accept(&mut f, &received(60, None)).unwrap().unwrap();
        assert_eq!((vid, range.clone()), (100, 4..60));
        let inner = &f[range];
        assert_eq!(&inner[..12], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&inner[12..14], &[0x08, 0x00]);
    }

    #[test]
    fn tag_in_auxdata_leaves_the_frame_alone() {
        let mut f = frame(&[0x08, 0x00]);
        let got = accept(&mut f, &received(60, Some((0x8100, 0xa064)))).unwrap();
        assert_eq!(got, Some((100, 0..60)));
    }

    #[test]
    fn not_ours_is_skipped_and_bad_is_counted() {
        let mut untagged = frame(&[0x08, 0x00]);
        assert_eq!(accept(&mut untagged, &received(60, None)), Ok(None));
        let mut priority = frame(&[0x08, 0x00]);
        assert_eq!(
            accept(&mut priority, &received(60, Some((0x8100, 0xe000)))),
            Ok(None)
        );
        let mut s_tagged = frame(&[0x08, 0x00]);
        assert_eq!(
            accept(&mut s_tagged, &received(60, Some((0x88a8, 5)))),
            Ok(None)
        );
        let mut qinq = frame(&[0x88, 0xa8, 0, 5, 0x81, 0, 0, 100, 0x08, 0]);
        assert_eq!(accept(&mut qinq, &received(60, None)), Ok(None));
        let mut outgoing = frame(&[0x81, 0x00, 0, 100, 0x08, 0x00]);
        let mine = Received {
            pkttype: PACKET_OUTGOING,
            ..received(60, None)
        };
        assert_eq!(accept(&mut outgoing, &mine), Ok(None));
        let cut = Received {
            truncated: true,
            ..received(60, None)
        };
        assert_eq!(accept(&mut outgoing, &cut), Err(DropReason::MtuExceeded));
        let mut runt = frame(&[0x81, 0x00, 0, 100, 0x08, 0x00]);
        assert_eq!(
            accept(&mut runt, &received(16, None)),
            Err(DropReason::Malformed)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_frames_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            len in 0usize..100,
            tag in proptest::option::of((proptest::prelude::any::<u16>(), proptest::prelude::any::<u16>())),
        ) {
            let mut slot = bytes.clone();
            let received = received(len.min(slot.len()), tag);
            if let Ok(Some((vid, range))) = accept(&mut slot, &received) {
                proptest::prop_assert!((1..4095).contains(&vid));
                proptest::prop_assert!(range.end <= slot.len());
            }
        }
    }
}
