//! A blocking control client: connect, send one request line, read one response line, each with
//! a deadline. `vifctl` and the tests use it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Request, Response, MAX_REQUEST};

/// Default deadline of one request: creating or removing VIFs joins threads, give it room.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the control socket at {path:?}: {source} (is the daemon running?)")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("control socket {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("control socket {path:?}: the daemon closed the connection without a response")]
    Closed { path: PathBuf },
    #[error("control socket {path:?}: the response is not valid: {reason}")]
    BadResponse { path: PathBuf, reason: String },
    #[error("the request is {len} bytes, more than the daemon accepts ({max})")]
    TooLarge { len: usize, max: usize },
}

/// A connection to the control socket.
pub struct ControlClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
}

impl ControlClient {
    /// Connects to `path`; every later read and write waits at most `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<ControlClient, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let io_err = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
        Ok(ControlClient {
            path: path.to_owned(),
            reader: BufReader::new(stream),
        })
    }

    /// Sends `request` and waits for its response.
    pub fn request(&mut self, request: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(request).map_err(|e| ClientError::BadResponse {
            path: self.path.clone(),
            reason: format!("cannot encode the request: {e}"),
        })?;
        line.push(b'\n');
        if line.len() > MAX_REQUEST {
            return Err(ClientError::TooLarge {
                len: line.len(),
                max: MAX_REQUEST,
            });
        }
        self.reader
            .get_mut()
            .write_all(&line)
            .map_err(|source| self.io(source))?;
        let mut response = String::new();
        let read = self
            .reader
            .read_line(&mut response)
            .map_err(|source| self.io(source))?;
        if read == 0 {
            return Err(ClientError::Closed {
                path: self.path.clone(),
            });
        }
        serde_json::from_str(&response).map_err(|e| ClientError::BadResponse {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }
}
