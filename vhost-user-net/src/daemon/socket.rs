//! Listening sockets for server-mode VIFs: bind safely, and remove only what this daemon made.
//!
//! A socket file can outlive its daemon (SIGKILL, crash). Binding refuses a path another process
//! is listening on (two daemons would split the VMs between them), removes a stale socket file
//! (nothing answers a connect), and never removes anything that is not a socket. On shutdown the
//! file is removed only if it is still the one we bound (same device and inode), so a daemon that
//! was replaced does not delete its successor's socket. The comparison is sound because the
//! bound listener is kept open until after it: a bound socket holds its inode, which therefore
//! cannot be freed and reused by a successor's file.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why a VIF's socket cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("socket {path:?} is in use: another process is listening on it (is another daemon serving this VIF?)")]
    InUse { path: PathBuf },
    #[error("socket {path:?}: the path exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("socket {path:?}: cannot create directory {dir:?}: {source}")]
    CreateDir {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket {path:?}: cannot remove the stale socket file: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket {path:?}: cannot probe the existing socket file: {source}")]
    Probe {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket {path:?}: cannot bind: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A listening socket this daemon created; removed from the file system on drop.
#[derive(Debug)]
pub struct BoundSocket {
    /// Dropped after the file is removed (field order does not matter: `Drop::drop` runs first).
    listener: UnixListener,
    path: PathBuf,
    /// Identity of the file we bound, checked before removing it.
    dev: u64,
    ino: u64,
}

impl BoundSocket {
    /// Binds `path`, creating its directory, replacing a stale socket file and refusing a live
    /// one.
    pub fn bind(path: &Path) -> Result<BoundSocket, SocketError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SocketError::CreateDir {
                path: path.to_owned(),
                dir: dir.to_owned(),
                source,
            })?;
        }
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SocketError::Probe {
                    path: path.to_owned(),
                    source,
                })
            }
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(SocketError::NotASocket {
                    path: path.to_owned(),
                })
            }
            Ok(_) => match UnixStream::connect(path) {
                // The probe connection is closed at once; a vhost-user peer sees EOF before any
                // message and drops it.
                Ok(_) => {
                    return Err(SocketError::InUse {
                        path: path.to_owned(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    log::info!("removing stale socket {}", path.display());
                    std::fs::remove_file(path).map_err(|source| SocketError::RemoveStale {
                        path: path.to_owned(),
                        source,
                    })?;
                }
                Err(source) => {
                    return Err(SocketError::Probe {
                        path: path.to_owned(),
                        source,
                    })
                }
            },
        }
        let listener = UnixListener::bind(path).map_err(|source| match source.kind() {
            // Lost a race with another binder between the probe and the bind.
            io::ErrorKind::AddrInUse => SocketError::InUse {
                path: path.to_owned(),
            },
            _ => SocketError::Bind {
                path: path.to_owned(),
                source,
            },
        })?;
        let meta = std::fs::symlink_metadata(path).map_err(|source| SocketError::Probe {
            path: path.to_owned(),
            source,
        })?;
        Ok(BoundSocket {
            listener,
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second descriptor of the listener, for a supervisor thread to accept on.
    pub fn listener(&self) -> io::Result<UnixListener> {
        self.listener.try_clone()
    }

    /// Whether `path` still names the file we bound.
    fn is_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino)
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if self.is_ours() {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove socket {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory removed on drop, even when the test fails.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("vif-socket-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn binds_creates_dir_and_removes_on_drop() {
        let tmp = TempDir::new("create");
        let path = tmp.0.join("sub/vif0.sock");
        let bound = BoundSocket::bind(&path).unwrap();
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());
        drop(bound);
        assert!(!path.exists());
    }

    #[test]
    fn live_socket_is_in_use() {
        let tmp = TempDir::new("live");
        let path = tmp.0.join("vif0.sock");
        let _first = BoundSocket::bind(&path).unwrap();
        let err = BoundSocket::bind(&path).unwrap_err();
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("in use"));
    }

    #[test]
    fn stale_socket_is_replaced() {
        let tmp = TempDir::new("stale");
        let path = tmp.0.join("vif0.sock");
        // A listener dropped without unlinking leaves exactly what a killed daemon leaves.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let bound = BoundSocket::bind(&path).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        drop(bound);
    }

    #[test]
    fn regular_file_is_never_replaced() {
        let tmp = TempDir::new("file");
        let path = tmp.0.join("vif0.sock");
        std::fs::write(&path, b"keep me").unwrap();
        assert!(matches!(
            BoundSocket::bind(&path),
            Err(SocketError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    }

    #[test]
    fn successor_socket_is_not_removed() {
        let tmp = TempDir::new("successor");
        let path = tmp.0.join("vif0.sock");
        let first = BoundSocket::bind(&path).unwrap();
        // Someone replaces our file (e.g. an operator restarted another daemon by hand).
        std::fs::remove_file(&path).unwrap();
        let _successor = UnixListener::bind(&path).unwrap();
        drop(first);
        assert!(path.exists());
    }
}
