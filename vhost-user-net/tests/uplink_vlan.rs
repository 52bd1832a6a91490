//! The 802.1Q uplink on a real kernel interface: a veth pair whose "host" end is vif's parent
//! (in one namespace) and whose "peer" end (in another) stands for the wire. Frames are read and
//! injected on the peer end with a raw packet socket (the kernel moves a received tag into
//! `PACKET_AUXDATA`; the helper puts it back), and decoded independently by tshark.
//!
//! Needs root. Every namespace is deleted by a Drop guard, links with it.

mod uplink_vlan_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use uplink_vlan_support::*;
use vhost_user_net::switch::Segment;
use vhost_user_net::uplink::vlan::{VlanParent, VlanPort};
use vif_core::mac::MacAddr;
use vif_core::offload::VirtioNetHdr;
use vif_core::stats::DropReason;

const PARENT: &str = "vh0";
const WIRE: &str = "vp0";

/// A parent interface with its VLAN parent open, and the wire's end.
struct Lab {
    // Dropped first: the parent's socket keeps its namespace alive while open.
    parent: VlanParent,
    wire: WirePeer,
    dir: ScratchDir,
    /// Held for its Drop: deletes the namespace.
    _host: Netns,
    peer: Netns,
}

fn lab_with_mtu(mtu: Option<u16>) -> Lab {
    let host = Netns::new("vlh");
    let peer = Netns::new("vlp");
    veth(&host, PARENT, &peer, WIRE);
    if let Some(mtu) = mtu {
        host.ip(&["link", "set", PARENT, "mtu", &mtu.to_string()]);
    }
    let parent = host.enter(|| VlanParent::open(PARENT).unwrap());
    let wire = WirePeer::open(&peer, WIRE);
    Lab {
        parent,
        wire,
        dir: ScratchDir::new(),
        _host: host,
        peer,
    }
}

fn lab() -> Lab {
    lab_with_mtu(None)
}

impl Lab {
    /// A VIF on VLAN `v` with priority `pcp`, on that VLAN's segment.
    fn vif(&self, name: &str, mac: MacAddr, v: u16, pcp: u8) -> (GuestVif, Arc<VlanPort>) {
        let segment = Segment::new(&format!("vlan-{PARENT}-{v}"));
        let uplink = vlan_uplink(PARENT, v, pcp);
        let port = self.parent.attach(&uplink, &segment).unwrap();
        (guest_vif(&self.dir, name, mac, uplink, &segment), port)
    }
}

const PEER_MAC: MacAddr = MacAddr([0x02, 0x50, 0x45, 0x45, 0x52, 0x01]);

#[test]
fn guest_frames_leave_tagged_with_vid_and_pcp() {
    let lab = lab();
    let (mut a, port) = lab.vif("a", mac(1), 100, 5);
    for (marker, len) in [(1u8, 60usize), (2, 1510)] {
        let frame = test_frame(PEER_MAC, a.mac, len, marker);
        a.send(&frame);
        let wire = lab
            .wire
            .recv_matching(WAIT, |f| f.src() == Some(a.mac))
            .expect("frame on the wire");
        assert_eq!(wire.c_tag(), Some((100, 5)), "VID 100, PCP 5");
        assert_eq!(
            wire.bytes,
            tagged(&frame, 100, 5),
            "tag pushed, nothing else changed"
        );
    }
    wait_for("2 packets counted", || {
        port.stats().tx.snapshot().packets == 2
    });
}

#[test]
fn tagged_frames_reach_the_guest_untagged_and_other_vids_do_not() {
    let lab = lab();
    let (mut a, port) = lab.vif("a", mac(1), 100, 0);
    let to_a = test_frame(a.mac, PEER_MAC, 80, 7);
    lab.wire.send(&tagged(&to_a, 100, 3));
    let got = a
        .recv_matching(WAIT, |f| f.get(14) == Some(&7))
        .expect("frame for VID 100 delivered");
    assert_eq!(got, to_a, "tag popped, frame otherwise unchanged");

    // Another VID, an untagged frame and a priority-tagged frame are not VLAN 100's.
    lab.wire
        .send(&tagged(&test_frame(a.mac, PEER_MAC, 80, 8), 200, 0));
    lab.wire.send(&test_frame(a.mac, PEER_MAC, 80, 9));
    lab.wire
        .send(&tagged(&test_frame(a.mac, PEER_MAC, 80, 10), 0, 6));
    // A later VID 100 frame proves the three before it were processed and not delivered.
    lab.wire
        .send(&tagged(&test_frame(a.mac, PEER_MAC, 80, 11), 100, 0));
    let next = a
        .recv_matching(WAIT, |f| f.get(12..14) == Some(&[0x88, 0xb5][..]))
        .expect("the later VID 100 frame");
    assert_eq!(
        next[14], 11,
        "VID 200, untagged and priority-tagged frames were dropped"
    );

    // The peer's MAC is now known behind the VLAN port: a's answer goes out tagged.
    a.send(&test_frame(PEER_MAC, a.mac, 64, 12));
    let wire = lab
        .wire
        .recv_matching(WAIT, |f| f.src() == Some(a.mac))
        .expect("answer on the wire");
    assert_eq!(wire.c_tag(), Some((100, 0)));
    wait_for("2 packets received", || {
        port.stats().rx.snapshot().packets == 2
    });
}

#[test]
fn two_vifs_on_different_vids_of_one_parent_stay_isolated() {
    let lab = lab();
    // Attached out of VID order: the parent lists its ports (for the metrics) by VID.
    let (mut b, port_b) = lab.vif("b", mac(2), 200, 2);
    let (mut a, port_a) = lab.vif("a", mac(1), 100, 1);
    let listed = lab.parent.ports();
    assert!(
        listed.len() == 2 && Arc::ptr_eq(&listed[0], &port_a) && Arc::ptr_eq(&listed[1], &port_b),
        "ports of VIDs 100 and 200, in that order"
    );

    // A broadcast on each VLAN reaches only that VLAN's VIF.
    for (v, marker) in [(100u16, 21u8), (200, 22)] {
        let broadcast = test_frame(MacAddr::BROADCAST, PEER_MAC, 64, marker);
        lab.wire.send(&tagged(&broadcast, v, 0));
    }
    let is_test = |f: &[u8]| f.get(12..14) == Some(&[0x88, 0xb5][..]);
    assert_eq!(
        a.recv_matching(WAIT, is_test).expect("a's broadcast")[14],
        21
    );
    assert_eq!(
        b.recv_matching(WAIT, is_test).expect("b's broadcast")[14],
        22
    );
    assert!(
        a.recv_matching(QUIET, is_test).is_none(),
        "a got VLAN 200's frame"
    );
    assert!(
        b.recv_matching(QUIET, is_test).is_none(),
        "b got VLAN 100's frame"
    );

    // Each guest's broadcast leaves with its own tag and never reaches the other guest.
    a.send(&test_frame(MacAddr::BROADCAST, a.mac, 64, 31));
    b.send(&test_frame(MacAddr::BROADCAST, b.mac, 64, 32));
    // Either may come first: take both, in whatever order.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let wire = lab
            .wire
            .recv_matching(WAIT, |f| f.src() == Some(mac(1)) || f.src() == Some(mac(2)))
            .expect("broadcast on the wire");
        seen.push((wire.src().unwrap(), wire.c_tag()));
    }
    seen.sort();
    assert_eq!(seen, [(mac(1), Some((100, 1))), (mac(2), Some((200, 2)))]);
    assert!(a.recv_matching(QUIET, is_test).is_none());
    assert!(b.recv_matching(QUIET, is_test).is_none());
}

#[test]
fn frames_longer_than_the_parent_carries_are_counted_drops() {
    // The interface's MTU (1000) is below the configured parent_mtu (1500): the smaller wins,
    // and with the tag counted the longest untagged frame is 1000 + 14 - 4 = 1010 bytes.
    let lab = lab_with_mtu(Some(1000));
    let (mut a, port) = lab.vif("a", mac(1), 100, 0);
    a.send(&test_frame(PEER_MAC, a.mac, 1011, 1));
    a.send(&test_frame(PEER_MAC, a.mac, 1010, 2));
    let wire = lab
        .wire
        .recv_matching(WAIT, |f| f.src() == Some(a.mac))
        .expect("the frame that fits");
    assert_eq!((wire.bytes.len(), wire.bytes[18]), (1014, 2));
    wait_for("1 packet sent", || port.stats().tx.snapshot().packets == 1);
    // Counted when refused, before the next frame was taken.
    assert_eq!(port.stats().tx.snapshot().drops(DropReason::MtuExceeded), 1);
}

/// The 16-bit one's complement sum of `bytes` (RFC 1071), folded, not complemented.
fn ones_sum(mut sum: u32, bytes: &[u8]) -> u16 {
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The IPv4 pseudo-header sum of a TCP segment of `tcp_len` bytes (RFC 793 § 3.1).
fn pseudo_sum(ip: &[u8], tcp_len: usize) -> u32 {
    let mut sum = u32::from(ones_sum(0, &ip[12..20]));
    sum += 6 + tcp_len as u32;
    sum
}

/// A TSO super-frame, Ethernet + IPv4 + TCP + `payload`, with the partial checksum a guest
/// hands over with `NEEDS_CSUM` (the pseudo-header sum in the TCP checksum field, VIRTIO 1.2
/// § 5.1.6.2), and its virtio-net header (`GSO_TCPV4`, MSS `mss`).
fn tso_frame(src: MacAddr, dst: MacAddr, payload: &[u8], mss: u16) -> (VirtioNetHdr, Vec<u8>) {
    let mut frame = Vec::new();
    frame.extend_from_slice(dst.as_bytes());
    frame.extend_from_slice(src.as_bytes());
    frame.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let ip_csum = !ones_sum(0, &ip);
    ip[10..12].copy_from_slice(&ip_csum.to_be_bytes());
    let mut tcp = vec![
        0x9c, 0x40, 0x13, 0x89, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
    ];
    let partial = ones_sum(pseudo_sum(&ip, 20 + payload.len()), &[]);
    tcp.extend_from_slice(&partial.to_be_bytes());
    tcp.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&tcp);
    frame.extend_from_slice(payload);
    let hdr = VirtioNetHdr {
        flags: 1,    // VIRTIO_NET_HDR_F_NEEDS_CSUM
        gso_type: 1, // VIRTIO_NET_HDR_GSO_TCPV4
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    (hdr, frame)
}

#[test]
fn tso_frames_are_segmented_checksummed_and_each_segment_tagged() {
    let lab = lab();
    let (mut a, port) = lab.vif("a", mac(1), 100, 4);
    let payload: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let (hdr, frame) = tso_frame(a.mac, PEER_MAC, &payload, 1400);
    a.guest.send(0, &hdr, &frame).unwrap();
    let mut carried = Vec::new();
    let mut seq = 1000u32;
    for expected in [1400usize, 1400, 1200] {
        let wire = lab
            .wire
            .recv_matching(WAIT, |f| f.src() == Some(a.mac))
            .expect("a segment on the wire");
        assert_eq!(wire.c_tag(), Some((100, 4)));
        let untagged = [&wire.bytes[..12], &wire.bytes[16..]].concat();
        let (ip, tcp) = (&untagged[14..34], &untagged[34..]);
        assert_eq!(tcp.len(), 20 + expected);
        assert_eq!(ones_sum(0, ip), 0xffff, "IPv4 header checksum");
        assert_eq!(
            ones_sum(pseudo_sum(ip, tcp.len()), tcp),
            0xffff,
            "TCP checksum completed"
        );
        assert_eq!(u32::from_be_bytes(tcp[4..8].try_into().unwrap()), seq);
        seq += expected as u32;
        carried.extend_from_slice(&tcp[20..]);
    }
    assert_eq!(carried, payload, "segments carry the payload in order");
    wait_for("3 segments counted", || {
        port.stats().tx.snapshot().packets == 3
    });
}

/// A capture on `dev` inside `ns` that stops by itself after `count` frames matching `filter`.
struct Capture {
    pid: libc::pid_t,
    exited: mpsc::Receiver<std::process::ExitStatus>,
}

impl Capture {
    fn start(ns: &Netns, dev: &str, filter: &str, count: usize, file: &std::path::Path) -> Capture {
        let mut child = ns
            .command("tshark")
            .args(["-i", dev, "-f", filter, "-c", &count.to_string(), "-w"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tshark");
        // tshark says "Capturing on 'dev'" once the capture runs; wait for it (bounded).
        let stderr = child.stderr.take().expect("piped stderr");
        let (started_tx, started_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Capturing on") {
                    let _ = started_tx.send(());
                }
            }
        });
        // `ip netns exec` execs tshark, so this pid is tshark's own.
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        let (exited_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exited_tx.send(status);
            }
        });
        let capture = Capture { pid, exited };
        started_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("tshark started capturing");
        capture
    }

    /// Calls `send` until tshark has seen its `count` frames and exited (bounded): "Capturing
    /// on" is printed a little before dumpcap's socket is attached, so the first frames may
    /// pass unseen.
    fn finish_while(self, mut send: impl FnMut()) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            send();
            match self.exited.recv_timeout(Duration::from_millis(200)) {
                Ok(status) => {
                    assert!(status.success(), "tshark exited with {status}");
                    return;
                }
                Err(_) if std::time::Instant::now() < deadline => continue,
                Err(_) => panic!("tshark did not see its frames in time"),
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.exited.try_recv().is_err() {
            // SAFETY: signals our own child; its waiter thread has not reaped it (no status yet).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn tshark_decodes_the_frames_as_802_1q_with_vid_and_pcp() {
    ensure_tshark();
    let lab = lab();
    let (mut a, _) = lab.vif("a", mac(1), 100, 5);
    let (mut b, _) = lab.vif("b", mac(2), 4094, 7);
    let file = lab.dir.path().join("vlan.pcap");
    // a and b alternate, so any 4 consecutive frames hold both.
    let capture = Capture::start(&lab.peer, WIRE, "vlan", 4, &file);
    capture.finish_while(|| {
        a.send(&test_frame(PEER_MAC, a.mac, 100, 1));
        b.send(&test_frame(PEER_MAC, b.mac, 100, 2));
    });
    let out = run(
        "tshark",
        &[
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "eth.src",
            "-e",
            "vlan.id",
            "-e",
            "vlan.priority",
            "-e",
            "vlan.etype",
        ],
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    lines.sort();
    lines.dedup();
    assert_eq!(
        lines,
        [
            format!("{},100,5,0x88b5", mac(1)),
            format!("{},4094,7,0x88b5", mac(2)),
        ]
    );
}

#[test]
fn a_vid_has_one_segment_and_one_pcp() {
    let lab = lab();
    let first = Segment::new("vlan-vh0-100");
    lab.parent
        .attach(&vlan_uplink(PARENT, 100, 2), &first)
        .unwrap();
    // The same VLAN again: the same port, if the PCP agrees.
    let again = lab
        .parent
        .attach(&vlan_uplink(PARENT, 100, 2), &first)
        .unwrap();
    assert_eq!(again.tag().pcp, 2);
    let Err(e) = lab.parent.attach(&vlan_uplink(PARENT, 100, 3), &first) else {
        panic!("a second PCP on VLAN 100 was accepted");
    };
    assert!(e.to_string().contains("pcp 3 differs from pcp 2"), "{e}");
    // Another segment while the first is in use is refused...
    let other = Segment::new("elsewhere");
    assert!(lab
        .parent
        .attach(&vlan_uplink(PARENT, 100, 2), &other)
        .is_err());
    // ...and taken once the daemon dropped the first (only the VID table held it).
    drop(first);
    let port = lab
        .parent
        .attach(&vlan_uplink(PARENT, 100, 2), &other)
        .unwrap();
    assert!(lab
        .parent
        .port(vid(100))
        .is_some_and(|p| Arc::ptr_eq(&p, &port)));
}
