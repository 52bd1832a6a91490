//! Two VTEPs in this process, on 127.0.0.1 and 127.0.0.2 (all of 127/8 is loopback on Linux)
//! with the same UDP port, each VNI on a segment whose other port records what it gets. Covers
//! both transmit modes, learning, VNI isolation, head-end replication, offloads, the MTU drop
//! and hostile datagrams. Every wait has a deadline; the namespace tests in
//! `tests/uplink_vxlan*.rs` cover the kernel's VXLAN and IPv6.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vif_core::offload::{validate, GsoType, TxOffload, TxOffloadCaps, VirtioNetHdr};
use vif_core::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use vif_core::wire::tcp::TcpPacket;
use vif_core::wire::Csum;

use super::*;
use crate::pipeline::{Pipeline, Verdict};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(200);

/// A port that hands every frame to a channel.
struct ChannelPort(Mutex<Sender<Vec<u8>>>);

impl Port for ChannelPort {
    fn name(&self) -> &str {
        "channel"
    }
    fn enqueue(&self, frame: FrameRef<'_>, _flow_hint: u16) -> Result<Enqueued, DropReason> {
        let _ = self.0.lock().unwrap().send(frame.bytes.to_vec());
        Ok(Enqueued::Queued)
    }
    fn wake(&self, _queue: u16) {}
}

/// A segment with a recording "VIF" port.
struct Side {
    segment: Arc<Segment>,
    vif: PortId,
    frames: Receiver<Vec<u8>>,
}

fn side(name: &str) -> Side {
    let segment = Segment::new(name);
    let (tx, frames) = channel();
    let vif = segment
        .attach(Arc::new(ChannelPort(Mutex::new(tx))))
        .unwrap();
    Side {
        segment,
        vif,
        frames,
    }
}

impl Side {
    /// Sends `frame` into the segment from the VIF port, as `tx.rs` does; returns the drop
    /// reason the uplink gave a forwarded frame.
    fn send(&self, offload: TxOffload, frame: &[u8]) -> Result<(), DropReason> {
        let mut burst = self.segment.begin_burst(Instant::now());
        let frame_ref = FrameRef {
            offload,
            bytes: frame,
        };
        let mut wakes = Vec::new();
        let mut result = Ok(());
        match Pipeline::new(self.vif).classify(frame, &mut burst) {
            Verdict::Forward(to) => match burst.enqueue(to, frame_ref, 0) {
                Ok(Enqueued::WakeOwed { queue }) => wakes.push((to, queue)),
                Ok(Enqueued::Queued) => {}
                Err(reason) => result = Err(reason),
            },
            Verdict::Flood => {
                burst.for_each_other_port(self.vif, |to, port| match port.enqueue(frame_ref, 0) {
                    Ok(Enqueued::WakeOwed { queue }) => wakes.push((to, queue)),
                    Ok(Enqueued::Queued) => {}
                    Err(reason) => result = Err(reason),
                })
            }
            other => panic!("unexpected verdict {other:?}"),
        }
        burst.apply_learned();
        for (to, queue) in wakes {
            burst.wake(to, queue);
        }
        result
    }

    fn recv(&self) -> Vec<u8> {
        self.frames.recv_timeout(WAIT).expect("frame within 5 s")
    }

    fn quiet(&self) -> bool {
        self.frames.recv_timeout(QUIET).is_err()
    }
}

fn lo(last: u8) -> IpAddr {
    Ipv4Addr::new(127, 0, 0, last).into()
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

fn vni(n: u32) -> Vni {
    Vni::new(n).unwrap()
}

/// Frames of IEEE 802 local experimental EtherType 0x88b5 with counting payload.
fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
    bytes[0..6].copy_from_slice(dst.as_bytes());
    bytes[6..12].copy_from_slice(src.as_bytes());
    bytes[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    bytes
}

/// Binds VTEPs on 127.0.0.1 and 127.0.0.2 with one free port, in `mode`.
fn vtep_pair(mode: TxMode) -> (Vtep, Vtep) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..64 {
        let port =
            20000 + (std::process::id() as u16 % 20000) + NEXT.fetch_add(7, Ordering::Relaxed);
        let config = |last| VtepConfig {
            tx_mode: Some(mode),
            ..VtepConfig::new(lo(last), port)
        };
        if let (Ok(a), Ok(b)) = (Vtep::bind(config(1)), Vtep::bind(config(2))) {
            return (a, b);
        }
    }
    panic!("no free UDP port pair on loopback");
}

fn vni_config(n: u32, remotes: &[IpAddr]) -> VniConfig {
    VniConfig {
        vni: vni(n),
        remotes: remotes.to_vec(),
        underlay_mtu: 1500,
        ageing: DEFAULT_AGEING,
    }
}

/// Polls `condition` until it holds or the deadline passes.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::yield_now();
    }
    condition()
}

fn round_trip_learns(mode: TxMode) {
    let (a, b) = vtep_pair(mode);
    assert_eq!(a.tx_mode(), mode);
    let (side_a, side_b, side_b2) = (side("a"), side("b"), side("b2"));
    let port_a = a
        .add_vni(&vni_config(10, &[lo(2)]), &side_a.segment)
        .unwrap();
    let port_b = b
        .add_vni(&vni_config(10, &[lo(1)]), &side_b.segment)
        .unwrap();
    // Another tenant on B's VTEP, with A as its remote too.
    b.add_vni(&vni_config(30, &[lo(1)]), &side_b2.segment)
        .unwrap();

    let hello = frame(MacAddr::BROADCAST, mac(1), 60);
    side_a.send(TxOffload::None, &hello).unwrap();
    assert_eq!(side_b.recv(), hello, "flooded to the remote, byte exact");
    assert_eq!(port_b.learned_remote(mac(1)), Some(lo(1)));

    let reply = frame(mac(1), mac(2), 1400);
    side_b.send(TxOffload::None, &reply).unwrap();
    assert_eq!(side_a.recv(), reply);
    assert_eq!(port_a.learned_remote(mac(2)), Some(lo(2)));
    // The segment learned the remote MAC behind the uplink port (at the end of the burst,
    // which the recording port does not wait for).
    assert!(eventually(
        || side_a.segment.lookup(mac(2)) == port_a.port_id()
    ));

    assert!(side_b2.quiet(), "VNI 30 saw nothing of VNI 10");
    // Counters are published after the send, and the recording port sees frames before the
    // end of the receive batch.
    assert!(eventually(|| port_a.stats().tx.snapshot().packets == 1));
    assert!(eventually(|| port_a.stats().rx.snapshot().packets == 1));
    assert!(eventually(|| port_b.stats().tx.snapshot().bytes == 1400));
}

#[test]
fn raw_mode_round_trip_learns_and_isolates_vnis() {
    round_trip_learns(TxMode::Raw);
}

#[test]
fn udp_mode_round_trip_learns_and_isolates_vnis() {
    round_trip_learns(TxMode::Udp);
}

#[test]
fn floods_replicate_to_every_static_remote_and_unicast_to_the_learned_one() {
    let (a, b) = vtep_pair(TxMode::Raw);
    // A plain UDP socket on 127.0.0.3 stands for a second remote VTEP.
    let sniffer = UdpSocket::bind((lo(3), a.local_addr().port())).unwrap();
    sniffer.set_read_timeout(Some(QUIET)).unwrap();
    let (side_a, side_b) = (side("a"), side("b"));
    let port_a = a
        .add_vni(&vni_config(7, &[lo(2), lo(3)]), &side_a.segment)
        .unwrap();
    b.add_vni(&vni_config(7, &[lo(1)]), &side_b.segment)
        .unwrap();
    let mut buf = [0u8; 2048];

    side_a
        .send(TxOffload::None, &frame(mac(2), mac(1), 100))
        .unwrap();
    side_b.recv();
    let (len, _) = sniffer.recv_from(&mut buf).unwrap();
    assert_eq!(
        len,
        8 + 100,
        "unknown unicast replicated to the second remote"
    );
    assert_eq!(
        &buf[..8],
        &[0x08, 0, 0, 0, 0, 0, 7, 0],
        "VXLAN header, VNI 7"
    );

    // B answers; A learns mac(2) behind 127.0.0.2 and stops flooding to it.
    side_b
        .send(TxOffload::None, &frame(mac(1), mac(2), 100))
        .unwrap();
    side_a.recv();
    assert!(eventually(|| port_a.learned_remote(mac(2)) == Some(lo(2))));
    side_a
        .send(TxOffload::None, &frame(mac(2), mac(1), 200))
        .unwrap();
    assert_eq!(side_b.recv().len(), 200);
    assert!(
        sniffer.recv_from(&mut buf).is_err(),
        "known unicast not replicated"
    );
    assert!(eventually(|| port_a.stats().tx.snapshot().packets == 3));
}

#[test]
fn oversized_frames_are_counted_mtu_drops() {
    let (a, _b) = vtep_pair(TxMode::Raw);
    let side_a = side("a");
    let config = VniConfig {
        underlay_mtu: 300,
        ..vni_config(5, &[lo(2)])
    };
    let port = a.add_vni(&config, &side_a.segment).unwrap();
    // 300 - 20 (IPv4) - 8 (UDP) - 8 (VXLAN).
    assert_eq!(port.max_inner_len(), 264);
    assert_eq!(
        side_a.send(TxOffload::None, &frame(mac(2), mac(1), 265)),
        Err(DropReason::MtuExceeded)
    );
    side_a
        .send(TxOffload::None, &frame(mac(2), mac(1), 264))
        .unwrap();
    let tx = port.stats().tx.snapshot();
    assert_eq!(tx.drops(DropReason::MtuExceeded), 1);
    assert!(eventually(|| port.stats().tx.snapshot().packets == 1));
    let no_room = VniConfig {
        underlay_mtu: 49,
        ..vni_config(6, &[])
    };
    assert!(matches!(
        a.add_vni(&no_room, &side("c").segment),
        Err(VxlanError::UnderlayMtu { .. })
    ));
}

/// An IPv4/TCP frame from mac(1) to mac(2) with `payload` bytes after a 20-byte TCP header
/// whose checksum field holds the pseudo-header sum, as a guest with `NEEDS_CSUM` leaves it.
fn tcp_frame(payload: usize) -> Vec<u8> {
    let mut bytes = frame(mac(2), mac(1), 14 + 20 + 20 + payload);
    bytes[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let repr = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        protocol: IpProtocol::TCP,
        payload_len: (20 + payload) as u16,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut bytes[14..]),
        Csum::Verify,
    )
    .unwrap();
    let pseudo = Ipv4Packet::new_checked(&bytes[14..])
        .unwrap()
        .pseudo_header_sum((20 + payload) as u16);
    let tcp = &mut bytes[34..54];
    tcp.fill(0);
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH, ACK
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
    bytes
}

fn all_caps() -> TxOffloadCaps {
    TxOffloadCaps {
        csum: true,
        host_tso4: true,
        host_tso6: true,
        host_ecn: true,
        host_ufo: true,
        host_uso: true,
        max_segments: 64,
    }
}

fn assert_tcp_checksum_good(frame: &[u8]) {
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(ip.pseudo_header_sum(ip.payload_len())));
}

#[test]
fn partial_checksums_are_completed_and_tso_is_segmented() {
    let (a, b) = vtep_pair(TxMode::Raw);
    let (side_a, side_b) = (side("a"), side("b"));
    a.add_vni(&vni_config(8, &[lo(2)]), &side_a.segment)
        .unwrap();
    b.add_vni(&vni_config(8, &[lo(1)]), &side_b.segment)
        .unwrap();

    let small = tcp_frame(100);
    let hdr = VirtioNetHdr {
        flags: vif_core::offload::header::VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VirtioNetHdr::default()
    };
    let offload = validate(&hdr, &small, &all_caps()).unwrap();
    side_a.send(offload, &small).unwrap();
    let got = side_b.recv();
    assert_eq!(got.len(), small.len());
    assert_tcp_checksum_good(&got);

    let big = tcp_frame(3000);
    let gso = VirtioNetHdr {
        gso_type: GsoType::TCPV4,
        gso_size: 1000,
        hdr_len: 54,
        ..hdr
    };
    let offload = validate(&gso, &big, &all_caps()).unwrap();
    assert!(matches!(offload, TxOffload::Gso(_)));
    side_a.send(offload, &big).unwrap();
    let mut payload = Vec::new();
    for _ in 0..3 {
        let segment = side_b.recv();
        assert_eq!(segment.len(), 54 + 1000);
        assert_tcp_checksum_good(&segment);
        payload.extend_from_slice(&segment[54..]);
    }
    assert_eq!(payload, big[54..], "segments concatenate to the payload");
    assert!(side_b.quiet());
}

#[test]
fn hostile_datagrams_are_counted_drops() {
    let (_a, b) = vtep_pair(TxMode::Raw);
    let side_b = side("b");
    b.add_vni(&vni_config(9, &[lo(1)]), &side_b.segment)
        .unwrap();
    let peer = UdpSocket::bind((lo(1), 0)).unwrap();
    let to = b.local_addr();
    let valid = {
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 9, 0];
        d.extend_from_slice(&frame(mac(5), mac(6), 60));
        d
    };
    let mut no_i_flag = valid.clone();
    no_i_flag[0] = 0;
    let mut unknown_vni = valid.clone();
    unknown_vni[6] = 10;
    let mut group_source = valid.clone();
    group_source[8 + 6] = 0x01;
    for garbage in [
        &[][..],
        &valid[..7],
        &valid[..8 + 13],
        &no_i_flag[..],
        &unknown_vni[..],
        &group_source[..],
    ] {
        peer.send_to(garbage, to).unwrap();
    }
    peer.send_to(&valid, to).unwrap();
    assert_eq!(
        side_b.recv(),
        valid[8..],
        "a valid datagram after the garbage"
    );
    let port = b.port(vni(9)).unwrap();
    assert!(eventually(|| {
        let rx = b.stats().rx.snapshot();
        rx.drops(DropReason::Malformed) == 4 && rx.drops(DropReason::NoRoute) == 1
    }));
    assert!(eventually(|| port
        .stats()
        .rx
        .snapshot()
        .drops(DropReason::Malformed)
        == 1));
    assert_eq!(port.learned_remote(mac(6)), Some(lo(1)));
    assert_eq!(port.fdb().len(), 1, "the group source was not learned");
}

#[test]
fn remove_vni_detaches_and_drop_stops_the_thread() {
    let (a, _b) = vtep_pair(TxMode::Udp);
    let side_a = side("a");
    a.add_vni(&vni_config(4, &[lo(2)]), &side_a.segment)
        .unwrap();
    assert!(matches!(
        a.add_vni(&vni_config(4, &[lo(2)]), &side_a.segment),
        Err(VxlanError::VniInUse { vni: 4, .. })
    ));
    assert!(a.remove_vni(vni(4)));
    assert!(!a.remove_vni(vni(4)));
    assert!(a.port(vni(4)).is_none());
    // Only the recording port is left: a broadcast has nowhere to go.
    let port_weak = {
        let port = a
            .add_vni(&vni_config(4, &[lo(2)]), &side_a.segment)
            .unwrap();
        Arc::downgrade(&port)
    };
    drop(a);
    assert!(
        port_weak.upgrade().is_none(),
        "no cycle keeps the port alive"
    );
    let v6_remote = VniConfig {
        remotes: vec!["2001:db8::1".parse().unwrap()],
        ..vni_config(1, &[])
    };
    assert!(matches!(
        Vtep::bind(VtepConfig::new(lo(1), 0)),
        Err(VxlanError::PortZero { .. })
    ));
    let (c, _d) = vtep_pair(TxMode::Udp);
    assert!(matches!(
        c.add_vni(&v6_remote, &side_a.segment),
        Err(VxlanError::RemoteFamily { .. })
    ));
}
