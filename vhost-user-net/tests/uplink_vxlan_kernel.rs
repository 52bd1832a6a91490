//! The VXLAN uplink against peers vif did not write: Linux's own `vxlan` device, and tshark's
//! VXLAN dissector.
//!
//! Two network namespaces joined by a veth pair: `host` holds the VTEP's local address (the
//! in-process `Vtep`'s sockets are created inside it), `peer` holds a kernel `vxlan` device
//! (VNI 42, remote = our address) with 10.42.0.2 on it and a permanent neighbour entry for the
//! guest, so the kernel needs no ARP. A `VirtualGuest` on the VXLAN VIF sends ICMP echo
//! requests built with vif-core's reprs through its TX queue; the kernel's echo replies must
//! come back through the tunnel to the guest's RX queue, over an IPv4 and an IPv6 underlay.
//! The tshark tests capture the veth while the guest pings and check that what vif sent decodes
//! as VXLAN with VNI 42 and good checksums (the IPv4 header checksum; over IPv6, the UDP
//! checksum, which RFC 8200 § 8.1 makes mandatory).
//!
//! Needs root, `ip` and (for the capture tests) tshark, installed from Debian if missing.

mod uplink_vxlan_support;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uplink_vxlan_support::*;
use vhost_user_net::switch::Segment;
use vhost_user_net::uplink::vxlan::{VniConfig, Vtep, VtepConfig};
use vif_core::mac::MacAddr;

const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 2);
/// The kernel vxlan device's MAC, set so the guest can address it without ARP.
const PEER_MAC: [u8; 6] = [0x02, 0x56, 0x49, 0x46, 0xee, 0x02];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Underlay {
    V4,
    V6,
}

impl Underlay {
    /// (our VTEP address, the kernel's, prefix length).
    fn addresses(self) -> (&'static str, &'static str, u8) {
        match self {
            Underlay::V4 => ("192.0.2.1", "192.0.2.2", 24),
            Underlay::V6 => ("2001:db8:42::1", "2001:db8:42::2", 64),
        }
    }
}

/// Everything one test needs; fields drop in order: the guest and VTEP before the namespaces.
struct KernelPeer {
    guest: GuestVif,
    vtep: Vtep,
    _segment: Arc<Segment>,
    _dir: SocketDir,
    peer: Netns,
    _host: Netns,
    local: String,
}

fn kernel_peer(underlay: Underlay) -> KernelPeer {
    let (local, remote, prefix) = underlay.addresses();
    let host = Netns::new("vxh");
    let peer = Netns::new("vxp");
    let guest_mac = mac(1);
    kernel_vxlan_peer(
        &host,
        &peer,
        local,
        remote,
        prefix,
        MacAddr(PEER_MAC),
        PEER_IP,
        (guest_mac, GUEST_IP),
    );
    let uplink = uplink(42, local, &[remote]);
    let vtep = host
        .enter(|| Vtep::bind(VtepConfig::from_uplink(&uplink)))
        .expect("bind the VTEP inside the host namespace");
    let segment = Segment::new("vxlan-42");
    vtep.add_vni(&VniConfig::from_uplink(&uplink), &segment)
        .unwrap();
    let dir = SocketDir::new();
    let mut spec = vxlan_spec("vx-guest", guest_mac, uplink.clone());
    // The largest MTU the underlay carries: 1450 over IPv4, 1430 over IPv6.
    spec.mtu = spec.uplink.max_vif_mtu().unwrap();
    let guest = guest_vif(&dir, &spec, &segment);
    KernelPeer {
        guest,
        vtep,
        _segment: segment,
        _dir: dir,
        peer,
        _host: host,
        local: local.to_owned(),
    }
}

fn ping(peer: &mut KernelPeer, seq_no: u16) {
    ping_once(
        &mut peer.guest,
        (MacAddr(PEER_MAC), PEER_IP),
        GUEST_IP,
        seq_no,
    );
}

fn ping_kernel(underlay: Underlay) {
    let mut peer = kernel_peer(underlay);
    for seq_no in 1..=3 {
        ping(&mut peer, seq_no);
    }
    let port = peer
        .vtep
        .port(vif_core::ids::Vni::new(42).unwrap())
        .unwrap();
    // Transmit counters are published once `sendmmsg` returned, maybe after the reply came.
    assert!(
        eventually(|| port.stats().tx.snapshot().packets >= 3),
        "{:?}",
        port.stats().tx.snapshot()
    );
    let (tx, rx) = (port.stats().tx.snapshot(), port.stats().rx.snapshot());
    assert!(rx.packets >= 3, "rx {rx:?}");
    assert_eq!(tx.total_drops(), 0, "{tx:?}");
    // The kernel's replies taught the VNI where the peer's MAC lives.
    let remote = underlay.addresses().1.parse().unwrap();
    assert_eq!(port.learned_remote(MacAddr(PEER_MAC)), Some(remote));
}

#[test]
fn guest_pings_kernel_vxlan_over_ipv4() {
    ping_kernel(Underlay::V4);
}

#[test]
fn guest_pings_kernel_vxlan_over_ipv6() {
    ping_kernel(Underlay::V6);
}

/// Installs tshark from Debian if it is missing (once per test process).
fn ensure_tshark() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let present = std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !present {
        let status = std::process::Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "tshark"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("run apt-get");
        assert!(status.success(), "apt-get install tshark failed");
    }
}

/// A live capture of `count` packets matching `filter` on `dev` inside `ns`, with dumpcap
/// (tshark's capture engine). It ends by itself after `count` packets: stopping it with a
/// signal loses what still sits in its ring buffer. It says "Capturing on" a little before its
/// packet socket sees traffic, so the caller sends until the capture is complete rather than
/// guessing a delay. Killed on drop if still running.
struct Capture {
    child: Child,
}

impl Capture {
    fn start(ns: &Netns, dev: &str, filter: &str, count: usize, file: &Path) -> Capture {
        let mut child = ns
            .command("dumpcap")
            .args(["-i", dev, "-f", filter, "-c", &count.to_string(), "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dumpcap");
        // dumpcap says "Capturing on 'dev'" once the capture runs; wait for it (bounded).
        let stderr = child.stderr.take().expect("piped stderr");
        let (started_tx, started_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Capturing on") {
                    let _ = started_tx.send(());
                }
            }
        });
        let capture = Capture { child };
        started_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("dumpcap started capturing");
        capture
    }

    /// Whether dumpcap has its packets and exited.
    fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tshark_decodes(underlay: Underlay) {
    ensure_tshark();
    let mut peer = kernel_peer(underlay);
    let dir = SocketDir::new();
    let file = dir.path().join("vxlan.pcap");
    // Only what vif sent: the guest's echo requests. Ping until two were captured.
    let filter = format!("udp dst port 4789 and src host {}", peer.local);
    let mut capture = Capture::start(&peer.peer, "vxp0", &filter, 2, &file);
    let deadline = std::time::Instant::now() + WAIT;
    let mut seq_no = 1;
    while !capture.finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "dumpcap saw fewer than 2 of our datagrams"
        );
        ping(&mut peer, seq_no);
        seq_no += 1;
    }
    let (src_field, checksum_field) = match underlay {
        Underlay::V4 => ("ip.src", "ip.checksum.status"),
        Underlay::V6 => ("ipv6.src", "udp.checksum.status"),
    };
    let out = run(
        "tshark",
        &[
            "-r",
            file.to_str().unwrap(),
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-E",
            // The outer header's value where the inner frame has the same field.
            "occurrence=f",
            "-e",
            src_field,
            "-e",
            "vxlan.vni",
            "-e",
            checksum_field,
            "-e",
            "icmp.type",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Wireshark's checksum status: 1 is "Good" (PROTO_CHECKSUM_E_GOOD).
    let ours: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(&format!("{},", peer.local)))
        .collect();
    let requests = ours.iter().filter(|line| line.ends_with(",8")).count();
    assert_eq!(requests, 2, "our echo requests in the capture:\n{text}");
    for line in &ours {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.get(1), Some(&"42"), "VNI: {line}");
        assert_eq!(fields.get(2), Some(&"1"), "checksum status Good: {line}");
    }
}

#[test]
fn tshark_decodes_our_ipv4_vxlan_with_vni_and_header_checksum() {
    tshark_decodes(Underlay::V4);
}

#[test]
fn tshark_decodes_our_ipv6_vxlan_with_vni_and_udp_checksum() {
    tshark_decodes(Underlay::V6);
}
