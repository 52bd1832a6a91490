//! Shared helpers of the real-guest tests (`qemu_guest.rs`, `qemu_vxlan.rs`): the guest image
//! from `scripts/guest/build-guest.sh`, guests booted by `scripts/guest/boot.sh`, and child
//! processes in process groups of their own that are killed with the whole group on drop.
//!
//! The QEMU command line lives in boot.sh only; these helpers only choose its options and the
//! guest's `vif.*` kernel parameters (see `scripts/guest/init.sh`). `$VIF_GUEST_DIR` picks the
//! guest image directory (default: `<target>/tmp/vif-guest`).
//!
//! Every process runs in its own process group and a guard kills the group on drop, so a failed
//! assertion or a hung guest leaves no QEMU behind. Deadlines only stop a hung test; nothing
//! asserts on timing.

#![allow(dead_code)] // each test file uses a different subset

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The repository root, where `scripts/guest/` lives.
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// A first build installs packages (about 1.5 min here); later builds are instant.
pub const BUILD_DEADLINE: Duration = Duration::from_secs(900);
/// One TCG boot to the result marker takes 10–30 s on a busy 2-core host; boot.sh kills QEMU
/// at this bound and the test waits a little longer for boot.sh itself.
pub const BOOT_TIMEOUT_SECS: u64 = 120;
pub const BOOT_DEADLINE: Duration = Duration::from_secs(BOOT_TIMEOUT_SECS + 15);

/// A child process in a process group of its own, killed with the whole group on drop.
pub struct Group {
    pub name: String,
    pgid: libc::pid_t,
    exited: mpsc::Receiver<io::Result<ExitStatus>>,
}

impl Group {
    /// Starts `command` with stdout and stderr appended to `output`.
    pub fn spawn(name: &str, mut command: Command, output: &Path) -> Group {
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
    pub fn wait(&self, deadline: Duration) -> Option<ExitStatus> {
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
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Builds (or finds up to date) the guest image; returns its directory. The build's output
/// goes to `scratch/build-guest.log`.
pub fn guest_image(scratch: &Path) -> PathBuf {
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
pub struct Guest {
    pub group: Group,
    console: PathBuf,
    output: PathBuf,
}

impl Guest {
    /// Boots the guest of `image` with its NIC on `socket` (QEMU connects, or listens when
    /// `qemu_listens`) and `params` on the kernel command line.
    pub fn boot(
        scratch: &Path,
        image: &Path,
        name: &str,
        socket: &Path,
        mac: &str,
        qemu_listens: bool,
        params: &[&str],
    ) -> Guest {
        let console = scratch.join(format!("{name}.log"));
        let output = scratch.join(format!("{name}.boot.out"));
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

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// What went wrong: /init's own lines (progress, pings, marker) rather than the kernel's
    /// boot messages, then what boot.sh and QEMU printed.
    pub fn report(&self) -> String {
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
