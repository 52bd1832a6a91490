//! The TX and RX paths against split queues built with `virtio_queue::mock::MockSplitQueue`:
//! byte-exact forwarding between two ports of a segment, mergeable RX, and every malicious-guest
//! class from the anchors (§ 8.A) leaving the queue serving the next, valid chain.
//!
//! Frames are built by hand: a 14-byte Ethernet header with locally administered MACs and a
//! counting payload, behind an all-zero virtio-net header (no offload).

use std::sync::Arc;
use std::time::Instant;

use vhost_user_net::device::Negotiated;
use vhost_user_net::inbox::{FrameArena, Inbox, VifPort};
use vhost_user_net::pipeline::Pipeline;
use vhost_user_net::port::PortId;
use vhost_user_net::rx::RxPath;
use vhost_user_net::switch::Segment;
use vhost_user_net::tx::{TxContext, TxPath, TX_BUDGET};
use vif_core::offload::{TxOffload, VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use vif_core::stats::{DropReason, StatsBatch};
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM_SIZE: usize = 0x40_0000;
const QUEUE_SIZE: u16 = 256;
const BUFFERS: u64 = 0x10_0000;
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
    bytes[0..6].copy_from_slice(&dst);
    bytes[6..12].copy_from_slice(&src);
    bytes[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // IEEE 802 local experimental
    bytes
}

fn with_header(frame: &[u8]) -> Vec<u8> {
    let mut bytes = VirtioNetHdr::default().to_bytes().to_vec();
    bytes.extend_from_slice(frame);
    bytes
}

fn desc(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
}

/// A guest's queue: descriptors stored at explicit indices, heads published by hand, so tests
/// can build loops and out-of-range indices the mock's helpers would not.
struct GuestQueue<'a> {
    mock: MockSplitQueue<'a, GuestMemoryMmap>,
    published: u16,
}

impl<'a> GuestQueue<'a> {
    fn new(mem: &'a GuestMemoryMmap, at: u64) -> Self {
        GuestQueue {
            mock: MockSplitQueue::create(mem, GuestAddress(at), QUEUE_SIZE),
            published: 0,
        }
    }

    fn queue(&self) -> Queue {
        self.mock.create_queue().unwrap()
    }

    fn store(&self, index: u16, raw: RawDescriptor) {
        self.mock.desc_table().store(index, raw).unwrap();
    }

    fn publish(&mut self, head: u16) {
        let slot = usize::from(self.published % QUEUE_SIZE);
        self.mock
            .avail()
            .ring()
            .ref_at(slot)
            .unwrap()
            .store(u16::to_le(head));
        self.published = self.published.wrapping_add(1);
        self.mock.avail().idx().store(u16::to_le(self.published));
    }

    fn used(&self, slot: u16) -> (u32, u32) {
        let elem = self
            .mock
            .used()
            .ring()
            .ref_at(usize::from(slot))
            .unwrap()
            .load();
        (elem.id(), elem.len())
    }

    fn used_idx(&self) -> u16 {
        u16::from_le(self.mock.used().idx().load())
    }
}

/// Segment with ports A (the sender, a plain port) and B (the receiver whose inbox we read).
struct Switch {
    segment: Arc<Segment>,
    a: PortId,
    b_port: Arc<VifPort>,
}

fn switch() -> Switch {
    let segment = Segment::new("test");
    let port = |name| {
        let inbox = Inbox::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let port = Arc::new(VifPort::new(name, vec![inbox]));
        port.set_serving(true);
        port
    };
    let a_port = port("a");
    let b_port = port("b");
    let a = segment.attach(a_port).unwrap();
    segment.attach(b_port.clone()).unwrap();
    Switch { segment, a, b_port }
}

fn ctx(switch: &Switch) -> TxContext<'_> {
    TxContext {
        negotiated: Negotiated::default(),
        mtu: 1500,
        segment: &switch.segment,
        pipeline: Pipeline::new(switch.a),
        flow_hint: 0,
        now: Instant::now(),
    }
}

fn inbox_frames(port: &VifPort) -> Vec<Vec<u8>> {
    let mut arena = FrameArena::new();
    port.inbox(0).unwrap().take(&mut arena);
    let mut frames = Vec::new();
    while let Some(frame) = arena.peek() {
        frames.push(frame.bytes.to_vec());
        arena.advance();
    }
    frames
}

fn drops(batch: &StatsBatch, reason: DropReason) -> u64 {
    batch.counts().drops(reason)
}

#[test]
fn tx_forwards_byte_exact_and_returns_chain() {
    let mem = memory();
    let switch = switch();
    let mut guest = GuestQueue::new(&mem, 0);
    let sent = frame(MAC_B, MAC_A, 60);
    let bytes = with_header(&sent);
    // Header and frame split over two descriptors, as Linux does with a linear skb.
    mem.write_slice(&bytes, GuestAddress(BUFFERS)).unwrap();
    guest.store(0, desc(BUFFERS, 12, VRING_DESC_F_NEXT, 1));
    guest.store(1, desc(BUFFERS + 12, 60, 0, 0));
    guest.publish(0);
    let mut queue = guest.queue();
    let mut tx = TxPath::new();
    let outcome = tx.process(&mut queue, &mem, &ctx(&switch));
    assert_eq!(outcome.chains, 1);
    assert!(!outcome.broken && !outcome.budget_exhausted);
    assert_eq!(inbox_frames(&switch.b_port), vec![sent]);
    assert_eq!(guest.used_idx(), 1);
    assert_eq!(guest.used(0), (0, 0));
    assert_eq!(tx.batch.counts().packets, 1);
}

/// One malicious chain at head 0, then a good chain at head 10: the bad one is returned with
/// length 0 and counted, the good one still reaches B.
fn survives(build: impl FnOnce(&GuestMemoryMmap, &GuestQueue), reason: DropReason) {
    let mem = memory();
    let switch = switch();
    let mut guest = GuestQueue::new(&mem, 0);
    build(&mem, &guest);
    guest.publish(0);
    let good = with_header(&frame(MAC_B, MAC_A, 64));
    mem.write_slice(&good, GuestAddress(BUFFERS + 0x8000))
        .unwrap();
    guest.store(10, desc(BUFFERS + 0x8000, good.len() as u32, 0, 0));
    guest.publish(10);
    let mut queue = guest.queue();
    let mut tx = TxPath::new();
    let outcome = tx.process(&mut queue, &mem, &ctx(&switch));
    assert_eq!(outcome.chains, 2, "{reason:?}");
    assert_eq!(drops(&tx.batch, reason), 1, "{reason:?}");
    assert_eq!(
        guest.used(0),
        (0, 0),
        "{reason:?}: bad chain returned empty"
    );
    assert_eq!(guest.used(1), (10, 0));
    assert_eq!(inbox_frames(&switch.b_port).len(), 1, "{reason:?}");
}

#[test]
fn tx_address_outside_memory() {
    survives(
        |_, q| q.store(0, desc(MEM_SIZE as u64 - 8, 72, 0, 0)),
        DropReason::QueueError,
    );
    survives(
        |_, q| q.store(0, desc(u64::MAX - 4, 72, 0, 0)),
        DropReason::QueueError,
    );
}

#[test]
fn tx_descriptor_loop_and_out_of_range_next() {
    // A loop of empty descriptors: the walk ends on the queue-size bound, still saying NEXT.
    survives(
        |_, q| {
            q.store(0, desc(BUFFERS, 0, VRING_DESC_F_NEXT, 1));
            q.store(1, desc(BUFFERS, 0, VRING_DESC_F_NEXT, 0));
        },
        DropReason::QueueError,
    );
    // A loop of non-empty descriptors overruns the longest frame first.
    survives(
        |_, q| {
            q.store(0, desc(BUFFERS, 12, VRING_DESC_F_NEXT, 1));
            q.store(1, desc(BUFFERS, 12, VRING_DESC_F_NEXT, 0));
        },
        DropReason::MtuExceeded,
    );
    survives(
        |_, q| q.store(0, desc(BUFFERS, 72, VRING_DESC_F_NEXT, QUEUE_SIZE + 5)),
        DropReason::QueueError,
    );
}

#[test]
fn tx_write_only_descriptor() {
    survives(
        |m, q| {
            m.write_slice(
                &with_header(&frame(MAC_B, MAC_A, 60)),
                GuestAddress(BUFFERS),
            )
            .unwrap();
            q.store(0, desc(BUFFERS, 72, VRING_DESC_F_WRITE, 0));
        },
        DropReason::QueueError,
    );
}

#[test]
fn tx_chain_shorter_than_header() {
    survives(
        |_, q| q.store(0, desc(BUFFERS, 11, 0, 0)),
        DropReason::QueueError,
    );
}

#[test]
fn tx_indirect_table_abuse() {
    // Length not a multiple of 16.
    survives(
        |_, q| q.store(0, desc(BUFFERS, 17, VRING_DESC_F_INDIRECT, 0)),
        DropReason::QueueError,
    );
    // Nested indirect table.
    survives(
        |m, q| {
            let inner = desc(BUFFERS + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
            m.write_obj(inner, GuestAddress(BUFFERS)).unwrap();
            q.store(0, desc(BUFFERS, 16, VRING_DESC_F_INDIRECT, 0));
        },
        DropReason::QueueError,
    );
    // Indirect table outside memory.
    survives(
        |_, q| q.store(0, desc(MEM_SIZE as u64, 32, VRING_DESC_F_INDIRECT, 0)),
        DropReason::QueueError,
    );
}

#[test]
fn tx_indirect_table_is_read() {
    // A valid indirect chain carries a frame like a direct one.
    let mem = memory();
    let switch = switch();
    let mut guest = GuestQueue::new(&mem, 0);
    let sent = frame(MAC_B, MAC_A, 100);
    mem.write_slice(&with_header(&sent), GuestAddress(BUFFERS))
        .unwrap();
    let table = BUFFERS + 0x1000;
    mem.write_obj(desc(BUFFERS, 12, VRING_DESC_F_NEXT, 1), GuestAddress(table))
        .unwrap();
    mem.write_obj(desc(BUFFERS + 12, 100, 0, 0), GuestAddress(table + 16))
        .unwrap();
    guest.store(3, desc(table, 32, VRING_DESC_F_INDIRECT, 0));
    guest.publish(3);
    let mut queue = guest.queue();
    TxPath::new().process(&mut queue, &mem, &ctx(&switch));
    assert_eq!(inbox_frames(&switch.b_port), vec![sent]);
}

#[test]
fn tx_bogus_offload_metadata() {
    survives(
        |m, q| {
            // NEEDS_CSUM without CSUM negotiated, csum_start past the frame.
            let mut bytes = with_header(&frame(MAC_B, MAC_A, 60));
            bytes[0] = 1;
            bytes[6..8].copy_from_slice(&500u16.to_le_bytes());
            m.write_slice(&bytes, GuestAddress(BUFFERS)).unwrap();
            q.store(0, desc(BUFFERS, bytes.len() as u32, 0, 0));
        },
        DropReason::BadOffload,
    );
}

#[test]
fn tx_avail_index_jump_breaks_only_this_queue() {
    let mem = memory();
    let switch = switch();
    let guest = GuestQueue::new(&mem, 0);
    guest.mock.avail().idx().store(u16::to_le(QUEUE_SIZE + 1));
    let mut queue = guest.queue();
    let mut tx = TxPath::new();
    let outcome = tx.process(&mut queue, &mem, &ctx(&switch));
    assert!(outcome.broken);
    assert_eq!(outcome.chains, 0);
    assert_eq!(guest.used_idx(), 0);
}

#[test]
fn tx_budget_caps_one_pass() {
    let mem = memory();
    let switch = switch();
    let mut guest = GuestQueue::new(&mem, 0);
    let bytes = with_header(&frame(MAC_B, MAC_A, 60));
    mem.write_slice(&bytes, GuestAddress(BUFFERS)).unwrap();
    for head in 0..QUEUE_SIZE {
        guest.store(head, desc(BUFFERS, bytes.len() as u32, 0, 0));
        guest.publish(head);
    }
    let mut queue = guest.queue();
    let mut tx = TxPath::new();
    let first = tx.process(&mut queue, &mem, &ctx(&switch));
    assert_eq!(first.chains, TX_BUDGET);
    assert!(first.budget_exhausted, "ring may hold more: re-arm");
}

/// Posts `count` device-writable buffers of `len` bytes each, one per chain.
fn post_rx(mem: &GuestMemoryMmap, guest: &mut GuestQueue, count: u16, len: u32) {
    let _ = mem;
    for head in 0..count {
        let addr = BUFFERS + u64::from(head) * 0x4000;
        guest.store(head, desc(addr, len, VRING_DESC_F_WRITE, 0));
        guest.publish(head);
    }
}

fn backlog_of(frames: &[Vec<u8>]) -> FrameArena {
    let mut arena = FrameArena::new();
    for bytes in frames {
        assert!(arena.push(vhost_user_net::port::FrameRef {
            offload: TxOffload::None,
            bytes,
        }));
    }
    arena
}

#[test]
fn rx_mergeable_spreads_jumbo_frame_and_counts_buffers() {
    let mem = memory();
    let mut guest = GuestQueue::new(&mem, 0);
    post_rx(&mem, &mut guest, 8, 1500);
    let jumbo = frame(MAC_B, MAC_A, 9000);
    let mut backlog = backlog_of(std::slice::from_ref(&jumbo));
    let mut queue = guest.queue();
    let mut rx = RxPath::new();
    let mrg = Negotiated::from_bits(1 << VIRTIO_NET_F_MRG_RXBUF);
    let outcome = rx.deliver(&mut queue, &mem, &mut backlog, mrg);
    // 12 + 9000 bytes over 1500-byte buffers: 7 chains.
    assert_eq!((outcome.frames, outcome.chains), (1, 7));
    assert!(backlog.is_empty());
    let mut received = Vec::new();
    for slot in 0..7u16 {
        let (id, len) = guest.used(slot);
        assert_eq!(id, u32::from(slot));
        let mut chunk = vec![0u8; len as usize];
        mem.read_slice(&mut chunk, GuestAddress(BUFFERS + u64::from(slot) * 0x4000))
            .unwrap();
        received.extend_from_slice(&chunk);
    }
    let mut header = [0u8; VIRTIO_NET_HDR_LEN];
    header.copy_from_slice(&received[..VIRTIO_NET_HDR_LEN]);
    assert_eq!(VirtioNetHdr::from_bytes(&header).num_buffers, 7);
    assert_eq!(&received[VIRTIO_NET_HDR_LEN..], &jumbo[..]);
    assert_eq!(rx.batch.counts().packets, 1);
}

#[test]
fn rx_without_mergeable_drops_frames_that_do_not_fit_and_keeps_the_buffer() {
    let mem = memory();
    let mut guest = GuestQueue::new(&mem, 0);
    post_rx(&mem, &mut guest, 1, 1500);
    let big = frame(MAC_B, MAC_A, 1600);
    let small = frame(MAC_B, MAC_A, 100);
    let mut backlog = backlog_of(&[big, small.clone()]);
    let mut queue = guest.queue();
    let mut rx = RxPath::new();
    let outcome = rx.deliver(&mut queue, &mem, &mut backlog, Negotiated::default());
    assert_eq!(outcome.frames, 1);
    assert_eq!(drops(&rx.batch, DropReason::RxBufferTooSmall), 1);
    assert_eq!(guest.used(0), (0, (VIRTIO_NET_HDR_LEN + 100) as u32));
    let mut written = vec![0u8; VIRTIO_NET_HDR_LEN + 100];
    mem.read_slice(&mut written, GuestAddress(BUFFERS)).unwrap();
    assert_eq!(
        u16::from_le_bytes([written[10], written[11]]),
        1,
        "num_buffers"
    );
    assert_eq!(&written[VIRTIO_NET_HDR_LEN..], &small[..]);
}

#[test]
fn rx_starves_without_buffers_and_keeps_the_backlog() {
    let mem = memory();
    let mut guest = GuestQueue::new(&mem, 0);
    post_rx(&mem, &mut guest, 2, 1500);
    let frames: Vec<_> = (0..3).map(|_| frame(MAC_B, MAC_A, 1000)).collect();
    let mut backlog = backlog_of(&frames);
    let mut queue = guest.queue();
    let mut rx = RxPath::new();
    let mrg = Negotiated::from_bits(1 << VIRTIO_NET_F_MRG_RXBUF);
    let outcome = rx.deliver(&mut queue, &mem, &mut backlog, mrg);
    assert_eq!(outcome.frames, 2);
    assert!(outcome.starved);
    assert_eq!(backlog.len(), 1, "the third frame waits for buffers");
    assert_eq!(guest.used_idx(), 2);
}

#[test]
fn rx_mergeable_puts_back_a_partial_frame() {
    let mem = memory();
    let mut guest = GuestQueue::new(&mem, 0);
    post_rx(&mem, &mut guest, 2, 1500);
    let mut backlog = backlog_of(&[frame(MAC_B, MAC_A, 4000)]);
    let mut queue = guest.queue();
    let mrg = Negotiated::from_bits(1 << VIRTIO_NET_F_MRG_RXBUF);
    let outcome = RxPath::new().deliver(&mut queue, &mem, &mut backlog, mrg);
    assert!(outcome.starved);
    assert_eq!(outcome.chains, 0);
    assert_eq!(queue.next_avail(), 0, "both chains put back");
    assert_eq!(backlog.len(), 1);
}

#[test]
fn rx_read_only_and_outside_memory_chains_are_returned_empty() {
    let mem = memory();
    let mut guest = GuestQueue::new(&mem, 0);
    guest.store(0, desc(BUFFERS, 1500, 0, 0)); // read-only on RX
    guest.publish(0);
    guest.store(1, desc(MEM_SIZE as u64 - 100, 1500, VRING_DESC_F_WRITE, 0));
    guest.publish(1);
    guest.store(2, desc(BUFFERS + 0x4000, 1500, VRING_DESC_F_WRITE, 0));
    guest.publish(2);
    let sent = frame(MAC_B, MAC_A, 200);
    let mut backlog = backlog_of(std::slice::from_ref(&sent));
    let mut queue = guest.queue();
    let mut rx = RxPath::new();
    let outcome = rx.deliver(&mut queue, &mem, &mut backlog, Negotiated::default());
    assert_eq!(outcome.frames, 1);
    assert_eq!(guest.used(0), (0, 0));
    assert_eq!(guest.used(1), (1, 0));
    assert_eq!(guest.used(2), (2, (VIRTIO_NET_HDR_LEN + 200) as u32));
}

#[test]
fn rx_avail_index_jump_is_reported() {
    let mem = memory();
    let guest = GuestQueue::new(&mem, 0);
    guest.mock.avail().idx().store(u16::to_le(QUEUE_SIZE + 7));
    let mut backlog = backlog_of(&[frame(MAC_B, MAC_A, 60)]);
    let mut queue = guest.queue();
    let outcome = RxPath::new().deliver(&mut queue, &mem, &mut backlog, Negotiated::default());
    assert!(outcome.broken);
}
