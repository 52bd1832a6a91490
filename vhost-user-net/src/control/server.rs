//! The control socket's server side: a Unix socket only its owner can use, and the JSON-lines
//! framing in front of [`super::handlers`].
//!
//! Access control is two locks: the socket file is mode 0600 (unix(7): connecting needs write
//! permission on the socket file), and every accepted peer's credentials (`SO_PEERCRED`) must be
//! our effective uid or root. The second closes the window between `bind` and `chmod`, in which
//! the file has the umask's mode, and holds if the file's mode is later changed by hand.
//! Binding goes through [`crate::daemon::socket::BoundSocket`]: a live socket at the path is
//! refused, a stale one replaced, and only our own file is removed at shutdown.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use super::handlers;
use super::protocol::{ErrorCode, Request, Response, MAX_REQUEST};
use crate::daemon::socket::{BoundSocket, SocketError};
use crate::daemon::Daemon;
use crate::stream_server::{Acceptor, Handled, Limits, Protocol};

/// The socket file's mode: owner read and write only.
pub const CONTROL_SOCKET_MODE: u32 = 0o600;

/// What a control client may hold: a few operators' and scripts' connections, one request of
/// [`MAX_REQUEST`] bytes, a minute of idleness (an interactive `socat` session).
pub const CONTROL_LIMITS: Limits = Limits {
    max_connections: 8,
    max_request: MAX_REQUEST,
    idle_timeout: Duration::from_secs(60),
};

/// Why the control socket cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control {0}")]
    Socket(#[source] SocketError),
    #[error("control socket {path:?}: cannot set mode {mode:o}: {source}")]
    Mode {
        path: PathBuf,
        mode: u32,
        #[source]
        source: io::Error,
    },
    #[error("control socket {path:?}: cannot prepare the listener: {source}")]
    Listener {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ControlError {
    /// Another process listens on the path.
    pub fn is_in_use(&self) -> bool {
        matches!(self, ControlError::Socket(SocketError::InUse { .. }))
    }
}

/// The bound control socket.
pub struct ControlListener {
    /// Removes the file when dropped, if it is still ours.
    bound: BoundSocket,
    listener: UnixListener,
    euid: libc::uid_t,
}

impl ControlListener {
    /// Binds `path` with mode 0600 (see the module docs).
    pub fn bind(path: &Path) -> Result<ControlListener, ControlError> {
        let bound = BoundSocket::bind(path).map_err(ControlError::Socket)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(CONTROL_SOCKET_MODE))
            .map_err(|source| ControlError::Mode {
                path: path.to_owned(),
                mode: CONTROL_SOCKET_MODE,
                source,
            })?;
        let listener = bound
            .listener()
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| ControlError::Listener {
                path: path.to_owned(),
                source,
            })?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        Ok(ControlListener {
            bound,
            listener,
            euid,
        })
    }

    pub fn path(&self) -> &Path {
        self.bound.path()
    }
}

impl AsRawFd for ControlListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

/// The uid of a Unix socket's peer, as the kernel recorded it at `connect` (socket(7),
/// `SO_PEERCRED`).
fn peer_uid(stream: &UnixStream) -> io::Result<libc::uid_t> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>())
        .map_err(|_| io::Error::other("ucred size"))?;
    // SAFETY: the fd is a valid socket owned by `stream`; `cred` and `len` are valid for writes
    // of `len` bytes, and the kernel writes at most `len` bytes. The return value is checked.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

impl Acceptor for ControlListener {
    type Stream = UnixStream;

    fn accept_one(&self) -> io::Result<UnixStream> {
        self.listener.accept_one()
    }

    fn admit(&self, stream: &UnixStream) -> Result<(), String> {
        match peer_uid(stream) {
            Ok(uid) if uid == self.euid || uid == 0 => Ok(()),
            Ok(uid) => Err(format!(
                "peer uid {uid} is neither the daemon's ({}) nor root",
                self.euid
            )),
            Err(e) => Err(format!("cannot read the peer's credentials: {e}")),
        }
    }
}

/// JSON lines in front of the handlers.
pub struct ControlProtocol {
    daemon: Rc<RefCell<Daemon>>,
}

impl ControlProtocol {
    pub fn new(daemon: Rc<RefCell<Daemon>>) -> ControlProtocol {
        ControlProtocol { daemon }
    }
}

/// Parses one request line into a request or the response refusing it.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    let text = std::str::from_utf8(line).map_err(|e| {
        Response::failure(ErrorCode::BadRequest, format!("request is not UTF-8: {e}"))
    })?;
    serde_json::from_str(text).map_err(|e| {
        Response::failure(
            ErrorCode::BadRequest,
            format!("not a valid request: {e} (one JSON object per line, with \"op\")"),
        )
    })
}

impl Protocol for ControlProtocol {
    fn handle(&mut self, input: &[u8], output: &mut Vec<u8>) -> Handled {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return Handled::NeedMore;
        };
        let consumed = end.saturating_add(1);
        let line = input.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            // Blank lines (an interactive client pressing enter) get no response.
            return Handled::Request {
                consumed,
                close: false,
            };
        }
        let response = match parse_request(line) {
            Ok(request) => handlers::handle(&mut self.daemon.borrow_mut(), request),
            Err(refusal) => refusal,
        };
        output.extend_from_slice(&response.to_line());
        Handled::Request {
            consumed,
            close: false,
        }
    }

    fn too_large(&mut self, limit: usize, output: &mut Vec<u8>) {
        let response = Response::failure(
            ErrorCode::TooLarge,
            format!("request longer than {limit} bytes"),
        );
        output.extend_from_slice(&response.to_line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_owner_only_and_owner_is_admitted() {
        let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/vif-control-").unwrap();
        let path = dir.as_path().join("control.sock");
        let listener = ControlListener::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client = UnixStream::connect(&path).unwrap();
        let accepted = loop {
            match listener.accept_one() {
                Ok(stream) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(listener.admit(&accepted), Ok(()));
        drop(client);
        // A second daemon on the same path is refused as "in use".
        let second = ControlListener::bind(&path).err().unwrap();
        assert!(second.is_in_use(), "{second}");
        drop(listener);
        assert!(
            !path.exists(),
            "the socket file is removed with the listener"
        );
    }

    #[test]
    fn bad_lines_are_refused_with_bad_request() {
        for line in [&b"not json"[..], b"{\"op\":\"nope\"}", b"\xff"] {
            let refusal = parse_request(line).unwrap_err();
            assert_eq!(refusal.error.unwrap().code, ErrorCode::BadRequest);
        }
        assert_eq!(
            parse_request(br#"{"op":"list"}"#).unwrap(),
            Request::List {}
        );
    }
}
