//! `vhost-user-net`: a vhost-user-net backend serving one virtio-net device per VIF.
//!
//! Data flows one way: guest → [`tx`] → [`pipeline`] → port (another VIF on the [`switch`], later
//! an uplink), and port → [`rx`] → guest. [`backend`] implements `VhostUserBackend` and only
//! dispatches events; [`daemon`] runs the sockets (server and client mode, reconnect) and the
//! daemon's own events; [`config`] turns the config file into the `vif-core` model.

pub mod backend;
pub mod config;
pub mod control;
pub mod daemon;
pub mod device;
pub mod flowlog;
pub mod inbox;
pub mod metrics;
pub mod offload_check;
pub mod pipeline;
pub mod policy;
pub mod port;
pub mod rx;
pub mod stream_server;
pub mod switch;
pub mod tx;
pub mod uplink;
