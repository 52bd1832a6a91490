//! Prometheus metrics: the per-VIF SLIs (throughput, loss, drops by cause, batch time,
//! provisioning latency) over HTTP, on loopback by default.
//!
//! - [`exposition`]: the text format 0.0.4 writer;
//! - [`histogram`]: fixed-bucket histograms the datapath records into without locks;
//! - [`collect`]: every exported family, read from the daemon's VIFs at scrape time;
//! - [`uplink`]: the uplink ports' families (VXLAN, VLAN) and the SR-IOV VFs' counters;
//! - [`http`]: `GET /metrics` over a minimal HTTP/1.1 server.
//!
//! The endpoint is a [`crate::stream_server::StreamServer`] on the daemon's event manager: no
//! thread, no runtime. Counters are read at scrape time from the VIFs' `VifStats`, which belong
//! to the VIF's backend and outlive its frontend connections, so a reconnect never sends a
//! counter backwards; removing a VIF removes its series.
//!
//! Config file:
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9464"   # default; any address:port, port 0 picks a free one
//! enabled = true              # false: no endpoint
//! ```
//!
//! When `listen` is not given and the default port is taken (another daemon on the host), the
//! daemon logs it and runs without metrics; an address given explicitly must bind.

pub mod collect;
pub mod exposition;
pub mod histogram;
pub mod http;
pub mod policy;
pub mod uplink;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use serde::Deserialize;

use crate::stream_server::Limits;

/// The default endpoint: loopback only (the series name tenants and VIFs), port 9464, the
/// default of exporters embedded in applications (OpenTelemetry's Prometheus exporter).
pub const DEFAULT_METRICS_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9464,
));

/// What a scrape client may hold: a handful of connections (Prometheus uses one per target), an
/// 8 KiB request head (typical HTTP server limits start there), 10 s of idleness.
pub const HTTP_LIMITS: Limits = Limits {
    max_connections: 16,
    max_request: 8 * 1024,
    idle_timeout: Duration::from_secs(10),
};

fn yes() -> bool {
    true
}

/// The `[metrics]` table of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to listen; `None` means [`DEFAULT_METRICS_LISTEN`], best effort.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            enabled: true,
        }
    }
}

/// Why the metrics endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Binds the endpoint's listener as configured: `Ok(None)` when disabled, or when the default
/// address is taken (logged).
pub fn bind(config: &MetricsConfig) -> Result<Option<TcpListener>, MetricsError> {
    if !config.enabled {
        return Ok(None);
    }
    let addr = config.listen.unwrap_or(DEFAULT_METRICS_LISTEN);
    let bound = TcpListener::bind(addr).and_then(|listener| {
        listener.set_nonblocking(true)?;
        Ok(listener)
    });
    match bound {
        Ok(listener) => Ok(Some(listener)),
        Err(source) if config.listen.is_none() && source.kind() == io::ErrorKind::AddrInUse => {
            log::warn!(
                "metrics: the default address {addr} is in use; running without metrics \
                 (set [metrics] listen or --metrics-listen)"
            );
            Ok(None)
        }
        Err(source) => Err(MetricsError::Bind { addr, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refuses_unknown_keys() {
        let config: MetricsConfig = toml::from_str("").unwrap();
        assert_eq!(config, MetricsConfig::default());
        let config: MetricsConfig = toml::from_str("listen = \"127.0.0.1:0\"").unwrap();
        assert_eq!(config.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert!(toml::from_str::<MetricsConfig>("listen = \"nowhere\"").is_err());
        assert!(toml::from_str::<MetricsConfig>("port = 1").is_err());
    }

    #[test]
    fn disabled_binds_nothing_and_explicit_conflict_fails() {
        let off = MetricsConfig {
            enabled: false,
            ..MetricsConfig::default()
        };
        assert!(bind(&off).unwrap().is_none());
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = MetricsConfig {
            listen: Some(first.local_addr().unwrap()),
            enabled: true,
        };
        assert!(matches!(bind(&taken), Err(MetricsError::Bind { .. })));
    }
}
