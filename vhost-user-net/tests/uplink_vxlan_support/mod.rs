//! Shared helpers of the VXLAN uplink's real-peer tests: network namespaces that are always
//! deleted (a Drop guard, so also when a test panics), veth pairs between them, running code or
//! commands inside one, a VIF served in-process with a `VirtualGuest` on it, and frames built
//! with vif-core's wire reprs.
//!
//! Needs root (CI runs as root): `ip netns add` fails loudly otherwise. Names are unique per
//! process and test (`vif-test-<pid>-<n>`), so tests run in parallel. Every wait has a deadline;
//! deadlines only stop hung tests, nothing asserts on timing.

#![allow(dead_code)] // each test file uses a different subset

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use vhost::vhost_user::Listener;
use vhost_user_net::backend::NetBackend;
use vhost_user_net::switch::Segment;
use vif_core::mac::MacAddr;
use vif_core::model::{UplinkSpec, VifId, VifSpec, VxlanUplink};
use vif_core::offload::VirtioNetHdr;
use vif_core::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use vif_core::wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use vif_core::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use vif_core::wire::Csum;
use vmm_integration::guest::{GuestConfig, VirtualGuest};
use vmm_integration::launcher::{DaemonHandle, Launcher, Output as LauncherOutput};

/// Upper bound of any wait.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long to listen for a frame that must not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "vif-test-{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `condition` until it holds or [`WAIT`] passes; returns its last value. For counters
/// published just after the frames they count (a transmit's, after `sendmmsg` returns).
pub fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::yield_now();
    }
    condition()
}

/// Runs `program args`, panicking with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A network namespace, deleted (with every link in it) on drop.
pub struct Netns {
    name: String,
}

/// Deletes namespaces left by test processes that no longer exist (killed before their Drop
/// guards ran): names carry the creating pid. Once per process.
fn remove_stale_namespaces() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let pid = name
                .strip_prefix("vif-test-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = pid {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = Command::new("ip").args(["netns", "del", name]).output();
                }
            }
        }
    });
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        remove_stale_namespaces();
        let name = unique(tag);
        run("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME args`.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec NAME program args`, which must succeed.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `program args` inside the namespace, to spawn.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.name.as_str(), program]);
        command
    }

    /// Runs `f` on a thread that entered the namespace: sockets it creates belong to the
    /// namespace for their whole life, whichever thread uses them later.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: `ns` is an open namespace file; setns only changes this thread's
                    // network namespace, and the thread ends with the scope.
                    let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .expect("namespace thread panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair `a_if` (in `a`) — `b_if` (in `b`), both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// Adds `cidr` to `dev`; IPv6 without duplicate address detection, so it is usable at once.
pub fn addr(ns: &Netns, dev: &str, cidr: &str) {
    if cidr.contains(':') {
        ns.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
    } else {
        ns.ip(&["addr", "add", cidr, "dev", dev]);
    }
}

/// The kernel's VXLAN peer of the real-peer tests: a veth pair `vxh0` (in `host`, holding
/// `local`) — `vxp0` (in `peer`, holding `remote`), and in `peer` a Linux `vxlan` device `vx0`
/// for VNI 42 towards `local` on UDP 4789, with MAC `peer_mac`, address `peer_ip`/24 and a
/// permanent neighbour entry `guest_ip` → `guest_mac` (so the kernel needs no ARP).
#[allow(clippy::too_many_arguments)]
pub fn kernel_vxlan_peer(
    host: &Netns,
    peer: &Netns,
    local: &str,
    remote: &str,
    prefix: u8,
    peer_mac: MacAddr,
    peer_ip: Ipv4Addr,
    guest: (MacAddr, Ipv4Addr),
) {
    veth(host, "vxh0", peer, "vxp0");
    addr(host, "vxh0", &format!("{local}/{prefix}"));
    addr(peer, "vxp0", &format!("{remote}/{prefix}"));
    peer.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "local", remote, "remote", local,
        "dstport", "4789", "dev", "vxp0",
    ]);
    peer.ip(&["link", "set", "vx0", "address", &peer_mac.to_string(), "up"]);
    addr(peer, "vx0", &format!("{peer_ip}/24"));
    peer.ip(&[
        "neigh",
        "add",
        &guest.1.to_string(),
        "lladdr",
        &guest.0.to_string(),
        "dev",
        "vx0",
        "nud",
        "permanent",
    ]);
}

/// The daemon binary `binary` with `config`, started inside `ns` by `ip netns exec` (which execs
/// it, so the handle's pid is the daemon's and dropping the handle stops the daemon): the VTEPs
/// of its VXLAN VIFs bind there. Default sockets go to `runtime_dir`, its output to `log`.
/// Waits for `sockets`; if they do not appear, panics with the daemon's output.
pub fn daemon_in(
    ns: &Netns,
    binary: &Path,
    config: &Path,
    runtime_dir: &Path,
    log: &Path,
    sockets: &[&Path],
) -> DaemonHandle {
    let daemon = Launcher::new("ip")
        .arg("netns")
        .arg("exec")
        .arg(ns.name())
        .arg(binary)
        .config(config)
        .env("VIF_RUNTIME_DIR", runtime_dir)
        .env("RUST_LOG", "debug")
        .output(LauncherOutput::File(log.to_path_buf()))
        .stop_grace(WAIT)
        .spawn()
        .expect("spawn the daemon");
    if let Err(e) = daemon.wait_for_sockets(sockets, Duration::from_secs(30)) {
        panic!(
            "daemon did not come up: {e}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    daemon
}

/// Sends one ICMP echo request from the guest to `peer` and waits for the matching reply,
/// which must carry the request's identifier and data.
pub fn ping_once(guest: &mut GuestVif, peer: (MacAddr, Ipv4Addr), guest_ip: Ipv4Addr, seq_no: u16) {
    let payload: Vec<u8> = (0..56u8).map(|i| i ^ seq_no as u8).collect();
    let request = echo_request(
        guest.mac, peer.0, guest_ip, peer.1, 0x7669, seq_no, &payload,
    );
    guest.send(&request);
    let reply = guest
        .recv_matching(WAIT, |frame| {
            echo_reply_of(frame, peer.1, guest_ip).is_some_and(|(_, seq, _)| seq == seq_no)
        })
        .unwrap_or_else(|| panic!("no echo reply {seq_no} from the kernel's vxlan"));
    let (ident, _, data) = echo_reply_of(&reply, peer.1, guest_ip).unwrap();
    assert_eq!((ident, data), (0x7669, payload));
    assert_eq!(&reply[..6], guest.mac.as_bytes());
}

/// A scratch directory for vhost-user sockets, removed on drop.
pub struct SocketDir(PathBuf);

impl SocketDir {
    pub fn new() -> SocketDir {
        let path = std::env::temp_dir().join(unique("sock"));
        std::fs::create_dir_all(&path).unwrap();
        SocketDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A virtual guest connected to a VIF (served in-process or by the daemon binary).
pub struct GuestVif {
    pub guest: VirtualGuest,
    pub mac: MacAddr,
}

pub fn vxlan_spec(name: &str, mac: MacAddr, uplink: VxlanUplink) -> VifSpec {
    VifSpec::new(VifId::new(name).unwrap(), mac, UplinkSpec::Vxlan(uplink))
}

/// Serves `spec` on `segment` through a socket in `dir` and connects a guest with 64 RX
/// buffers posted.
pub fn guest_vif(dir: &SocketDir, spec: &VifSpec, segment: &Arc<Segment>) -> GuestVif {
    let backend = NetBackend::new(spec, segment.clone()).unwrap();
    let path = dir.path().join(format!("{}.sock", spec.id.as_str()));
    let mut listener = Listener::new(&path, true).unwrap();
    let mut daemon = backend.new_daemon(spec.id.as_str()).unwrap();
    let serving = backend.clone();
    thread::spawn(move || {
        if daemon.start(&mut listener).is_ok() {
            let _ = daemon.wait();
        }
        serving.disconnected();
    });
    GuestVif::connect(&path, spec.mac)
}

impl GuestVif {
    /// A guest connected to a VIF served elsewhere (the daemon binary), 64 RX buffers posted.
    pub fn connect(path: &Path, mac: MacAddr) -> GuestVif {
        let cfg = GuestConfig {
            tx_buf_len: 65536 + 64,
            ..GuestConfig::default()
        };
        let mut guest = VirtualGuest::connect(path, cfg).unwrap();
        guest.post_rx_buffers(0, 64, 2048).unwrap();
        GuestVif { guest, mac }
    }

    pub fn send(&mut self, frame: &[u8]) {
        self.guest.send(0, &VirtioNetHdr::default(), frame).unwrap();
    }

    pub fn send_with(&mut self, hdr: &VirtioNetHdr, frame: &[u8]) {
        self.guest.send(0, hdr, frame).unwrap();
    }

    /// The next frame that `keep` accepts, within `timeout`; others are skipped (the kernel's
    /// own chatter, IPv6 router solicitations and the like).
    pub fn recv_matching(
        &mut self,
        timeout: Duration,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.guest.recv_timeout(0, left) {
                Ok((_, frame)) if keep(&frame) => return Some(frame),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

pub fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0x56, 0x49, 0x46, 0, last])
}

/// An Ethernet + IPv4 + ICMP echo request (RFC 792), built with vif-core's reprs.
pub fn echo_request(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq_no: u16,
    payload: &[u8],
) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data: payload,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::ICMP,
        payload_len: icmp.buffer_len() as u16,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: seq_no,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut frame = vec![0u8; 14 + 20 + icmp.buffer_len()];
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]))
    .unwrap();
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut frame[14..]),
        Csum::Verify,
    )
    .unwrap();
    icmp.emit(
        &mut Icmpv4Packet::new_unchecked(&mut frame[34..]),
        Csum::Verify,
    )
    .unwrap();
    frame
}

/// `(ident, seq_no, data)` if `frame` is an ICMP echo reply from `from` to `to`, checksums
/// verified.
pub fn echo_reply_of(frame: &[u8], from: Ipv4Addr, to: Ipv4Addr) -> Option<(u16, u16, Vec<u8>)> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    let repr = Ipv4Repr::parse(&ip, Csum::Verify).ok()?;
    if repr.protocol != IpProtocol::ICMP || repr.src_addr != from || repr.dst_addr != to {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    match Icmpv4Repr::parse(&icmp, Csum::Verify).ok()? {
        Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        } => Some((ident, seq_no, data.to_vec())),
        _ => None,
    }
}

/// A frame of IEEE 802 local experimental EtherType 0x88b5 with a counting payload and `tag`
/// in its first payload byte.
pub fn test_frame(dst: MacAddr, src: MacAddr, len: usize, tag: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    bytes[0..6].copy_from_slice(dst.as_bytes());
    bytes[6..12].copy_from_slice(src.as_bytes());
    bytes[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    bytes[14] = tag;
    bytes
}

pub fn is_test_frame(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x88, 0xb5][..])
}

/// The VXLAN uplink of a VIF.
pub fn uplink(vni: u32, local: &str, remotes: &[&str]) -> VxlanUplink {
    VxlanUplink {
        vni: vif_core::ids::Vni::new(vni).unwrap(),
        local: local.parse().unwrap(),
        remotes: remotes
            .iter()
            .map(|r| r.parse::<IpAddr>().unwrap())
            .collect(),
        udp_port: 4789,
        underlay_mtu: 1500,
        interface: None,
    }
}
