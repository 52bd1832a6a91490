//! Unit tests of the split-ring driver, with the test playing the device by writing the used
//! ring directly.

use super::*;
use proptest::prelude::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use virtio_queue::desc::split::Descriptor;
use vm_memory::Le64;

fn ring(size: u16, event_idx: bool) -> (GuestRam, DriverRing) {
    let mut ram = GuestRam::new(0x10_0000, 1 << 20).unwrap();
    let ring = DriverRing::new(0, size, &mut ram, event_idx).unwrap();
    (ram, ring)
}

fn seg(addr: u64, len: u32) -> Segment {
    Segment {
        addr: GuestAddress(addr),
        len,
        device_writable: false,
    }
}

/// Plays the device: marks `head` used with `len` by writing the used ring.
fn device_use(ram: &GuestRam, ring: &DriverRing, head: u32, len: u32) {
    let used_idx = ring.used_idx(ram).unwrap();
    let slot = ring.used_ring().0 + 4 + 8 * u64::from(used_idx & (ring.size() - 1));
    ram.write_obj(
        Le64::from(u64::from(head) | (u64::from(len) << 32)),
        GuestAddress(slot),
    )
    .unwrap();
    ram.store(
        used_idx.wrapping_add(1),
        GuestAddress(ring.used_ring().0 + 2),
        Ordering::Release,
    )
    .unwrap();
}

#[test]
fn need_event_matches_the_spec_examples() {
    // Event at 5: moving 4 -> 6 crosses it, 6 -> 8 does not; wrap-around works the same.
    assert!(vring_need_event(5, 6, 4));
    assert!(!vring_need_event(5, 8, 6));
    assert!(vring_need_event(0xffff, 1, 0xfffe));
    assert!(!vring_need_event(3, 3, 3));
}

#[test]
fn chains_link_through_next_and_free_back() {
    let (ram, mut ring) = ring(8, false);
    let head = ring
        .add_chain(&ram, &[seg(0x10_1000, 12), seg(0x10_2000, 60)])
        .unwrap();
    assert_eq!((head, ring.num_free()), (0, 6));
    let first: Descriptor = ram.read_obj(ring.desc_table()).unwrap();
    assert_eq!(
        (first.len(), first.flags(), first.next()),
        (12, VRING_DESC_F_NEXT, 1)
    );
    let second: Descriptor = ram
        .read_obj(GuestAddress(ring.desc_table().0 + 16))
        .unwrap();
    assert_eq!((second.addr().0, second.flags()), (0x10_2000, 0));
    ring.publish(&ram).unwrap();
    let avail_idx: u16 = ram
        .load(GuestAddress(ring.avail_ring().0 + 2), Ordering::Acquire)
        .unwrap();
    assert_eq!(avail_idx, 1);

    device_use(&ram, &ring, 0, 0);
    let used = ring.pop_used(&ram).unwrap().unwrap();
    assert_eq!((used.id, used.raw), (0, false));
    ring.free_chain(used.id);
    assert_eq!((ring.num_free(), ring.in_flight()), (8, 0));
    // LIFO free list: the freed chain is reused first.
    assert_eq!(ring.next_free_head(), Some(0));
}

#[test]
fn device_lies_are_caught() {
    let (ram, mut ring) = ring(8, false);
    ring.add_chain(&ram, &[seg(0x10_1000, 64)]).unwrap();
    ring.publish(&ram).unwrap();
    device_use(&ram, &ring, 9, 0);
    assert!(matches!(
        ring.pop_used(&ram),
        Err(GuestError::UsedIdOutOfRange { id: 9, .. })
    ));
    device_use(&ram, &ring, 3, 0);
    assert!(matches!(
        ring.pending_used(&ram),
        Err(GuestError::UsedIdxJump { .. })
    ));
}

#[test]
fn kicks_follow_avail_event() {
    let (ram, mut ring) = ring(8, true);
    // avail_event = 0: the first entry (idx 0 -> 1) crosses it, the second does not.
    ring.add_chain(&ram, &[seg(0x10_1000, 64)]).unwrap();
    ring.publish(&ram).unwrap();
    assert!(ring.kick_if_needed(&ram).unwrap());
    ring.add_chain(&ram, &[seg(0x10_1000, 64)]).unwrap();
    ring.publish(&ram).unwrap();
    assert!(!ring.kick_if_needed(&ram).unwrap());
    assert_eq!(ring.kick_fd().read().unwrap(), 1);
}

#[test]
fn wait_times_out_and_wakes_on_call() {
    let (ram, mut ring) = ring(8, true);
    ring.add_chain(&ram, &[seg(0x10_1000, 64)]).unwrap();
    ring.publish(&ram).unwrap();
    let err = ring
        .wait_used(&ram, 0, Instant::now(), "wait", Duration::ZERO)
        .unwrap_err();
    assert!(matches!(err, GuestError::Timeout { .. }));
    device_use(&ram, &ring, 0, 0);
    ring.call_fd().write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    ring.wait_used(&ram, 0, deadline, "wait", Duration::from_secs(5))
        .unwrap();
    assert_eq!(ring.pending_used(&ram).unwrap(), 1);
}

#[test]
fn indirect_chain_uses_one_ring_descriptor() {
    let (mut ram, mut ring) = ring(8, false);
    let head = ring
        .add_indirect(&mut ram, &[seg(0x10_1000, 12), seg(0x10_2000, 100)])
        .unwrap();
    assert_eq!(ring.num_free(), 7);
    let desc: Descriptor = ram
        .read_obj(GuestAddress(ring.desc_table().0 + 16 * u64::from(head)))
        .unwrap();
    assert_eq!((desc.flags(), desc.len()), (VRING_DESC_F_INDIRECT, 32));
    let inner: Descriptor = ram.read_obj(GuestAddress(desc.addr().0 + 16)).unwrap();
    assert_eq!((inner.addr().0, inner.len()), (0x10_2000, 100));
}

/// Every descriptor is either on the free list or in exactly one live chain, and the free
/// list holds exactly `num_free` distinct entries.
fn assert_descriptors_accounted(ring: &DriverRing) {
    let size = usize::from(ring.size);
    let mut owner = vec![false; size];
    let mut index = ring.free_head;
    for _ in 0..ring.num_free {
        let slot = &mut owner[usize::from(index)];
        assert!(!*slot, "descriptor {index} twice on the free list");
        *slot = true;
        index = ring.links[usize::from(index)];
    }
    for (head, chain) in ring.chains.iter().enumerate() {
        if matches!(chain.state, HeadState::InFlight | HeadState::Completed) {
            let mut index = head as u16;
            for _ in 0..chain.desc_count {
                let slot = &mut owner[usize::from(index)];
                assert!(!*slot, "descriptor {index} in two places");
                *slot = true;
                index = ring.links[usize::from(index)];
            }
        }
    }
    assert!(owner.iter().all(|owned| *owned), "a descriptor leaked");
}

#[derive(Debug, Clone)]
enum Op {
    /// Add a chain of this many descriptors.
    Add(usize),
    /// The device completes the in-flight chain at this position (out of order).
    Complete(usize),
}

proptest! {
    /// Differential against a list of in-flight heads: chains added and completed in any order
    /// never lose or share a descriptor, and the driver pops exactly what the device used.
    #[test]
    fn free_list_survives_out_of_order_completion(
        ops in proptest::collection::vec(
            prop_oneof![
                (1usize..5).prop_map(Op::Add),
                (0usize..16).prop_map(Op::Complete),
            ],
            1..200,
        )
    ) {
        let (ram, mut ring) = ring(16, false);
        let mut in_flight: Vec<u16> = Vec::new();
        for op in ops {
            match op {
                Op::Add(n) => {
                    let segments = vec![seg(0x10_1000, 64); n];
                    match ring.add_chain(&ram, &segments) {
                        Ok(head) => in_flight.push(head),
                        Err(GuestError::RingFull { .. }) => {
                            prop_assert!(usize::from(ring.num_free()) < n)
                        }
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                    ring.publish(&ram).unwrap();
                }
                Op::Complete(at) if !in_flight.is_empty() => {
                    let head = in_flight.remove(at % in_flight.len());
                    device_use(&ram, &ring, u32::from(head), 0);
                    let used = ring.pop_used(&ram).unwrap().unwrap();
                    prop_assert_eq!(used.id, head);
                    ring.free_chain(used.id);
                }
                Op::Complete(_) => {}
            }
            assert_descriptors_accounted(&ring);
            prop_assert_eq!(usize::from(ring.in_flight()), in_flight.len());
        }
    }
}
