//! Two hosts joined by VXLAN: two VTEPs, each in its own network namespace, joined by a veth
//! pair, with their VIFs served in-process and virtual guests on them (one daemon's worth of
//! parts per host, bound to different local addresses).
//!
//! Host A (192.0.2.1) serves VNIs 10 and 20, each flooding to two remotes: host B (192.0.2.2)
//! and 192.0.2.3, an address in B's namespace where a plain UDP socket stands in for a third
//! VTEP and counts what it is sent. Host B serves VNIs 10, 20 and 30 with A as remote. The
//! guests of VNIs 10 and 20 reuse the same MAC addresses, as separate tenants may.
//!
//! Checked: a broadcast reaches the other host's guest of its VNI and is replicated to every
//! static remote; the answer comes back unicast; once learned, unicast goes to the learned VTEP
//! only (the stand-in remote receives nothing more); learning is per VNI (the same MAC on VNI
//! 20 is still unknown, so it floods); VNI 20 and 30 guests see nothing of VNI 10's traffic; a
//! TSO frame from a guest arrives as MSS-sized segments with good checksums.

mod uplink_vxlan_support;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Arc;

use uplink_vxlan_support::*;
use vhost_user_net::switch::Segment;
use vhost_user_net::uplink::vxlan::{VniConfig, VniPort, Vtep, VtepConfig};
use vif_core::ids::Vni;
use vif_core::mac::MacAddr;
use vif_core::offload::{GsoType, VirtioNetHdr};
use vif_core::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use vif_core::wire::tcp::TcpPacket;
use vif_core::wire::Csum;

const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";
const STAND_IN: &str = "192.0.2.3";

/// One host's VTEP, ports and guests. Guests drop before the VTEP.
struct Host {
    guests: Vec<GuestVif>,
    ports: Vec<Arc<VniPort>>,
    _segments: Vec<Arc<Segment>>,
    vtep: Vtep,
}

/// Builds a host in `ns` with a guest of MAC `guest_mac` on each of `vnis`.
fn host(
    ns: &Netns,
    dir: &SocketDir,
    local: &str,
    remotes: &[&str],
    vnis: &[u32],
    guest_mac: MacAddr,
) -> Host {
    let vtep = ns
        .enter(|| Vtep::bind(VtepConfig::from_uplink(&uplink(0, local, remotes))))
        .expect("bind the VTEP inside its namespace");
    let mut host = Host {
        guests: Vec::new(),
        ports: Vec::new(),
        _segments: Vec::new(),
        vtep,
    };
    for &vni in vnis {
        let uplink = uplink(vni, local, remotes);
        let segment = Segment::new(&format!("vxlan-{vni}"));
        host.ports.push(
            host.vtep
                .add_vni(&VniConfig::from_uplink(&uplink), &segment)
                .unwrap(),
        );
        let mut spec = vxlan_spec(&format!("g{vni}-{}", &local[8..]), guest_mac, uplink);
        spec.mtu = spec.uplink.max_vif_mtu().unwrap();
        host.guests.push(guest_vif(dir, &spec, &segment));
        host._segments.push(segment);
    }
    host
}

fn ip(addr: &str) -> IpAddr {
    addr.parse().unwrap()
}

/// The VNI of a datagram the stand-in remote received, if it is VXLAN with the I flag.
fn vni_of(datagram: &[u8]) -> Option<u32> {
    (datagram.len() >= 8 && datagram[0] == 0x08)
        .then(|| u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]))
}

/// An IPv4/TCP frame with `payload` bytes and the pseudo-header sum in the checksum field, as
/// a guest using `NEEDS_CSUM` leaves it.
fn tcp_frame(dst: MacAddr, src: MacAddr, payload: usize) -> Vec<u8> {
    let mut frame = test_frame(dst, src, 14 + 20 + 20 + payload, 0);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let l4_len = (20 + payload) as u16;
    Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 10, 0, 1),
        dst_addr: Ipv4Addr::new(10, 10, 0, 2),
        protocol: IpProtocol::TCP,
        payload_len: l4_len,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 7,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(
        &mut Ipv4Packet::new_unchecked(&mut frame[14..]),
        Csum::Verify,
    )
    .unwrap();
    let pseudo = Ipv4Packet::new_checked(&frame[14..])
        .unwrap()
        .pseudo_header_sum(l4_len);
    let tcp = &mut frame[34..54];
    tcp.fill(0);
    tcp[0..2].copy_from_slice(&43210u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5001u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH, ACK
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
    frame
}

#[test]
fn two_hosts_learn_replicate_and_isolate_vnis() {
    let ns_a = Netns::new("vxa");
    let ns_b = Netns::new("vxb");
    veth(&ns_a, "va0", &ns_b, "vb0");
    addr(&ns_a, "va0", &format!("{A}/24"));
    addr(&ns_b, "vb0", &format!("{B}/24"));
    addr(&ns_b, "vb0", &format!("{STAND_IN}/24"));
    let stand_in = ns_b
        .enter(|| UdpSocket::bind((ip(STAND_IN), 4789)))
        .unwrap();
    stand_in.set_read_timeout(Some(QUIET)).unwrap();
    let mut datagram = [0u8; 2048];

    let dir = SocketDir::new();
    let (mac_a, mac_b) = (mac(0xa), mac(0xb));
    let mut a = host(&ns_a, &dir, A, &[B, STAND_IN], &[10, 20], mac_a);
    let mut b = host(&ns_b, &dir, B, &[A], &[10, 20, 30], mac_b);
    let port_a10 = Arc::clone(&a.ports[0]);

    // 1. A broadcast on VNI 10 reaches B's VNI 10 guest and is replicated to both remotes.
    let hello = test_frame(MacAddr::BROADCAST, mac_a, 60, 1);
    a.guests[0].send(&hello);
    let got = b.guests[0].recv_matching(WAIT, is_test_frame);
    assert_eq!(got.as_deref(), Some(&hello[..]));
    let (len, _) = stand_in
        .recv_from(&mut datagram)
        .expect("flood replicated to 192.0.2.3");
    assert_eq!(vni_of(&datagram[..len]), Some(10));
    assert_eq!(&datagram[8..len], &hello[..]);

    // 2. B's guest answers unicast: B learned A's MAC behind 192.0.2.1 from the broadcast.
    assert_eq!(b.ports[0].learned_remote(mac_a), Some(ip(A)));
    let answer = test_frame(mac_a, mac_b, 200, 2);
    b.guests[0].send(&answer);
    let got = a.guests[0].recv_matching(WAIT, is_test_frame);
    assert_eq!(got.as_deref(), Some(&answer[..]));
    assert_eq!(port_a10.learned_remote(mac_b), Some(ip(B)));

    // 3. Known unicast goes to the learned VTEP only.
    let unicast = test_frame(mac_b, mac_a, 300, 3);
    a.guests[0].send(&unicast);
    let got = b.guests[0].recv_matching(WAIT, is_test_frame);
    assert_eq!(got.as_deref(), Some(&unicast[..]));
    assert!(
        stand_in.recv_from(&mut datagram).is_err(),
        "the stand-in remote got a frame for a MAC learned behind 192.0.2.2"
    );
    // Two datagrams for the flood of step 1, one for this unicast.
    assert!(eventually(|| port_a10.stats().tx.snapshot().packets == 3));

    // 4. Learning is per VNI: the same MAC on VNI 20 is unknown there, so it floods to both
    //    remotes, and only B's VNI 20 guest gets it.
    let other_tenant = test_frame(mac_b, mac_a, 120, 4);
    a.guests[1].send(&other_tenant);
    let got = b.guests[1].recv_matching(WAIT, is_test_frame);
    assert_eq!(got.as_deref(), Some(&other_tenant[..]));
    let (len, _) = stand_in
        .recv_from(&mut datagram)
        .expect("VNI 20 unknown unicast floods");
    assert_eq!(vni_of(&datagram[..len]), Some(20));
    assert_eq!(a.ports[1].learned_remote(mac_b), None);

    // 5. A TSO frame from A's VNI 10 guest arrives as three segments with good checksums.
    let big = tcp_frame(mac_b, mac_a, 3000);
    let hdr = VirtioNetHdr {
        flags: vif_core::offload::header::VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: GsoType::TCPV4,
        hdr_len: 54,
        gso_size: 1000,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    a.guests[0].send_with(&hdr, &big);
    let mut payload = Vec::new();
    for _ in 0..3 {
        let segment = b.guests[0]
            .recv_matching(WAIT, |f| f.get(12..14) == Some(&[0x08, 0x00][..]))
            .expect("a TCP segment");
        assert_eq!(segment.len(), 54 + 1000);
        let ip4 = Ipv4Packet::new_checked(&segment[14..]).unwrap();
        assert!(ip4.verify_checksum());
        let tcp = TcpPacket::new_checked(ip4.payload()).unwrap();
        assert!(tcp.verify_checksum(ip4.pseudo_header_sum(ip4.payload_len())));
        payload.extend_from_slice(tcp.payload());
    }
    assert_eq!(payload, big[54..]);

    // 6. Nothing leaked across VNIs: B's VNI 20 guest saw only its one frame, VNI 30's none,
    //    and A's VNI 20 guest nothing.
    assert!(b.guests[1].recv_matching(QUIET, |_| true).is_none());
    assert!(b.guests[2].recv_matching(QUIET, |_| true).is_none());
    assert!(a.guests[1].recv_matching(QUIET, |_| true).is_none());
    assert_eq!(b.ports[2].stats().rx.snapshot().packets, 0);
    assert_eq!(b.vtep.stats().rx.snapshot().total_drops(), 0);
    let vni30 = b.vtep.port(Vni::new(30).unwrap()).unwrap();
    assert_eq!(vni30.fdb().len(), 0, "VNI 30 learned nothing");
}

/// A steady flow into a guest that sends nothing itself: every frame must arrive, though the
/// guest never kicks its transmit queue (which would make its worker look at the inbox again).
#[test]
fn a_steady_flow_reaches_a_silent_guest() {
    const FRAMES: usize = 3000;
    let ns_a = Netns::new("vxsa");
    let ns_b = Netns::new("vxsb");
    veth(&ns_a, "va0", &ns_b, "vb0");
    addr(&ns_a, "va0", &format!("{A}/24"));
    addr(&ns_b, "vb0", &format!("{B}/24"));
    let dir = SocketDir::new();
    let (mac_a, mac_b) = (mac(0xa), mac(0xb));
    let mut a = host(&ns_a, &dir, A, &[B], &[10], mac_a);
    let mut b = host(&ns_b, &dir, B, &[A], &[10], mac_b);
    let frames: Vec<Vec<u8>> = (0..FRAMES)
        .map(|n| test_frame(mac_a, mac_b, 60, n as u8))
        .collect();
    let hdr = VirtioNetHdr::default();
    let mut sent = 0;
    let mut received = 0;
    let deadline = std::time::Instant::now() + WAIT;
    while received < FRAMES && std::time::Instant::now() < deadline {
        if sent < FRAMES {
            let batch = frames[sent..].iter().take(64).map(|f| (&hdr, &f[..]));
            sent += b.guests[0].guest.send_batch(0, batch).unwrap();
        }
        received += a.guests[0].guest.recv_count(0).unwrap().packets as usize;
    }
    // Whatever was dropped was counted (B's uplink full, A's VIF inbox full): nothing may be
    // stuck undelivered.
    let dropped = (b.ports[0].stats().tx.snapshot().total_drops()
        + a.ports[0].stats().rx.snapshot().total_drops()) as usize;
    assert_eq!(
        received + dropped,
        FRAMES,
        "received {received}, dropped {dropped}: frames stuck between the uplink and the guest"
    );
    assert!(received > 0);
}
