//! Packets per second through vif's VXLAN uplink, beside Linux's own `vxlan` device on the same
//! veth path, as a ratio (issue 5 § 5).
//!
//! ```text
//! cargo bench --bench vxlan_uplink                 # 64 and 1500 B, both directions, 3 runs x 2 s
//! cargo bench --bench vxlan_uplink -- --sizes 64 --runs 1 --secs 1
//! ```
//!
//! Needs root, `ip` and the daemon binary (`cargo build --release -p vhost-user-net`; the bench
//! looks next to itself, then in `target/release`). Two network namespaces joined by a veth pair
//! (MTU 9000, so a 1500-byte inner frame fits with its 50 bytes of outer headers): `H` holds
//! 192.0.2.1, the VTEP under test; `P` holds 192.0.2.2, the far end. Frame sizes are inner
//! Ethernet frames without FCS (an IPv4/UDP frame of 64 or 1500 bytes), one flow.
//!
//! Scenarios; "pps" is frames per second over the window:
//! - **guest → VXLAN**: vif: the daemon binary runs in `H` with one VXLAN VIF (VNI 42, remote
//!   192.0.2.2); a `VirtualGuest` in this process queues bursts of one prepared frame
//!   (`send_burst`, no copy, no allocation), which vif encapsulates and sends. Kernel: a
//!   `vxlan` device in `H` (same VNI and remote) with 10.42.0.1/24 and a static neighbour; a
//!   UDP sender in `H` (this binary re-executed in the namespace) sends to 10.42.0.2, so the
//!   kernel builds the inner frame and encapsulates it. Both count the datagrams arriving on
//!   `P`'s veth end (`rx_packets`).
//! - **VXLAN → guest**: a UDP sender in `P` sends VXLAN datagrams (VNI 42, the inner frame for
//!   the guest's MAC) to 192.0.2.1:4789. vif: the daemon decapsulates and delivers them to the
//!   guest, which counts them (`recv_count`, buffers re-posted without copy). Kernel: a `vxlan`
//!   device in `H` decapsulates them; its `rx_packets` is the count.
//!
//! The senders are one thread of `send_to` per datagram (std has no `sendmmsg`; the root package
//! has no `libc`), the same for vif and the kernel, so a ratio compares the two VTEPs behind one
//! generator. Everything shares this machine's two CPUs: the report gives the 1-minute load
//! before each scenario, and figures taken while others were busy say so. Without `--bench` (as
//! `cargo test --benches` runs it) it does a 0.3 s smoke run of vif in both directions and
//! checks that frames moved.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vif::core::checksum;
use vif::core::mac::MacAddr;
use vif::core::offload::VirtioNetHdr;
use vif::vmm::guest::{GuestConfig, VirtualGuest};
use vif::vmm::launcher::{DaemonHandle, Launcher, Output};

const HOST_IP: &str = "192.0.2.1";
const PEER_IP: &str = "192.0.2.2";
const GUEST_MAC: MacAddr = MacAddr([0x02, 0x56, 0x49, 0x46, 0, 0x01]);
/// The MAC the guest's frames go to (unknown to vif: flooded to the one remote).
const FAR_MAC: MacAddr = MacAddr([0x02, 0x56, 0x49, 0x46, 0, 0xee]);
const KERNEL_VXLAN_MAC: &str = "02:56:49:46:00:ee";
const BURST: usize = 32;
const RX_BUF_LEN: u32 = 2048;
const HELPER: &str = "--vxlan-uplink-helper";

const USAGE: &str = "usage: vxlan_uplink [--bench] [--sizes 64,1500] [--runs N] [--secs S]";

struct Options {
    bench: bool,
    sizes: Vec<usize>,
    runs: usize,
    secs: f64,
}

fn options() -> Options {
    let mut options = Options {
        bench: false,
        sizes: vec![64, 1500],
        runs: 3,
        secs: 2.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => options.bench = true,
            "--sizes" => {
                options.sizes = args
                    .next()
                    .map(|list| list.split(',').filter_map(|s| s.parse().ok()).collect())
                    .unwrap_or_default()
            }
            "--runs" => options.runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(3),
            "--secs" => options.secs = args.next().and_then(|n| n.parse().ok()).unwrap_or(2.0),
            _ => {}
        }
    }
    options
}

/// An Ethernet / IPv4 / UDP frame of `len` bytes (at least 42) from 10.42.0.1 to 10.42.0.2,
/// ports 4000 → 9 (discard), IPv4 checksum filled, UDP checksum 0 (RFC 768: none).
fn udp_frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let len = len.max(42);
    let ip_len = (len - 14) as u16;
    let mut frame = vec![0u8; len];
    frame[0..6].copy_from_slice(dst.as_bytes());
    frame[6..12].copy_from_slice(src.as_bytes());
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 42, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 42, 0, 2]);
    let sum = checksum::finish(checksum::data(ip));
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    frame[34..36].copy_from_slice(&4000u16.to_be_bytes());
    frame[36..38].copy_from_slice(&9u16.to_be_bytes());
    frame[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    frame
}

/// Runs `program args`; panics with its output on failure.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
struct Netns(String);

/// Deletes namespaces left by bench processes that no longer exist (killed before their Drop
/// guards ran): names carry the creating pid.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let pid = name
            .strip_prefix("vif-bench-")
            .and_then(|rest| rest.split('-').next());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

impl Netns {
    fn new(tag: &str) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "vif-bench-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        Netns(name)
    }

    fn ip(&self, args: &str) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend(args.split_whitespace());
        run("ip", &all);
    }

    /// An interface counter, read inside the namespace (`ip netns exec` mounts its /sys).
    fn counter(&self, dev: &str, name: &str) -> u64 {
        let path = format!("/sys/class/net/{dev}/statistics/{name}");
        run("ip", &["netns", "exec", &self.0, "cat", &path])
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// This binary re-executed inside the namespace as a UDP sender.
    fn sender(&self, from: &str, to: &str, payload: &[u8], secs: f64) -> Child {
        let exe = std::env::current_exe().expect("own path");
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(exe)
            .args([HELPER, from, to, &hex(payload), &secs.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the sender")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The sender: `send_to` in a loop for `secs` (errors such as a full buffer are ignored).
fn helper(args: &[String]) {
    let (Some(from), Some(to), Some(payload), Some(secs)) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        eprintln!("helper: from to payload secs");
        std::process::exit(2);
    };
    let socket = UdpSocket::bind(from.as_str()).expect("bind the sender");
    let to: SocketAddr = to.parse().expect("destination");
    let payload = unhex(payload);
    let end = Instant::now() + Duration::from_secs_f64(secs.parse().unwrap_or(1.0));
    while Instant::now() < end {
        for _ in 0..256 {
            let _ = socket.send_to(&payload, to);
        }
    }
}

/// `H` and `P` joined by a veth pair of MTU 9000.
struct Path2 {
    host: Netns,
    peer: Netns,
}

fn path2() -> Path2 {
    let host = Netns::new("h");
    let peer = Netns::new("p");
    host.ip(&format!(
        "link add vh0 mtu 9000 type veth peer name vp0 netns {}",
        peer.0
    ));
    peer.ip("link set vp0 mtu 9000");
    host.ip("link set lo up");
    peer.ip("link set lo up");
    host.ip("link set vh0 up");
    peer.ip("link set vp0 up");
    host.ip(&format!("addr add {HOST_IP}/24 dev vh0"));
    peer.ip(&format!("addr add {PEER_IP}/24 dev vp0"));
    Path2 { host, peer }
}

/// The Linux vxlan device in `H`, VNI 42, towards `P`.
fn kernel_vxlan(path: &Path2) {
    path.host.ip(&format!(
        "link add vxk type vxlan id 42 local {HOST_IP} remote {PEER_IP} dstport 4789 dev vh0"
    ));
    path.host.ip("link set vxk mtu 1500 up");
    path.host.ip("addr add 10.42.0.1/24 dev vxk");
    path.host.ip(&format!(
        "neigh add 10.42.0.2 lladdr {KERNEL_VXLAN_MAC} dev vxk nud permanent"
    ));
}

fn daemon_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let deps = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidates = [
        deps.join("../vhost-user-net"),
        deps.join("../../release/vhost-user-net"),
        PathBuf::from("target/release/vhost-user-net"),
    ];
    candidates
        .into_iter()
        .find(|path| path.exists())
        .expect("the daemon binary: run `cargo build --release -p vhost-user-net` first")
}

/// The daemon in `H` with one VXLAN VIF, and a guest connected to it.
struct VifSide {
    guest: VirtualGuest,
    daemon: DaemonHandle,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vif_side(path: &Path2) -> VifSide {
    let dir = TempDir(std::env::temp_dir().join(format!("vif-bench-{}", path.host.0)));
    std::fs::create_dir_all(&dir.0).unwrap();
    let socket = dir.0.join("vx.sock");
    let config = dir.0.join("vif.toml");
    std::fs::write(
        &config,
        format!(
            "[[vif]]\nid = \"vx\"\nmac = \"{GUEST_MAC}\"\nsocket = \"{}\"\nmtu = 1500\n\
             uplink = {{ type = \"vxlan\", vni = 42, local = \"{HOST_IP}\", remotes = \
             [\"{PEER_IP}\"], underlay_mtu = 9000 }}\n",
            socket.display()
        ),
    )
    .unwrap();
    let daemon = Launcher::new("ip")
        .args_for_netns(&path.host.0)
        .arg(daemon_binary())
        .config(&config)
        .env("VIF_RUNTIME_DIR", &dir.0)
        .output(Output::File(dir.0.join("daemon.log")))
        .spawn()
        .expect("start the daemon");
    daemon
        .wait_for_sockets(&[&socket], Duration::from_secs(30))
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(dir.0.join("daemon.log")).unwrap_or_default();
            panic!("daemon did not come up: {e}\n{log}")
        });
    let mut guest = VirtualGuest::connect(&socket, GuestConfig::default()).expect("connect");
    guest.fill_rx(0, RX_BUF_LEN).expect("post RX buffers");
    VifSide {
        guest,
        daemon,
        _dir: dir,
    }
}

/// `Launcher` takes its binary first; `ip netns exec NS` is that binary's prefix.
trait NetnsLauncher {
    fn args_for_netns(self, ns: &str) -> Launcher;
}

impl NetnsLauncher for Launcher {
    fn args_for_netns(self, ns: &str) -> Launcher {
        self.arg("netns").arg("exec").arg(ns)
    }
}

/// The VXLAN datagram the far end sends: header for VNI 42, then a frame for the guest.
fn vxlan_datagram(len: usize) -> Vec<u8> {
    let mut datagram = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    datagram.extend_from_slice(&udp_frame(GUEST_MAC, FAR_MAC, len));
    datagram
}

/// Counts `P`'s `rx_packets` over a window that starts after `warmup`, while `drive` runs.
fn count_peer_rx(path: &Path2, warmup: f64, secs: f64, mut drive: impl FnMut()) -> f64 {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < warmup {
        drive();
    }
    let before = path.peer.counter("vp0", "rx_packets");
    let window = Instant::now();
    while window.elapsed().as_secs_f64() < secs {
        drive();
    }
    let after = path.peer.counter("vp0", "rx_packets");
    after.saturating_sub(before) as f64 / window.elapsed().as_secs_f64()
}

fn guest_to_vxlan_vif(len: usize, warmup: f64, secs: f64) -> f64 {
    let path = path2();
    let mut vif = vif_side(&path);
    let hdr = VirtioNetHdr::default();
    let frames = vec![vif
        .guest
        .prepare_frame(&hdr, &udp_frame(FAR_MAC, GUEST_MAC, len))
        .expect("prepare")];
    let pps = count_peer_rx(&path, warmup, secs, || {
        let _ = vif.guest.send_burst(0, &frames, BURST);
        let _ = vif.guest.recv_count(0);
    });
    let _ = vif.daemon.stop();
    pps
}

fn guest_to_vxlan_kernel(len: usize, warmup: f64, secs: f64) -> f64 {
    let path = path2();
    kernel_vxlan(&path);
    let payload = vec![0u8; len.max(42) - 42];
    let mut sender = path.host.sender(
        "10.42.0.1:4000",
        "10.42.0.2:9",
        &payload,
        warmup + secs + 1.0,
    );
    let pps = count_peer_rx(&path, warmup, secs, || {
        std::thread::sleep(Duration::from_millis(10))
    });
    let _ = sender.wait();
    pps
}

fn vxlan_to_guest_vif(len: usize, warmup: f64, secs: f64) -> f64 {
    let path = path2();
    let mut vif = vif_side(&path);
    let to = format!("{HOST_IP}:4789");
    let mut sender = path.peer.sender(
        &format!("{PEER_IP}:40000"),
        &to,
        &vxlan_datagram(len),
        warmup + secs + 1.0,
    );
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < warmup {
        let _ = vif.guest.recv_count(0);
    }
    let window = Instant::now();
    let mut received = 0u64;
    while window.elapsed().as_secs_f64() < secs {
        received += vif.guest.recv_count(0).map_or(0, |burst| burst.packets);
    }
    let pps = received as f64 / window.elapsed().as_secs_f64();
    let _ = sender.kill();
    let _ = sender.wait();
    let _ = vif.daemon.stop();
    pps
}

fn vxlan_to_guest_kernel(len: usize, warmup: f64, secs: f64) -> f64 {
    let path = path2();
    kernel_vxlan(&path);
    let to = format!("{HOST_IP}:4789");
    let mut sender = path.peer.sender(
        &format!("{PEER_IP}:40000"),
        &to,
        &vxlan_datagram(len),
        warmup + secs + 1.0,
    );
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let before = path.host.counter("vxk", "rx_packets");
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let after = path.host.counter("vxk", "rx_packets");
    let pps = after.saturating_sub(before) as f64 / window.elapsed().as_secs_f64();
    let _ = sender.kill();
    let _ = sender.wait();
    pps
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

type Scenario = fn(usize, f64, f64) -> f64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(HELPER) {
        helper(args.get(2..).unwrap_or_default());
        return;
    }
    let options = options();
    remove_stale_namespaces();
    if !options.bench {
        // Smoke run: frames move through vif both ways.
        let out = guest_to_vxlan_vif(64, 0.1, 0.3);
        let back = vxlan_to_guest_vif(64, 0.1, 0.3);
        assert!(
            out > 0.0 && back > 0.0,
            "guest→VXLAN {out} pps, VXLAN→guest {back} pps"
        );
        println!("vxlan_uplink smoke: guest→VXLAN {out:.0} pps, VXLAN→guest {back:.0} pps");
        return;
    }
    if options.sizes.is_empty() {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let directions: [(&str, Scenario, Scenario); 2] = [
        ("guest → VXLAN", guest_to_vxlan_vif, guest_to_vxlan_kernel),
        ("VXLAN → guest", vxlan_to_guest_vif, vxlan_to_guest_kernel),
    ];
    println!("| direction | frame | vif (kpps) | kernel vxlan (kpps) | vif / kernel | load1 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, vif, kernel) in directions {
        for &size in &options.sizes {
            let load = load1();
            let (mut vif_runs, mut kernel_runs) = (Vec::new(), Vec::new());
            // Interleaved, so drift in the machine's load hits both alike.
            for _ in 0..options.runs.max(1) {
                vif_runs.push(vif(size, 0.5, options.secs));
                kernel_runs.push(kernel(size, 0.5, options.secs));
            }
            let (v, k) = (median(vif_runs), median(kernel_runs));
            println!(
                "| {name} | {size} B | {:.0} | {:.0} | {:.2} | {load:.2} |",
                v / 1e3,
                k / 1e3,
                v / k
            );
        }
    }
}
