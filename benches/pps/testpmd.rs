//! DPDK's `dpdk-testpmd` as a child process: started through `scripts/dpdk/testpmd-*.sh`, stopped
//! for sure, and its reports parsed.
//!
//! Shared by the `pps` bench and `vhost-user-net/tests/dpdk_peer.rs` (included there with
//! `#[path]`), so it uses `std` only.
//!
//! # Never leaving a testpmd behind
//! A forgotten testpmd busy-polls a core for ever, so three things bound its life:
//! - the scripts run it under `timeout -s INT` (`--max-secs`), which ends it even if this process
//!   dies without unwinding;
//! - it runs in its own process group, and [`Testpmd::stop`] / `Drop` signal the whole group
//!   (`timeout` and testpmd): `SIGINT` first, so testpmd prints its final forward statistics and
//!   closes its ports, then `SIGKILL` after [`STOP_GRACE`];
//! - `--in-memory --single-file-segments` keep its hugepages in memfds, released by the kernel
//!   when it exits however it exits; the empty `/var/run/dpdk/PREFIX` directory the EAL still
//!   creates is removed in `Drop`.
//!
//! # Reports
//! With `--stats-period` testpmd prints, per port, `NIC statistics for port N` and then
//! `Rx-pps: R ... Tx-pps: T` rates since the previous report; at exit, `Forward statistics for
//! port N` with `RX-packets`, `TX-packets` and `TX-dropped` (frames the port's TX ring refused).
//! [`parse_rates`] and [`parse_forward_totals`] read those; testpmd 22.11's layout (see the
//! fixture in the `parsers` tests of vhost-user-net/tests/dpdk_peer.rs).

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long testpmd gets to exit after `SIGINT` before `SIGKILL`.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Upper bound for `scripts/dpdk/setup.sh` (its first run installs `dpdk-dev` with apt).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(900);

/// What went wrong around a testpmd process.
#[derive(Debug)]
pub enum TestpmdError {
    /// `scripts/dpdk/setup.sh` failed or timed out.
    Setup { status: Option<ExitStatus> },
    /// The script could not be started or its log file created.
    Spawn { script: PathBuf, source: io::Error },
    /// Sending a signal or waiting for the process failed.
    Signal { pid: u32, source: io::Error },
}

impl std::fmt::Display for TestpmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestpmdError::Setup { status: Some(s) } => {
                write!(f, "scripts/dpdk/setup.sh failed: {s}")
            }
            TestpmdError::Setup { status: None } => write!(
                f,
                "scripts/dpdk/setup.sh did not finish within {SETUP_TIMEOUT:?}"
            ),
            TestpmdError::Spawn { script, source } => {
                write!(f, "cannot start {}: {source}", script.display())
            }
            TestpmdError::Signal { pid, source } => {
                write!(f, "cannot signal or reap testpmd group {pid}: {source}")
            }
        }
    }
}

impl std::error::Error for TestpmdError {}

/// `scripts/dpdk` of the workspace whose root is `workspace`.
pub fn scripts_dir(workspace: &Path) -> PathBuf {
    workspace.join("scripts").join("dpdk")
}

/// Runs `setup.sh` (install `dpdk-dev`, hugepages, hugetlbfs mount); idempotent and quiet when
/// everything is there. Bounded by [`SETUP_TIMEOUT`] through coreutils `timeout`.
pub fn setup(scripts: &Path) -> Result<(), TestpmdError> {
    let status = Command::new("timeout")
        .arg(SETUP_TIMEOUT.as_secs().to_string())
        .arg(scripts.join("setup.sh"))
        .stdin(Stdio::null())
        .status()
        .map_err(|source| TestpmdError::Spawn {
            script: scripts.join("setup.sh"),
            source,
        })?;
    match status.code() {
        Some(0) => Ok(()),
        // coreutils timeout's own exit code when the time ran out.
        Some(124) => Err(TestpmdError::Setup { status: None }),
        _ => Err(TestpmdError::Setup {
            status: Some(status),
        }),
    }
}

/// Which wrapper to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `testpmd-frontend.sh`: a `net_virtio_user` port dialling (or, with `--server`,
    /// listening on) a vhost-user socket.
    Frontend,
    /// `testpmd-backend.sh`: `net_vhost` ports listening on one or two sockets.
    Backend,
}

/// A running testpmd; stopped (and its runtime directory removed) when dropped.
#[derive(Debug)]
pub struct Testpmd {
    child: Option<Child>,
    prefix: String,
    log: PathBuf,
}

/// How to start one testpmd.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    pub role: Role,
    /// EAL `--file-prefix`: unique per process.
    pub prefix: &'a str,
    /// Ends testpmd even if nobody stops it (the scripts' `--max-secs`).
    pub max_secs: u64,
    /// The script's own options, e.g. `--cpu 0`.
    pub options: &'a [String],
    pub sockets: &'a [&'a Path],
    /// testpmd's application arguments (after `--`).
    pub testpmd_args: &'a [String],
    /// Where its output goes: a file, so a testpmd that prints a lot never blocks on a pipe.
    pub log: &'a Path,
}

impl Testpmd {
    /// Starts the script of `launch.role` from `scripts`.
    pub fn spawn(scripts: &Path, launch: &Launch<'_>) -> Result<Testpmd, TestpmdError> {
        let script = scripts.join(match launch.role {
            Role::Frontend => "testpmd-frontend.sh",
            Role::Backend => "testpmd-backend.sh",
        });
        let spawn_err = |source| TestpmdError::Spawn {
            script: script.clone(),
            source,
        };
        let out = File::create(launch.log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let mut command = Command::new(&script);
        command
            .args(["--prefix", launch.prefix])
            .args(["--max-secs", &launch.max_secs.to_string()])
            .args(launch.options)
            .args(launch.sockets)
            .arg("--")
            .args(launch.testpmd_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group: stop() signals timeout and testpmd together.
            .process_group(0);
        let child = command.spawn().map_err(spawn_err)?;
        Ok(Testpmd {
            child: Some(child),
            prefix: launch.prefix.to_owned(),
            log: launch.log.to_path_buf(),
        })
    }

    /// The process group id (the script's PID, which `exec`s into `timeout`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `SIGINT` to the group, up to [`STOP_GRACE`] for it to print its final statistics and exit,
    /// then `SIGKILL`. Returns the exit status (`None` if it had to be killed) and the log.
    pub fn stop(mut self) -> Result<(Option<ExitStatus>, String), TestpmdError> {
        let status = self.stop_group()?;
        Ok((status, self.log_text()))
    }

    fn stop_group(&mut self) -> Result<Option<ExitStatus>, TestpmdError> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = child.id();
        let signal_err = |source| TestpmdError::Signal { pid, source };
        if let Some(status) = child.try_wait().map_err(signal_err)? {
            // The script is reaped, but testpmd may have outlived it only if the exec failed;
            // kill the group anyway (ESRCH is fine).
            let _ = signal_group(pid, "KILL");
            return Ok(Some(status));
        }
        let _ = signal_group(pid, "INT");
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().map_err(signal_err)? {
                let _ = signal_group(pid, "KILL");
                return Ok(Some(status));
            }
            // No pidfd in std: poll the exit at a coarse interval; this only bounds shutdown.
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = signal_group(pid, "KILL");
        child.kill().map_err(signal_err)?;
        child.wait().map_err(signal_err)?;
        Ok(None)
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.stop_group();
        // Empty with --in-memory; remove_dir refuses a non-empty one, which we then leave alone.
        let _ = std::fs::remove_dir(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// `kill -s SIGNAL -- -PGID` through the `kill` utility (std has no signal API but SIGKILL).
fn signal_group(pgid: u32, signal: &str) -> io::Result<ExitStatus> {
    Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// One port's rates in one periodic report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRates {
    pub port: u16,
    pub rx_pps: u64,
    pub tx_pps: u64,
}

/// Every periodic report's rates, in log order, one entry per port and report.
pub fn parse_rates(log: &str) -> Vec<PortRates> {
    let mut rates = Vec::new();
    let mut port = None;
    let mut rx_pps = None;
    for line in log.lines() {
        if let Some(n) = after(line, "NIC statistics for port") {
            port = first_number(n).and_then(|p| u16::try_from(p).ok());
            rx_pps = None;
        } else if let Some(n) = after(line, "Rx-pps:") {
            rx_pps = first_number(n);
        } else if let Some(n) = after(line, "Tx-pps:") {
            if let (Some(port), Some(rx), Some(tx)) = (port, rx_pps, first_number(n)) {
                rates.push(PortRates {
                    port,
                    rx_pps: rx,
                    tx_pps: tx,
                });
            }
            rx_pps = None;
        }
    }
    rates
}

/// A port's totals from the final `Forward statistics` block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardTotals {
    pub port: u16,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Frames the port's transmit ring refused (the peer did not take them in time).
    pub tx_dropped: u64,
}

/// The per-port `Forward statistics` blocks testpmd prints when it stops.
pub fn parse_forward_totals(log: &str) -> Vec<ForwardTotals> {
    let mut totals: Vec<ForwardTotals> = Vec::new();
    let mut current: Option<ForwardTotals> = None;
    for line in log.lines() {
        if let Some(n) = after(line, "Forward statistics for port") {
            if let Some(done) = current.take() {
                totals.push(done);
            }
            current = first_number(n)
                .and_then(|p| u16::try_from(p).ok())
                .map(|port| ForwardTotals {
                    port,
                    ..ForwardTotals::default()
                });
        } else if let Some(entry) = current.as_mut() {
            if let Some(n) = after(line, "RX-packets:") {
                entry.rx_packets = first_number(n).unwrap_or(0);
            } else if let Some(n) = after(line, "TX-packets:") {
                entry.tx_packets = first_number(n).unwrap_or(0);
                if let Some(d) = after(n, "TX-dropped:") {
                    entry.tx_dropped = first_number(d).unwrap_or(0);
                }
            } else if line.contains("----------") && !line.contains("statistics") {
                totals.push(*entry);
                current = None;
            }
        }
    }
    totals.extend(current);
    totals
}

fn after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.find(key).map(|at| &line[at + key.len()..])
}

fn first_number(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The median of `values` (the lower middle for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}
