//! Shared helpers of the daemon's integration tests: the real binary started through
//! `vmm_integration::launcher`, a temporary directory per test (removed on drop, also when the
//! test fails), and a bare vhost-user frontend with read deadlines.
//!
//! Every wait has a deadline; the deadlines only stop hung tests, nothing asserts on timing.

#![allow(dead_code)] // each test file uses a different subset

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::mpsc;
use std::time::Duration;

use vhost::vhost_user::Frontend;
use vhost::VhostBackend;
use vmm_integration::launcher::{DaemonHandle, Launcher, Output};
use vmm_sys_util::tempdir::TempDir;

/// Upper bound for any wait in these tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub const BINARY: &str = env!("CARGO_BIN_EXE_vhost-user-net");

/// A test's scratch directory: default sockets, config files and the daemon's output.
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        // Under /tmp rather than a deep target path: socket paths must fit in sun_path.
        let dir = TempDir::new_with_prefix("/tmp/vif-daemon-test-").expect("create temp dir");
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// The daemon, with default sockets in this directory and its output in `daemon.log`.
    pub fn daemon(&self) -> Launcher {
        Launcher::new(BINARY)
            .env("VIF_RUNTIME_DIR", self.path())
            .env("RUST_LOG", "debug")
            .output(Output::File(self.log_path()))
            .stop_grace(DEADLINE)
    }

    pub fn log_path(&self) -> PathBuf {
        self.join("daemon.log")
    }

    /// Everything the daemons of this test printed, stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }
}

/// Starts `launcher` and waits for `sockets`; on failure the panic shows the daemon's output.
pub fn start(scratch: &Scratch, launcher: Launcher, sockets: &[&Path]) -> DaemonHandle {
    let handle = launcher.spawn().expect("spawn daemon");
    if let Err(e) = handle.wait_for_sockets(sockets, DEADLINE) {
        panic!(
            "daemon did not come up: {e}\n--- daemon output ---\n{}",
            scratch.log()
        );
    }
    handle
}

/// Runs a daemon expected to exit by itself (bad arguments, failed start).
pub fn run_to_exit(scratch: &Scratch, launcher: Launcher) -> ExitStatus {
    let handle = launcher.spawn().expect("spawn daemon");
    match handle.wait_exit(DEADLINE) {
        Ok(Some(status)) => status,
        other => panic!(
            "daemon did not exit: {other:?}\n--- daemon output ---\n{}",
            scratch.log()
        ),
    }
}

/// A frontend on a fresh connection to a listening daemon; replies are awaited at most
/// [`DEADLINE`].
pub fn connect(path: &Path) -> Frontend {
    let stream = UnixStream::connect(path).expect("connect to the daemon");
    frontend(stream)
}

pub fn frontend(stream: UnixStream) -> Frontend {
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set read timeout");
    Frontend::from_stream(stream, 2)
}

/// The first two messages any VMM sends. `SET_OWNER` fails on a connection whose handler was
/// already claimed, so a success on a reconnect proves the daemon started a fresh session.
pub fn handshake(frontend: &Frontend) -> Result<u64, vhost::Error> {
    frontend.set_owner()?;
    frontend.get_features()
}

/// Accepts one connection on `listener` within [`DEADLINE`].
pub fn accept(listener: &UnixListener) -> UnixStream {
    let listener = listener.try_clone().expect("clone listener");
    let (tx, rx) = mpsc::channel();
    // A blocked accept cannot be given a deadline; a thread can be abandoned when the test fails.
    std::thread::spawn(move || {
        let _ = tx.send(listener.accept().map(|(stream, _)| stream));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(stream)) => stream,
        other => panic!("the daemon did not connect: {other:?}"),
    }
}
