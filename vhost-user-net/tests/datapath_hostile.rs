//! Malicious guests through vhost-user (anchors § 8.A): each hostile chain on A's queues is
//! returned or contained, and afterwards A still transmits and another VIF (C → B) is served.
//! Uses `VirtualGuest::raw_queue`, which writes exactly the descriptors the test asks for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_net::backend::NetBackend;
use vhost_user_net::switch::Segment;
use vif_core::mac::MacAddr;
use vif_core::model::{LocalUplink, UplinkSpec, VifId, VifSpec};
use vif_core::offload::VirtioNetHdr;
use vif_core::stats::DropReason;
use vmm_integration::guest::{GuestConfig, RawQueue, VirtualGuest, VringDesc};
use vmm_sys_util::tempdir::TempDir;

const WAIT: Duration = Duration::from_secs(5);
const TX: u16 = 1;
const RX: u16 = 0;

/// A directory for this test's sockets: vmm-sys-util's `TempDir`, removed on drop.
struct SocketDir(PathBuf, #[allow(dead_code)] TempDir);

impl SocketDir {
    fn new(test: &str) -> SocketDir {
        let dir =
            TempDir::new_with_prefix(std::env::temp_dir().join(format!("vif-hostile-{test}-")))
                .unwrap();
        SocketDir(dir.as_path().to_path_buf(), dir)
    }
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

struct Vif {
    backend: Arc<NetBackend>,
    guest: VirtualGuest,
}

fn vif(segment: &Arc<Segment>, dir: &Path, name: &str, last: u8) -> Vif {
    let spec = VifSpec::new(
        VifId::new(name).unwrap(),
        mac(last),
        UplinkSpec::Local(LocalUplink {
            segment: "seg".into(),
        }),
    );
    let backend = NetBackend::new(&spec, segment.clone()).unwrap();
    let path = dir.join(format!("{name}.sock"));
    let mut listener = Listener::new(&path, true).unwrap();
    let mut daemon = backend.new_daemon(name).unwrap();
    thread::spawn(move || {
        if daemon.start(&mut listener).is_ok() {
            let _ = daemon.wait();
        }
    });
    let mut guest = VirtualGuest::connect(&path, GuestConfig::default()).unwrap();
    guest.post_rx_buffers(0, 64, 2048).unwrap();
    Vif { backend, guest }
}

fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
    bytes[0..6].copy_from_slice(dst.as_bytes());
    bytes[6..12].copy_from_slice(src.as_bytes());
    bytes[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    bytes
}

fn with_header(frame: &[u8]) -> Vec<u8> {
    let mut bytes = VirtioNetHdr::default().to_bytes().to_vec();
    bytes.extend_from_slice(frame);
    bytes
}

/// A, B and C on one segment; `hostile` abuses A's TX queue; returns the used element of the
/// hostile chain, after checking that A → B and C → B still work.
fn after_hostile_tx(test: &str, hostile: impl FnOnce(&mut RawQueue<'_>) -> u16) -> (Vif, u32) {
    let dir = SocketDir::new(test);
    let segment = Segment::new("seg");
    let mut a = vif(&segment, &dir.0, "a", 1);
    let mut b = vif(&segment, &dir.0, "b", 2);
    let mut c = vif(&segment, &dir.0, "c", 3);
    let used_len = {
        let mut raw = a.guest.raw_queue(TX).unwrap();
        let before = raw.used_idx().unwrap();
        let head = hostile(&mut raw);
        raw.kick().unwrap();
        raw.wait_used(1, WAIT).unwrap();
        let (id, len) = raw.used_elem(before).unwrap();
        assert_eq!(
            id,
            u32::from(head),
            "{test}: the hostile chain is the one returned"
        );
        len
    };
    let from_a = frame(mac(2), mac(1), 80);
    a.guest.send(0, &VirtioNetHdr::default(), &from_a).unwrap();
    assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, from_a, "{test}");
    let from_c = frame(mac(2), mac(3), 90);
    c.guest.send(0, &VirtioNetHdr::default(), &from_c).unwrap();
    assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, from_c, "{test}");
    (a, used_len)
}

fn tx_drops(vif: &Vif, reason: DropReason) -> u64 {
    vif.backend.stats().snapshot().tx.drops(reason)
}

#[test]
fn address_outside_guest_memory() {
    let (a, len) = after_hostile_tx("outside", |raw| {
        let d = raw.take_descriptors(1).unwrap();
        raw.write_desc(d[0], VringDesc::readable(raw.mem_end() - 16, 100))
            .unwrap();
        raw.push_avail(d[0]).unwrap();
        d[0]
    });
    assert_eq!(len, 0);
    assert_eq!(tx_drops(&a, DropReason::QueueError), 1);
}

#[test]
fn descriptor_loop() {
    let (a, len) = after_hostile_tx("loop", |raw| {
        let d = raw.take_descriptors(2).unwrap();
        let base = raw.mem_base();
        raw.write_desc(d[0], VringDesc::readable(base, 0).with_next(d[1]))
            .unwrap();
        raw.write_desc(d[1], VringDesc::readable(base, 0).with_next(d[0]))
            .unwrap();
        raw.push_avail(d[0]).unwrap();
        d[0]
    });
    assert_eq!(len, 0);
    assert_eq!(tx_drops(&a, DropReason::QueueError), 1);
}

#[test]
fn next_index_out_of_range() {
    let (a, _) = after_hostile_tx("next", |raw| {
        let d = raw.take_descriptors(1).unwrap();
        let size = raw.size();
        raw.write_desc(
            d[0],
            VringDesc::readable(raw.mem_base(), 64).with_next(size + 3),
        )
        .unwrap();
        raw.push_avail(d[0]).unwrap();
        d[0]
    });
    assert_eq!(tx_drops(&a, DropReason::QueueError), 1);
}

#[test]
fn indirect_table_abuse() {
    let (a, _) = after_hostile_tx("indirect", |raw| {
        let d = raw.take_descriptors(1).unwrap();
        // 17 bytes: not a whole number of 16-byte descriptors.
        let table = raw.alloc(64).unwrap();
        raw.write_desc(
            d[0],
            VringDesc::readable(table, 17).with_flags(VringDesc::F_INDIRECT),
        )
        .unwrap();
        raw.push_avail(d[0]).unwrap();
        d[0]
    });
    assert_eq!(tx_drops(&a, DropReason::QueueError), 1);
}

#[test]
fn write_only_buffer_on_tx() {
    let (a, _) = after_hostile_tx("writeonly", |raw| {
        let d = raw.take_descriptors(1).unwrap();
        let bytes = with_header(&frame(mac(2), mac(1), 60));
        let addr = raw.alloc(bytes.len() as u64).unwrap();
        raw.write_bytes(addr, &bytes).unwrap();
        raw.write_desc(d[0], VringDesc::writable(addr, bytes.len() as u32))
            .unwrap();
        raw.push_avail(d[0]).unwrap();
        d[0]
    });
    assert_eq!(tx_drops(&a, DropReason::QueueError), 1);
}

#[test]
fn chain_shorter_than_header() {
    let (a, _) = after_hostile_tx("short", |raw| {
        let d = raw.take_descriptors(1).unwrap();
        let addr = raw.alloc(16).unwrap();
        raw.write_desc(d[0], VringDesc::readable(addr, 11)).unwrap();
        raw.push_avail(d[0]).unwrap();
        d[0]
    });
    assert_eq!(tx_drops(&a, DropReason::QueueError), 1);
}

#[test]
fn bogus_offload_metadata() {
    let (a, _) = after_hostile_tx("offload", |raw| {
        let d = raw.take_descriptors(1).unwrap();
        let mut bytes = with_header(&frame(mac(2), mac(1), 60));
        // NEEDS_CSUM with csum_start past the frame (DPDK CVE-2024-11614).
        bytes[0] = 1;
        bytes[6..8].copy_from_slice(&4000u16.to_le_bytes());
        let addr = raw.alloc(bytes.len() as u64).unwrap();
        raw.write_bytes(addr, &bytes).unwrap();
        raw.write_desc(d[0], VringDesc::readable(addr, bytes.len() as u32))
            .unwrap();
        raw.push_avail(d[0]).unwrap();
        d[0]
    });
    assert_eq!(tx_drops(&a, DropReason::BadOffload), 1);
}

#[test]
fn avail_index_jump_stops_only_that_queue() {
    let dir = SocketDir::new("jump");
    let segment = Segment::new("seg");
    let mut a = vif(&segment, &dir.0, "a", 1);
    let mut b = vif(&segment, &dir.0, "b", 2);
    let mut c = vif(&segment, &dir.0, "c", 3);
    {
        let mut raw = a.guest.raw_queue(TX).unwrap();
        let jump = raw.avail_idx().wrapping_add(raw.size() + 10);
        raw.set_avail_idx(jump).unwrap();
        raw.kick().unwrap();
    }
    // Other VIFs keep working, and A still receives (only its TX queue is stopped). Both
    // destinations are unknown to the switch, so B sees both frames (flooded).
    let to_a = frame(mac(1), mac(3), 70);
    c.guest.send(0, &VirtioNetHdr::default(), &to_a).unwrap();
    assert_eq!(a.guest.recv_timeout(0, WAIT).unwrap().1, to_a);
    let to_b = frame(mac(2), mac(3), 71);
    c.guest.send(0, &VirtioNetHdr::default(), &to_b).unwrap();
    assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, to_a);
    assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, to_b);
    assert_eq!(tx_drops(&a, DropReason::QueueError), 1);
}

#[test]
fn read_only_buffer_on_rx_is_returned_empty() {
    let dir = SocketDir::new("rxro");
    let segment = Segment::new("seg");
    let mut b = vif(&segment, &dir.0, "b", 2);
    let mut c = vif(&segment, &dir.0, "c", 3);
    // B's 64 normal buffers were posted at setup; a read-only "receive" buffer follows them.
    let head = {
        let mut raw = b.guest.raw_queue(RX).unwrap();
        let d = raw.take_descriptors(1).unwrap();
        let addr = raw.alloc(2048).unwrap();
        raw.write_desc(d[0], VringDesc::readable(addr, 2048))
            .unwrap();
        raw.push_avail(d[0]).unwrap();
        d[0]
    };
    // 64 normal buffers come first, then the hostile one. The guest re-posts each buffer it
    // receives, so every frame still arrives; one of them skips over the hostile chain.
    for n in 0..65usize {
        let sent = frame(mac(2), mac(3), 60 + n);
        c.guest.send(0, &VirtioNetHdr::default(), &sent).unwrap();
        assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, sent);
    }
    let raw = b.guest.raw_queue(RX).unwrap();
    let used = raw.used_idx().unwrap();
    let returned = (1..=used)
        .map(|back| raw.used_elem(used.wrapping_sub(back)).unwrap())
        .any(|elem| elem == (u32::from(head), 0));
    assert!(returned, "the read-only chain is returned with length 0");
    let drops = b
        .backend
        .stats()
        .snapshot()
        .rx
        .drops(DropReason::QueueError);
    assert_eq!(drops, 1);
}
