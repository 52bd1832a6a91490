//! Helpers of the 802.1Q uplink's kernel tests: network namespaces deleted by a Drop guard (also
//! when a test panics), a veth pair between a "host" namespace (vif's parent interface) and a
//! "peer" namespace (the wire), a VIF served in-process with a `VirtualGuest` on it, and a raw
//! packet socket on the peer end to capture and inject frames as they are on the wire.
//!
//! Needs root (CI runs as root). Names are unique per process and test, so tests run in
//! parallel. Every wait has a deadline; deadlines only stop hung tests.

#![allow(dead_code)] // each test file uses a different subset

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use vhost::vhost_user::Listener;
use vhost_user_net::backend::NetBackend;
use vhost_user_net::switch::Segment;
use vhost_user_net::uplink::vlan::socket::parse_auxdata;
use vif_core::ids::VlanId;
use vif_core::mac::MacAddr;
use vif_core::model::{UplinkSpec, VifId, VifSpec, VlanUplink};
use vif_core::offload::VirtioNetHdr;
use vmm_integration::guest::{GuestConfig, VirtualGuest};

/// Upper bound of any wait.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long to listen for a frame that must not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

pub fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "vif-test-{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
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

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        run("ip", &["netns", "add", &name]);
        Netns { name }
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

    /// A command running `program` inside the namespace, to spawn.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.name.as_str(), program]);
        command
    }

    /// Runs `f` on a thread inside the namespace: sockets it creates stay in the namespace for
    /// their whole life, whichever thread uses them later.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: `ns` is an open namespace file; setns changes only this thread's
                    // network namespace, and the thread ends with the scope.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
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

/// A veth pair `a_if` (in `a`) — `b_if` (in `b`), both up, IPv6 off so the kernel sends no
/// chatter of its own on them.
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
    for (ns, dev) in [(a, a_if), (b, b_if)] {
        let key = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
        let _ = ns.command("sysctl").args(["-qw", &key]).output();
        ns.ip(&["link", "set", dev, "up"]);
    }
}

/// A scratch directory, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new() -> ScratchDir {
        let path = std::env::temp_dir().join(unique("dir"));
        std::fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0x56, 0x4c, 0x41, 0x4e, last])
}

pub fn vid(v: u16) -> VlanId {
    VlanId::new(v).unwrap()
}

pub fn vlan_uplink(parent: &str, v: u16, pcp: u8) -> VlanUplink {
    VlanUplink {
        vid: vid(v),
        pcp,
        parent: parent.into(),
        parent_mtu: 1500,
    }
}

/// A VIF served in-process with a virtual guest connected and 64 RX buffers posted.
pub struct GuestVif {
    pub backend: Arc<NetBackend>,
    pub guest: VirtualGuest,
    pub mac: MacAddr,
}

pub fn guest_vif(
    dir: &ScratchDir,
    name: &str,
    mac: MacAddr,
    uplink: VlanUplink,
    segment: &Arc<Segment>,
) -> GuestVif {
    let mut spec = VifSpec::new(VifId::new(name).unwrap(), mac, UplinkSpec::Vlan(uplink));
    spec.mtu = 1496;
    let backend = NetBackend::new(&spec, segment.clone()).unwrap();
    let path = dir.path().join(format!("{name}.sock"));
    let mut listener = Listener::new(&path, true).unwrap();
    let mut daemon = backend.new_daemon(name).unwrap();
    let serving = backend.clone();
    thread::spawn(move || {
        if daemon.start(&mut listener).is_ok() {
            let _ = daemon.wait();
        }
        serving.disconnected();
    });
    let cfg = GuestConfig {
        tx_buf_len: 65536 + 64,
        ..GuestConfig::default()
    };
    let mut guest = VirtualGuest::connect(&path, cfg).unwrap();
    guest.post_rx_buffers(0, 64, 2048).unwrap();
    GuestVif {
        backend,
        guest,
        mac,
    }
}

impl GuestVif {
    pub fn send(&mut self, frame: &[u8]) {
        self.guest.send(0, &VirtioNetHdr::default(), frame).unwrap();
    }

    /// The next frame `keep` accepts within `timeout`; others are skipped.
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

/// A frame of EtherType 0x88b5 (IEEE 802 local experimental) with a counting payload and
/// `marker` in its first payload byte.
pub fn test_frame(dst: MacAddr, src: MacAddr, len: usize, marker: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    bytes[0..6].copy_from_slice(dst.as_bytes());
    bytes[6..12].copy_from_slice(src.as_bytes());
    bytes[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    bytes[14] = marker;
    bytes
}

/// `frame` with an 802.1Q tag (TPID 0x8100, `pcp`, `vid`) after its MAC addresses.
pub fn tagged(frame: &[u8], vid: u16, pcp: u8) -> Vec<u8> {
    let tci = (u16::from(pcp) << 13) | vid;
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// A frame as it was on the wire: with its tag back in place when the kernel had stripped it
/// into `PACKET_AUXDATA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub bytes: Vec<u8>,
    /// Sent by the peer's own stack (`PACKET_OUTGOING`).
    pub outgoing: bool,
}

impl WireFrame {
    pub fn src(&self) -> Option<MacAddr> {
        self.bytes.get(6..12).and_then(MacAddr::from_bytes)
    }

    /// `(vid, pcp)` of a C-tag right after the MACs.
    pub fn c_tag(&self) -> Option<(u16, u8)> {
        match self.bytes.get(12..16)? {
            [0x81, 0x00, hi, lo] => {
                let tci = u16::from_be_bytes([*hi, *lo]);
                Some((tci & 0x0fff, (tci >> 13) as u8))
            }
            _ => None,
        }
    }
}

/// A raw packet socket on the peer's end of the veth: what vif sends arrives here, and frames
/// sent here arrive at vif's parent.
pub struct WirePeer {
    fd: OwnedFd,
    /// Serialises receivers: a test reads from one thread at a time.
    lock: Mutex<()>,
}

fn check(rc: libc::c_int, what: &str) {
    assert!(rc >= 0, "{what}: {}", io::Error::last_os_error());
}

impl WirePeer {
    pub fn open(ns: &Netns, dev: &str) -> WirePeer {
        let dev = dev.to_owned();
        let fd = ns.enter(move || {
            let name = std::ffi::CString::new(dev).unwrap();
            // SAFETY: `name` is NUL-terminated and outlives the call.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(ifindex, 0, "if_nametoindex");
            let protocol = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2) call; the result is checked.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::c_int::from(protocol),
                )
            };
            check(raw, "socket");
            // SAFETY: `raw` is a fresh descriptor nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let one: libc::c_int = 1;
            // SAFETY: `one` lives across the call and its size is passed.
            check(
                unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_PACKET,
                        libc::PACKET_AUXDATA,
                        (&one as *const libc::c_int).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    )
                },
                "PACKET_AUXDATA",
            );
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as libc::c_ushort;
            addr.sll_protocol = protocol;
            addr.sll_ifindex = ifindex as i32;
            // SAFETY: `addr` is a valid sockaddr_ll and its size is passed.
            check(
                unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        (&addr as *const libc::sockaddr_ll).cast(),
                        size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                },
                "bind",
            );
            fd
        });
        WirePeer {
            fd,
            lock: Mutex::new(()),
        }
    }

    /// Sends one whole frame (tag included, if any) out of the peer's end.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is valid for reads of its length.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            rc,
            frame.len() as isize,
            "send: {}",
            io::Error::last_os_error()
        );
    }

    /// The next frame within `timeout`, or `None`.
    fn recv(&self, timeout: Duration) -> Option<WireFrame> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            return None;
        }
        let mut frame = vec![0u8; 65536];
        let mut control = [0u8; 128];
        // SAFETY: all-zero sockaddr_ll/msghdr are valid; pointers are set next.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: frame.as_mut_ptr().cast(),
            iov_len: frame.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        // SAFETY: every buffer `msg` points to lives across the call, sized as declared.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return None;
        }
        frame.truncate(n as usize);
        let stripped = parse_auxdata(&control[..msg.msg_controllen.min(control.len())]);
        let bytes = match stripped {
            Some((tpid, tci)) => {
                let mut with_tag = frame[..12].to_vec();
                with_tag.extend_from_slice(&tpid.to_be_bytes());
                with_tag.extend_from_slice(&tci.to_be_bytes());
                with_tag.extend_from_slice(&frame[12..]);
                with_tag
            }
            None => frame,
        };
        Some(WireFrame {
            bytes,
            outgoing: addr.sll_pkttype == libc::PACKET_OUTGOING,
        })
    }

    /// The next incoming frame `keep` accepts within `timeout`.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        mut keep: impl FnMut(&WireFrame) -> bool,
    ) -> Option<WireFrame> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.recv(left) {
                Some(frame) if !frame.outgoing && keep(&frame) => return Some(frame),
                _ => continue,
            }
        }
    }
}

/// Installs tshark from Debian if it is missing (once per test process).
pub fn ensure_tshark() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let present = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !present {
        let status = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "tshark"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("run apt-get");
        assert!(status.success(), "apt-get install tshark failed");
    }
}

/// Waits (bounded) until `done` holds, for counters published just after the frame they count
/// was seen: the datapath sends, then publishes.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}
