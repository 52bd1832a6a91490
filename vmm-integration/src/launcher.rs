//! Start, supervise and stop the `vhost-user-net` daemon from a VMM (or a test).
//!
//! [`Launcher`] describes how to run the daemon (binary, config file or flags, output, restart
//! policy); [`Launcher::spawn`] returns a [`DaemonHandle`] that owns the process:
//! - [`DaemonHandle::wait_for_sockets`] returns once the daemon listens on its sockets (a
//!   connect succeeds), with a deadline, and fails early if the daemon exits;
//! - with a [`RestartPolicy`], a supervisor thread restarts a crashed daemon with exponential
//!   backoff. A restarted daemon in client mode reconnects to running VMs by itself; in server
//!   mode the VMM must reconnect (QEMU `reconnect=`, Cloud Hypervisor retries on its own);
//! - [`DaemonHandle::stop`] sends SIGTERM (the daemon removes its sockets), waits a grace period,
//!   then SIGKILLs, and always reaps. Dropping the handle stops the daemon too.
//!
//! `std::process::Child` has no wait with a timeout, so waiting polls `try_wait` at a short,
//! growing interval; the child is only reaped under the lock that signalling takes, so a signal
//! never reaches a recycled pid.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod restart;

use restart::supervise;
pub use restart::RestartPolicy;

/// The daemon binary's file name.
pub const DAEMON_BINARY: &str = "vhost-user-net";
/// Environment variable naming the daemon binary, checked before any search.
pub const DAEMON_BINARY_ENV: &str = "VIF_DAEMON_BIN";

/// Why the daemon could not be started, waited for or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    #[error("daemon binary {DAEMON_BINARY:?} not found; searched {searched:?} (set {DAEMON_BINARY_ENV})")]
    BinaryNotFound { searched: Vec<PathBuf> },
    #[error("cannot start daemon {binary:?}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open daemon output file {path:?}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket {path:?} did not appear within {waited:?}")]
    SocketTimeout { path: PathBuf, waited: Duration },
    #[error("daemon exited ({status}) before socket {path:?} appeared")]
    ExitedBeforeSocket { path: PathBuf, status: ExitStatus },
    #[error("cannot send {signal} to daemon pid {pid}: {source}")]
    Signal {
        pid: u32,
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot wait for daemon pid {pid}: {source}")]
    Wait {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("daemon pid {pid} did not exit within {waited:?} of SIGKILL")]
    KillTimeout { pid: u32, waited: Duration },
}

/// Where the daemon's stdout and stderr go. A file is opened in append mode so restarts keep
/// earlier output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Inherit,
    Null,
    File(PathBuf),
}

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct Launcher {
    binary: PathBuf,
    args: Vec<OsString>,
    /// Environment changes in call order: `Some` sets, `None` removes.
    envs: Vec<(OsString, Option<OsString>)>,
    output: Output,
    restart: Option<RestartPolicy>,
    stop_grace: Duration,
}

impl Launcher {
    /// Runs `binary` with no arguments (one default VIF; see the daemon's `--help`).
    pub fn new(binary: impl Into<PathBuf>) -> Launcher {
        Launcher {
            binary: binary.into(),
            args: Vec::new(),
            envs: Vec::new(),
            output: Output::Inherit,
            restart: None,
            stop_grace: Duration::from_secs(5),
        }
    }

    /// Finds the daemon: `$VIF_DAEMON_BIN`, then next to the current executable, then one
    /// directory up (a test binary in `target/<profile>/deps` finds `target/<profile>`), then
    /// `$CARGO_TARGET_DIR/{release,debug}`.
    pub fn locate() -> Result<Launcher, LauncherError> {
        let mut searched = Vec::new();
        if let Some(path) = std::env::var_os(DAEMON_BINARY_ENV) {
            let path = PathBuf::from(path);
            if path.is_file() {
                return Ok(Launcher::new(path));
            }
            searched.push(path);
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            dirs.extend(exe.ancestors().skip(1).take(2).map(Path::to_path_buf));
        }
        if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
            let target = PathBuf::from(target);
            dirs.push(target.join("release"));
            dirs.push(target.join("debug"));
        }
        for dir in dirs {
            let candidate = dir.join(DAEMON_BINARY);
            if candidate.is_file() {
                return Ok(Launcher::new(candidate));
            }
            searched.push(candidate);
        }
        Err(LauncherError::BinaryNotFound { searched })
    }

    /// Serve the VIFs of this TOML config file (`--config FILE`).
    pub fn config(mut self, path: impl AsRef<Path>) -> Launcher {
        self.args.push("--config".into());
        self.args.push(path.as_ref().as_os_str().to_owned());
        self
    }

    /// Any other daemon argument (`--socket`, `--mac`, `--client`, `--log-level`, ...).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Launcher {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launcher {
        self.envs.push((key.into(), Some(value.into())));
        self
    }

    /// Runs the daemon without `key` in its environment (e.g. `XDG_RUNTIME_DIR`).
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Launcher {
        self.envs.push((key.into(), None));
        self
    }

    pub fn output(mut self, output: Output) -> Launcher {
        self.output = output;
        self
    }

    pub fn restart(mut self, policy: RestartPolicy) -> Launcher {
        self.restart = Some(policy);
        self
    }

    /// How long [`DaemonHandle::stop`] waits after SIGTERM before SIGKILL.
    pub fn stop_grace(mut self, grace: Duration) -> Launcher {
        self.stop_grace = grace;
        self
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Starts the daemon, and its supervisor thread if a restart policy is set.
    pub fn spawn(self) -> Result<DaemonHandle, LauncherError> {
        let child = self.start_child()?;
        log::info!("started {} (pid {})", self.binary.display(), child.id());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                child: Some(child),
                started_at: Instant::now(),
                stopping: false,
                restarts: 0,
                last_exit: None,
            }),
            changed: Condvar::new(),
        });
        let supervisor = match self.restart {
            Some(policy) => {
                let shared = Arc::clone(&shared);
                let launcher = self.clone();
                Some(
                    std::thread::Builder::new()
                        .name("vif-launcher".into())
                        .spawn(move || supervise(&launcher, &shared, policy))
                        .map_err(|source| LauncherError::Spawn {
                            binary: self.binary.clone(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        Ok(DaemonHandle {
            shared,
            supervisor,
            stop_grace: self.stop_grace,
        })
    }

    fn start_child(&self) -> Result<Child, LauncherError> {
        let (stdout, stderr) = match &self.output {
            Output::Inherit => (Stdio::inherit(), Stdio::inherit()),
            Output::Null => (Stdio::null(), Stdio::null()),
            Output::File(path) => {
                let open = || {
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|source| LauncherError::Output {
                            path: path.clone(),
                            source,
                        })
                };
                (Stdio::from(open()?), Stdio::from(open()?))
            }
        };
        let mut command = Command::new(&self.binary);
        for (key, value) in &self.envs {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| LauncherError::Spawn {
                binary: self.binary.clone(),
                source,
            })
    }
}

struct State {
    /// The running (or exited but unreaped) daemon; `None` while a restart waits its backoff.
    child: Option<Child>,
    started_at: Instant,
    stopping: bool,
    restarts: u32,
    last_exit: Option<ExitStatus>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when `stopping` is set or the child changes.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the state stays
        // usable for stopping the daemon, which is what matters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running daemon. Dropping it stops the daemon (SIGTERM, grace, SIGKILL).
pub struct DaemonHandle {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
    stop_grace: Duration,
}

/// The first poll interval when waiting on the child or a socket; it doubles up to
/// [`POLL_MAX`].
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(100);

impl DaemonHandle {
    /// The pid of the current daemon process, if one is running.
    pub fn pid(&self) -> Option<u32> {
        self.shared.lock().child.as_ref().map(Child::id)
    }

    /// How many times the supervisor restarted the daemon.
    pub fn restarts(&self) -> u32 {
        self.shared.lock().restarts
    }

    /// Waits until the supervisor has restarted the daemon at least `count` times; `false` at
    /// `deadline`.
    pub fn wait_restarts(&self, count: u32, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        let mut state = self.shared.lock();
        while state.restarts < count {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// Waits up to `deadline` for the daemon to exit on its own (a start that fails exits at
    /// once); `None` if it is still running then. Without a supervisor only: with one, an exit
    /// is followed by a restart.
    pub fn wait_exit(&self, deadline: Duration) -> Result<Option<ExitStatus>, LauncherError> {
        let mut state = self.shared.lock();
        let Some(child) = state.child.as_mut() else {
            return Ok(state.last_exit);
        };
        let status = wait_deadline(child, deadline)?;
        if status.is_some() {
            state.last_exit = status;
            if self.supervisor.is_none() {
                state.child = None;
            }
        }
        Ok(status)
    }

    /// Whether the daemon process is running now (reaps it if it exited and nobody restarts it).
    pub fn is_running(&self) -> bool {
        let mut state = self.shared.lock();
        match state.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                state.last_exit = Some(status);
                if self.supervisor.is_none() {
                    state.child = None;
                }
                false
            }
            _ => false,
        }
    }

    /// Waits until something listens on every path (a stale socket file left by a killed daemon
    /// does not count), or fails at `deadline` or as soon as the daemon exits without a
    /// supervisor to restart it.
    pub fn wait_for_sockets<P: AsRef<Path>>(
        &self,
        paths: &[P],
        deadline: Duration,
    ) -> Result<(), LauncherError> {
        let start = Instant::now();
        let mut interval = POLL_MIN;
        for path in paths {
            let path = path.as_ref();
            loop {
                if Self::is_listening(path) {
                    break;
                }
                if self.supervisor.is_none() {
                    let mut state = self.shared.lock();
                    if let Some(Ok(Some(status))) = state.child.as_mut().map(Child::try_wait) {
                        state.last_exit = Some(status);
                        return Err(LauncherError::ExitedBeforeSocket {
                            path: path.to_owned(),
                            status,
                        });
                    }
                }
                let waited = start.elapsed();
                if waited >= deadline {
                    return Err(LauncherError::SocketTimeout {
                        path: path.to_owned(),
                        waited,
                    });
                }
                std::thread::sleep(interval.min(deadline.saturating_sub(waited)));
                interval = (interval * 2).min(POLL_MAX);
            }
        }
        Ok(())
    }

    /// Whether something listens on `path`. A file that is a socket is not enough: a killed
    /// daemon leaves its socket file behind, and connecting to it is refused. The probe is
    /// closed at once; the daemon sees a frontend that leaves before its first message.
    fn is_listening(path: &Path) -> bool {
        let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
        is_socket && UnixStream::connect(path).is_ok()
    }

    /// Kills the daemon with SIGKILL, as a crash would (no cleanup: its sockets stay behind as
    /// stale files), and reaps it. A supervisor, if any, restarts it as after any crash.
    pub fn kill(&self) -> Result<Option<ExitStatus>, LauncherError> {
        let mut state = self.shared.lock();
        let Some(child) = state.child.as_mut() else {
            return Ok(None);
        };
        let pid = child.id();
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Some(status));
        }
        child.kill().map_err(|source| LauncherError::Signal {
            pid,
            signal: "SIGKILL",
            source,
        })?;
        let waited = Duration::from_secs(5);
        let status =
            wait_deadline(child, waited)?.ok_or(LauncherError::KillTimeout { pid, waited })?;
        state.last_exit = Some(status);
        if self.supervisor.is_none() {
            state.child = None;
        }
        Ok(Some(status))
    }

    /// Stops the daemon: SIGTERM, up to the grace period for it to exit, then SIGKILL. Returns
    /// the exit status of the last daemon process (`None` if none was running).
    pub fn stop(mut self) -> Result<Option<ExitStatus>, LauncherError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<Option<ExitStatus>, LauncherError> {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            self.shared.changed.notify_all();
        }
        if let Some(supervisor) = self.supervisor.take() {
            // The supervisor only waits on the condvar or on a short poll; it returns promptly.
            let _ = supervisor.join();
        }
        let mut state = self.shared.lock();
        let Some(child) = state.child.as_mut() else {
            return Ok(state.last_exit);
        };
        let pid = child.id();
        let status = match child.try_wait() {
            Ok(Some(status)) => status,
            _ => {
                send_signal(pid, libc::SIGTERM, "SIGTERM")?;
                match wait_deadline(child, self.stop_grace)? {
                    Some(status) => status,
                    None => {
                        log::warn!("daemon pid {pid} ignored SIGTERM for {:?}", self.stop_grace);
                        child.kill().map_err(|source| LauncherError::Signal {
                            pid,
                            signal: "SIGKILL",
                            source,
                        })?;
                        // SIGKILL cannot be caught; the wait only covers scheduling.
                        let waited = Duration::from_secs(5);
                        wait_deadline(child, waited)?
                            .ok_or(LauncherError::KillTimeout { pid, waited })?
                    }
                }
            }
        };
        state.child = None;
        state.last_exit = Some(status);
        Ok(Some(status))
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            log::warn!("stopping the daemon: {e}");
        }
    }
}

/// Polls `child` until it exits or `deadline` passes; `None` on timeout. Reaps on exit.
fn wait_deadline(
    child: &mut Child,
    deadline: Duration,
) -> Result<Option<ExitStatus>, LauncherError> {
    let start = Instant::now();
    let mut interval = POLL_MIN;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) => {}
            Err(source) => {
                return Err(LauncherError::Wait {
                    pid: child.id(),
                    source,
                })
            }
        }
        let waited = start.elapsed();
        if waited >= deadline {
            return Ok(None);
        }
        std::thread::sleep(interval.min(deadline.saturating_sub(waited)));
        interval = (interval * 2).min(POLL_MAX);
    }
}

fn send_signal(pid: u32, signal: libc::c_int, name: &'static str) -> Result<(), LauncherError> {
    let raw = libc::pid_t::try_from(pid).map_err(|_| LauncherError::Signal {
        pid,
        signal: name,
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The caller holds the
    // state lock and has not reaped `pid`, so it still names our child (perhaps a zombie), never
    // a recycled process.
    if unsafe { libc::kill(raw, signal) } != 0 {
        return Err(LauncherError::Signal {
            pid,
            signal: name,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_a_spawn_error() {
        let err = Launcher::new("/nonexistent/vhost-user-net")
            .output(Output::Null)
            .spawn()
            .err();
        assert!(matches!(err, Some(LauncherError::Spawn { .. })), "{err:?}");
    }

    #[test]
    fn stop_terminates_and_reaps() {
        // `sleep` stands in for the daemon: it dies on SIGTERM like the daemon exits on it.
        let handle = Launcher::new("sleep")
            .arg("60")
            .output(Output::Null)
            .spawn()
            .unwrap();
        assert!(handle.is_running());
        let status = handle.stop().unwrap().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn wait_exit_reports_status() {
        let handle = Launcher::new("false").output(Output::Null).spawn().unwrap();
        let status = handle.wait_exit(Duration::from_secs(30)).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(1));
        assert!(!handle.is_running());
    }

    #[test]
    fn exit_before_socket_is_reported() {
        let handle = Launcher::new("true").output(Output::Null).spawn().unwrap();
        let err = handle
            .wait_for_sockets(&["/nonexistent/vif.sock"], Duration::from_secs(30))
            .unwrap_err();
        assert!(
            matches!(err, LauncherError::ExitedBeforeSocket { .. }),
            "{err}"
        );
    }

    #[test]
    fn supervisor_restarts_a_crashing_daemon() {
        let policy = RestartPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            stable_after: Duration::from_secs(3600),
            max_restarts: Some(2),
        };
        let handle = Launcher::new("false")
            .output(Output::Null)
            .restart(policy)
            .spawn()
            .unwrap();
        // The supervisor gives up after max_restarts; the deadline only stops a hung test.
        assert!(handle.wait_restarts(2, Duration::from_secs(30)));
        assert_eq!(handle.restarts(), 2);
        let status = handle.stop().unwrap();
        assert!(status.is_some_and(|s| !s.success()));
    }
}
