//! The real-guest test: two Linux guests under QEMU, each with one virtio-net NIC served by the
//! daemon binary over vhost-user, on one local segment, ping each other.
//!
//! Everything else in this crate's tests drives the daemon with `VirtualGuest`, a frontend we
//! wrote; this test puts the real thing on both sides: QEMU's vhost-user frontend (Debian 12,
//! QEMU 7.2, TCG) and Linux's `virtio_net` driver (Debian 12's 6.1 kernel). Guest A (10.0.0.1)
//! must resolve guest B (10.0.0.2) by ARP, then get every echo reply for 3 pings of 56, 1400 and
//! 1472 bytes of ICMP payload; 1472 makes a 1500-byte IP packet, a full 1514-byte frame at
//! MTU 1500. The only path between the two NICs is the daemon's switch, so A's PASS marker and
//! B's MAC in A's neighbour table prove that the daemon floods a broadcast, learns both MACs and
//! forwards unicast frames both ways through the RX and TX rings of a real driver.
//!
//! Both socket modes are covered: the daemon listens for A (`mode = "server"`) and connects to
//! B's QEMU (`mode = "client"`, QEMU `server=on`).
//!
//! The guests come from `scripts/guest/build-guest.sh` (run first: it installs QEMU, the kernel
//! and busybox when missing and is instant when its output is up to date) and boot through
//! `scripts/guest/boot.sh`, so the QEMU command line lives in one place. `$VIF_GUEST_DIR` picks
//! the guest image directory (default: `<target>/tmp/vif-guest`), `$VIF_DAEMON_BIN` another
//! daemon build.
//!
//! Every process runs in its own process group and a guard kills the group on drop, so a failed
//! assertion or a hung guest leaves no QEMU behind; the scratch directory (sockets, config,
//! logs) goes with `Scratch`. Deadlines only stop a hung test; nothing asserts on timing.

mod daemon_support;

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use daemon_support::{start, Scratch, DEADLINE};
use vmm_integration::launcher::{Launcher, Output, DAEMON_BINARY_ENV};

/// The repository root, where `scripts/guest/` lives.
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// A first build installs packages (about 1.5 min here); later builds are instant.
const BUILD_DEADLINE: Duration = Duration::from_secs(900);
/// One TCG boot to the result marker takes 10–30 s on a busy 2-core host; boot.sh kills QEMU
/// at this bound and the test waits a little longer for boot.sh itself.
const BOOT_TIMEOUT_SECS: u64 = 120;
const BOOT_DEADLINE: Duration = Duration::from_secs(BOOT_TIMEOUT_SECS + 15);

const MAC_A: &str = "52:54:00:00:0a:01";
const MAC_B: &str = "52:54:00:00:0a:02";

/// A child process in a process group of its own, killed with the whole group on drop.
struct Group {
    name: String,
    pgid: libc::pid_t,
    exited: mpsc::Receiver<io::Result<ExitStatus>>,
}

impl Group {
    /// Starts `command` with stdout and stderr appended to `output`.
    fn spawn(name: &str, mut command: Command, output: &Path) -> Group {
        let out = File::create(output).expect("create output file");
        let err = out.try_clone().expect("clone output file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let pgid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        let (tx, exited) = mpsc::channel();
        // A blocking wait cannot take a deadline; a thread can, and it reaps the child.
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Group {
            name: name.to_owned(),
            pgid,
            exited,
        }
    }

    /// The exit status, or `None` if `deadline` passed first.
    fn wait(&self, deadline: Duration) -> Option<ExitStatus> {
        match self.exited.recv_timeout(deadline) {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => panic!("cannot wait for {}: {e}", self.name),
            Err(_) => None,
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours. A negative pid
        // names the process group this guard's child leads; boot.sh keeps QEMU in it
        // (`timeout --foreground`). ESRCH (the group is gone) is the normal case after exit.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        let _ = self.exited.recv_timeout(Duration::from_secs(10));
    }
}

/// The last `lines` lines of a log file, for failure messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Builds (or finds up to date) the guest image; returns its directory.
fn guest_image(scratch: &Scratch) -> PathBuf {
    let dir = std::env::var_os("VIF_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("vif-guest"));
    let log = scratch.join("build-guest.log");
    let mut command = Command::new("bash");
    command
        .arg(Path::new(REPO).join("scripts/guest/build-guest.sh"))
        .arg(&dir);
    let build = Group::spawn("build-guest.sh", command, &log);
    match build.wait(BUILD_DEADLINE) {
        Some(status) if status.success() => dir,
        other => panic!(
            "build-guest.sh {}: {other:?}\n{}",
            dir.display(),
            tail(&log, 30)
        ),
    }
}

/// One guest booted by boot.sh; its console goes to `<scratch>/<name>.log`.
struct Guest {
    group: Group,
    console: PathBuf,
    output: PathBuf,
}

impl Guest {
    fn boot(
        scratch: &Scratch,
        image: &Path,
        name: &str,
        socket: &Path,
        mac: &str,
        qemu_listens: bool,
        params: &[&str],
    ) -> Guest {
        let console = scratch.join(&format!("{name}.log"));
        let output = scratch.join(&format!("{name}.boot.out"));
        let mut command = Command::new("bash");
        command
            .arg(Path::new(REPO).join("scripts/guest/boot.sh"))
            .args(["--guest".as_ref(), image.as_os_str()])
            .args(["--mac", mac, "--timeout", &BOOT_TIMEOUT_SECS.to_string()])
            .args(["--log".as_ref(), console.as_os_str()]);
        if qemu_listens {
            command.arg("--listen");
        }
        command.arg(socket).args(params);
        let group = Group::spawn(&format!("guest {name}"), command, &output);
        Guest {
            group,
            console,
            output,
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// What went wrong: /init's own lines (progress, pings, marker) rather than the kernel's
    /// boot messages, then what boot.sh and QEMU printed.
    fn report(&self) -> String {
        let console = self.console();
        let init_lines: Vec<&str> = console
            .lines()
            .filter(|line| !line.starts_with('['))
            .collect();
        let init_tail = &init_lines[init_lines.len().saturating_sub(40)..];
        format!(
            "--- {} console, /init lines (tail) ---\n{}\n--- boot.sh and QEMU (tail) ---\n{}",
            self.group.name,
            init_tail.join("\n"),
            tail(&self.output, 15)
        )
    }
}

#[test]
fn two_linux_guests_ping_across_one_local_segment() {
    let scratch = Scratch::new();
    let image = guest_image(&scratch);
    let socket_a = scratch.join("a.sock");
    let socket_b = scratch.join("b.vm.sock");
    let config = scratch.write(
        "vif.toml",
        &format!(
            r#"
[[vif]]
id = "guest-a"
mac = "{MAC_A}"
socket = "{a}"
uplink = {{ type = "local", segment = "lab" }}

[[vif]]
id = "guest-b"
mac = "{MAC_B}"
socket = "{b}"
mode = "client"
uplink = {{ type = "local", segment = "lab" }}
"#,
            a = socket_a.display(),
            b = socket_b.display(),
        ),
    );

    // B first: its QEMU listens, and the daemon (client mode for B) retries until it does.
    // vif.serve bounds B's life even if this test is killed before its guard runs.
    let guest_b = Guest::boot(
        &scratch,
        &image,
        "b",
        &socket_b,
        MAC_B,
        true,
        &["vif.ip=10.0.0.2/24", "vif.serve=110"],
    );
    let launcher = match std::env::var_os(DAEMON_BINARY_ENV) {
        Some(binary) => Launcher::new(binary)
            .env("VIF_RUNTIME_DIR", scratch.path())
            .env("RUST_LOG", "debug")
            .output(Output::File(scratch.log_path()))
            .stop_grace(DEADLINE),
        None => scratch.daemon(),
    };
    let daemon = start(&scratch, launcher.config(&config), &[&socket_a]);
    // A waits for B to answer (both boot at once), then pings with three payload sizes.
    let guest_a = Guest::boot(
        &scratch,
        &image,
        "a",
        &socket_a,
        MAC_A,
        false,
        &[
            "vif.ip=10.0.0.1/24",
            "vif.ping=10.0.0.2",
            "vif.peerwait=60",
            "vif.count=3",
            "vif.sizes=56,1400,1472",
        ],
    );

    let status = guest_a.group.wait(BOOT_DEADLINE);
    let report = || {
        format!(
            "{}\n{}\n--- daemon (tail) ---\n{}",
            guest_a.report(),
            guest_b.report(),
            tail(&scratch.log_path(), 30)
        )
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "guest A: boot.sh exit {:?} (0 PASS, 1 FAIL, 3 no marker, 124 timeout; None: hung)\n{}",
        status.map(|s| s.code()),
        report()
    );
    let console_a = guest_a.console();
    assert!(
        console_a.contains("VIF-GUEST-RESULT: PASS ping56=3/3 ping1400=3/3 ping1472=3/3"),
        "guest A's marker\n{}",
        report()
    );
    // ARP went out as a broadcast and B's reply came back with B's own MAC.
    assert!(
        console_a.contains(&format!("10.0.0.2 lladdr {MAC_B}")),
        "guest A's neighbour table lacks B\n{}",
        report()
    );
    assert!(
        guest_b.console().contains("VIF-GUEST-READY"),
        "guest B never served\n{}",
        report()
    );
    drop(guest_b);

    let stopped = daemon.stop();
    let log = scratch.log();
    assert!(
        matches!(&stopped, Ok(Some(s)) if s.success()),
        "daemon stop: {stopped:?}\n{log}"
    );
    for needle in [
        "vif guest-a: frontend connected",
        "vif guest-b: frontend connected",
    ] {
        assert!(log.contains(needle), "daemon log lacks {needle:?}\n{log}");
    }
    assert!(
        !log.contains("connection failed"),
        "the daemon dropped a connection\n{log}"
    );
    assert!(!socket_a.exists(), "the daemon must remove its socket");
}
