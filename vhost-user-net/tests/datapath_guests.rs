//! End to end through vhost-user: each VIF's `NetBackend` is served in-process by a
//! `VhostUserDaemon` on a socket in a temporary directory, and `vmm_integration::guest::VirtualGuest`
//! drives it as a guest's virtio-net driver would. Every wait has a deadline (the guest's
//! `op_timeout` and the explicit `recv_timeout`s), so a broken datapath fails instead of hanging.
//!
//! Frames are built by hand: Ethernet header with locally administered MACs, EtherType 0x88b5
//! (IEEE 802 local experimental), counting payload; virtio-net header all zero.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserBackend;
use vhost_user_net::backend::NetBackend;
use vhost_user_net::switch::Segment;
use vif_core::mac::MacAddr;
use vif_core::model::{LocalUplink, UplinkSpec, VifId, VifSpec};
use vif_core::offload::VirtioNetHdr;
use vmm_integration::guest::{feature, GuestConfig, VirtualGuest};
use vmm_sys_util::tempdir::TempDir;

const WAIT: Duration = Duration::from_secs(5);
/// How long to wait for a frame that must not arrive.
const QUIET: Duration = Duration::from_millis(200);

/// A directory for this test's sockets: vmm-sys-util's `TempDir`, removed on drop.
struct SocketDir(PathBuf, #[allow(dead_code)] TempDir);

impl SocketDir {
    fn new(test: &str) -> SocketDir {
        let dir =
            TempDir::new_with_prefix(std::env::temp_dir().join(format!("vif-datapath-{test}-")))
                .unwrap();
        SocketDir(dir.as_path().to_path_buf(), dir)
    }
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

fn spec(name: &str, mac: MacAddr, mtu: u16, queue_pairs: u16) -> VifSpec {
    let mut spec = VifSpec::new(
        VifId::new(name).unwrap(),
        mac,
        UplinkSpec::Local(LocalUplink {
            segment: "seg".into(),
        }),
    );
    spec.mtu = mtu;
    spec.queue_pairs = queue_pairs;
    spec
}

/// Serves `backend` on `dir/name.sock` for one connection, then tells it the frontend left, as
/// the daemon does; returns the socket path and the serving thread.
fn serve_once(
    backend: &Arc<NetBackend>,
    dir: &Path,
    name: &str,
) -> (PathBuf, thread::JoinHandle<()>) {
    let path = dir.join(format!("{name}.sock"));
    let mut listener = Listener::new(&path, true).unwrap();
    let mut daemon = backend.new_daemon(name).unwrap();
    let backend = backend.clone();
    let serving = thread::spawn(move || {
        if daemon.start(&mut listener).is_ok() {
            let _ = daemon.wait();
        }
        backend.disconnected();
    });
    (path, serving)
}

fn serve(backend: &Arc<NetBackend>, dir: &Path, name: &str) -> PathBuf {
    serve_once(backend, dir, name).0
}

struct Vif {
    backend: Arc<NetBackend>,
    guest: VirtualGuest,
}

fn vif(segment: &Arc<Segment>, dir: &Path, spec: VifSpec, cfg: GuestConfig) -> Vif {
    let backend = NetBackend::new(&spec, segment.clone()).unwrap();
    let path = serve(&backend, dir, spec.id.as_str());
    let guest = VirtualGuest::connect(&path, cfg).unwrap();
    Vif { backend, guest }
}

fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    bytes[0..6].copy_from_slice(dst.as_bytes());
    bytes[6..12].copy_from_slice(src.as_bytes());
    bytes[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    bytes
}

fn cfg() -> GuestConfig {
    GuestConfig {
        tx_buf_len: 16384,
        ..GuestConfig::default()
    }
}

#[test]
fn handshake_offers_the_spec_features_and_config() {
    let dir = SocketDir::new("handshake");
    let segment = Segment::new("seg");
    let a = vif(&segment, &dir.0, spec("a", mac(1), 1500, 1), cfg());
    for bit in [
        feature::VERSION_1,
        feature::MAC,
        feature::MTU,
        feature::STATUS,
        feature::MRG_RXBUF,
        feature::EVENT_IDX,
        feature::INDIRECT_DESC,
        feature::CSUM,
        feature::GUEST_CSUM,
    ] {
        assert!(a.guest.has_feature(bit), "{}", feature::name(bit));
    }
    assert!(!a.guest.has_feature(feature::MQ), "one pair: no MQ");
    let config = a.guest.net_config().unwrap();
    assert_eq!(config.mac, Some(mac(1)));
    assert_eq!(config.mtu, Some(1500));
    assert_eq!(config.link_up(), Some(true));
    assert_eq!(a.backend.features(), a.backend.device().features());
}

#[test]
fn unicast_a_to_b_byte_exact_and_broadcast_skips_sender() {
    let dir = SocketDir::new("unicast");
    let segment = Segment::new("seg");
    let mut a = vif(&segment, &dir.0, spec("a", mac(1), 1500, 1), cfg());
    let mut b = vif(&segment, &dir.0, spec("b", mac(2), 1500, 1), cfg());
    let mut c = vif(&segment, &dir.0, spec("c", mac(3), 1500, 1), cfg());
    for v in [&mut a, &mut b, &mut c] {
        v.guest.post_rx_buffers(0, 64, 2048).unwrap();
    }
    // Unknown unicast floods; then B answers and A's MAC is known.
    let to_b = frame(mac(2), mac(1), 60);
    a.guest.send(0, &VirtioNetHdr::default(), &to_b).unwrap();
    let (_, got) = b.guest.recv_timeout(0, WAIT).unwrap();
    assert_eq!(got, to_b);
    let to_a = frame(mac(1), mac(2), 300);
    b.guest.send(0, &VirtioNetHdr::default(), &to_a).unwrap();
    let (hdr, got) = a.guest.recv_timeout(0, WAIT).unwrap();
    assert_eq!(got, to_a);
    assert_eq!(hdr.num_buffers, 1);
    // C got A's flooded frame but not B's known-unicast answer.
    assert_eq!(c.guest.recv_timeout(0, WAIT).unwrap().1, to_b);
    assert!(c.guest.recv_timeout(0, QUIET).is_err());

    let broadcast = frame(MacAddr::BROADCAST, mac(1), 64);
    a.guest
        .send(0, &VirtioNetHdr::default(), &broadcast)
        .unwrap();
    assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, broadcast);
    assert_eq!(c.guest.recv_timeout(0, WAIT).unwrap().1, broadcast);
    assert!(a.guest.recv_timeout(0, QUIET).is_err(), "no hairpin");

    let stats = a.backend.stats().snapshot();
    assert_eq!(stats.tx.packets, 2);
    assert_eq!(stats.rx.packets, 1);
}

#[test]
fn jumbo_frame_into_small_buffers_through_mergeable_rx() {
    let dir = SocketDir::new("jumbo");
    let segment = Segment::new("seg");
    let mut a = vif(&segment, &dir.0, spec("a", mac(1), 9000, 1), cfg());
    let mut b = vif(&segment, &dir.0, spec("b", mac(2), 9000, 1), cfg());
    b.guest.post_rx_buffers(0, 64, 1500).unwrap();
    let jumbo = frame(mac(2), mac(1), 9014);
    a.guest.send(0, &VirtioNetHdr::default(), &jumbo).unwrap();
    let (hdr, got) = b.guest.recv_timeout(0, WAIT).unwrap();
    assert_eq!(got, jumbo);
    // 12 + 9014 bytes over 1500-byte buffers.
    assert_eq!(hdr.num_buffers, 7);
}

#[test]
fn event_idx_off_still_delivers() {
    let dir = SocketDir::new("noeventidx");
    let segment = Segment::new("seg");
    let no_event_idx = cfg().with_feature(feature::EVENT_IDX, false);
    let mut a = vif(
        &segment,
        &dir.0,
        spec("a", mac(1), 1500, 1),
        no_event_idx.clone(),
    );
    let mut b = vif(&segment, &dir.0, spec("b", mac(2), 1500, 1), no_event_idx);
    assert!(!a.guest.has_feature(feature::EVENT_IDX));
    b.guest.post_rx_buffers(0, 128, 2048).unwrap();
    for n in 0..50usize {
        let sent = frame(mac(2), mac(1), 60 + n);
        a.guest.send(0, &VirtioNetHdr::default(), &sent).unwrap();
        assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, sent);
    }
}

#[test]
fn without_mergeable_one_buffer_per_packet() {
    let dir = SocketDir::new("nomrg");
    let segment = Segment::new("seg");
    let no_mrg = cfg().with_feature(feature::MRG_RXBUF, false);
    let mut a = vif(&segment, &dir.0, spec("a", mac(1), 9000, 1), no_mrg.clone());
    let mut b = vif(&segment, &dir.0, spec("b", mac(2), 9000, 1), no_mrg);
    b.guest.post_rx_buffers(0, 8, 1536).unwrap();
    a.guest
        .send(0, &VirtioNetHdr::default(), &frame(mac(2), mac(1), 4000))
        .unwrap();
    let small = frame(mac(2), mac(1), 1000);
    a.guest.send(0, &VirtioNetHdr::default(), &small).unwrap();
    let (hdr, got) = b.guest.recv_timeout(0, WAIT).unwrap();
    assert_eq!(got, small, "the 4000-byte frame did not fit one buffer");
    assert_eq!(hdr.num_buffers, 1);
    let drops = b
        .backend
        .stats()
        .snapshot()
        .rx
        .drops(vif_core::stats::DropReason::RxBufferTooSmall);
    assert_eq!(drops, 1);
}

#[test]
fn two_queue_pairs_each_carry_traffic() {
    let dir = SocketDir::new("mq");
    let segment = Segment::new("seg");
    let two = cfg().with_queue_pairs(2);
    let mut a = vif(&segment, &dir.0, spec("a", mac(1), 1500, 2), two.clone());
    let mut b = vif(&segment, &dir.0, spec("b", mac(2), 1500, 2), two);
    assert!(a.guest.has_feature(feature::MQ));
    for qp in 0..2 {
        b.guest.post_rx_buffers(qp, 32, 2048).unwrap();
    }
    for qp in 0..2u16 {
        let sent = frame(mac(2), mac(1), 100 + usize::from(qp));
        a.guest.send(qp, &VirtioNetHdr::default(), &sent).unwrap();
        // A's pair i feeds B's pair i (the flow hint is the sender's pair).
        assert_eq!(b.guest.recv_timeout(qp, WAIT).unwrap().1, sent);
    }
}

#[test]
fn reconnect_serves_the_same_backend_from_a_clean_state() {
    let dir = SocketDir::new("reconnect");
    let segment = Segment::new("seg");
    let a_backend = NetBackend::new(&spec("a", mac(1), 1500, 1), segment.clone()).unwrap();
    let (path, serving) = serve_once(&a_backend, &dir.0, "a");
    let mut a = VirtualGuest::connect(&path, cfg()).unwrap();
    let features = a.features();
    let mut b = vif(&segment, &dir.0, spec("b", mac(2), 1500, 1), cfg());
    b.guest.post_rx_buffers(0, 16, 2048).unwrap();
    let sent = frame(mac(2), mac(1), 60);
    a.send(0, &VirtioNetHdr::default(), &sent).unwrap();
    assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, sent);
    assert!(segment.lookup(mac(1)).is_some());

    // The frontend leaves: the port leaves the segment and its MACs the FDB.
    drop(a);
    serving.join().unwrap();
    assert_eq!(segment.lookup(mac(1)), None);
    assert_eq!(a_backend.port_id(), None);

    // Served again: same features offered, traffic flows.
    let (path, _serving) = serve_once(&a_backend, &dir.0, "a-again");
    let mut a = VirtualGuest::connect(&path, cfg()).unwrap();
    assert_eq!(a.features(), features);
    a.send(0, &VirtioNetHdr::default(), &sent).unwrap();
    assert_eq!(b.guest.recv_timeout(0, WAIT).unwrap().1, sent);
}
