//! The control socket: list, inspect, create, update, remove VIFs and apply a desired state at
//! runtime, without disturbing the VIFs a request does not name.
//!
//! - [`protocol`]: the JSON-lines requests and responses (documented there, and in the README);
//! - [`server`]: the Unix socket (mode 0600, owner-only peers) on the daemon's event manager;
//! - [`handlers`]: one function per operation, over the running daemon;
//! - [`apply`]: the pure difference between running and desired VIFs;
//! - [`client`]: a blocking client, for `vifctl` and tests.
//!
//! Config file:
//!
//! ```toml
//! [control]
//! socket = "/run/vif/control.sock"   # default: <runtime dir>/control.sock
//! enabled = true                     # false: no control socket
//! ```
//!
//! Requests run in the daemon's main thread, one at a time, so two clients never race on the
//! VIF set. Creating or removing a VIF takes milliseconds (a socket and a thread); the other
//! VIFs' threads never stop meanwhile.

pub mod apply;
pub mod client;
pub mod handlers;
pub mod protocol;
pub mod server;

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::default_socket_dir;

/// The control socket's file name in the runtime directory.
pub const CONTROL_SOCKET_NAME: &str = "control.sock";

fn yes() -> bool {
    true
}

/// The `[control]` table of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `None`: [`default_control_socket`], best effort (another daemon on the same runtime
    /// directory keeps it, and this one runs without a control socket, logged).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: None,
            enabled: true,
        }
    }
}

impl ControlConfig {
    /// The socket path this config means, when enabled.
    pub fn path(&self) -> Option<PathBuf> {
        self.enabled
            .then(|| self.socket.clone().unwrap_or_else(default_control_socket))
    }
}

/// `<runtime dir>/control.sock`, beside the default VIF sockets.
pub fn default_control_socket() -> PathBuf {
    default_socket_dir().join(CONTROL_SOCKET_NAME)
}
