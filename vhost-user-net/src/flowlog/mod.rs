//! Flow logs: sampled per-VIF flow records (addresses, ports, protocol, VLAN/VNI, packets, bytes,
//! first and last seen, verdict) written as JSON lines to a file rotated by size. Off by default.
//!
//! ```toml
//! [flow_log]
//! enabled = true
//! path = "/var/log/vif/flows.jsonl"   # default: <runtime dir>/flows.jsonl
//! sample_rate = 100                   # 1 flow in 100 (by flow hash); 1 logs every flow
//! max_file_bytes = 67108864           # rotate past 64 MiB: flows.jsonl.1, .2, ...
//! keep = 4                            # rotated files kept
//! active_timeout_s = 60               # a long flow is reported at least this often
//! idle_timeout_s = 15                 # a flow silent this long is reported and forgotten
//! ```
//!
//! # Cost on the datapath
//! - **Off**: the TX path tests one `Option` per pass and per frame; nothing else.
//! - **On**: per frame, the flow key is parsed (`vif_core::flow::FlowKey`, one header walk) and
//!   the sampling decision is its hash modulo `sample_rate` (hash-based flow selection, RFC 5475
//!   § 6.2.3: a flow is sampled whole or not at all, and every worker agrees). A sampled frame
//!   updates its entry in the worker's own bounded [`cache::FlowCache`] (open addressing, no
//!   allocation). The worker locks its cache once per pass, never per frame; the lock is
//!   contended only while the exporter sweeps that cache, once a second.
//! - **Export** is off the hot path: the [`export`] thread sweeps every cache each second, takes
//!   the flows that ended (idle) or ran long (active timeout), and writes them. When a cache is
//!   full, the entry a new flow collides with is moved to a bounded pending list for export;
//!   when that is full too, the record is counted as dropped, never blocking the worker.
//!
//! Records are egress flows (what a guest sends, judged by the pipeline): on a local segment the
//! receiving VIF's traffic is the sender's egress. Flows arriving from uplinks are not logged yet.

pub mod cache;
pub mod export;
pub mod record;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::default_socket_dir;

pub use cache::{FlowCache, FlowSampler, FlowVerdict};
pub use export::{FlowLog, FlowLogError};

/// The default flow log file name in the runtime directory.
pub const FLOW_LOG_NAME: &str = "flows.jsonl";

fn default_sample_rate() -> u32 {
    1
}
fn default_max_file_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_keep() -> u32 {
    4
}
fn default_active_timeout_s() -> u64 {
    60
}
fn default_idle_timeout_s() -> u64 {
    15
}
fn default_cache_entries() -> usize {
    4096
}

/// The `[flow_log]` table of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLogConfig {
    #[serde(default)]
    pub enabled: bool,
    /// `None`: `<runtime dir>/flows.jsonl`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Log one flow in `sample_rate`, chosen by flow hash.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    #[serde(default = "default_keep")]
    pub keep: u32,
    #[serde(default = "default_active_timeout_s")]
    pub active_timeout_s: u64,
    #[serde(default = "default_idle_timeout_s")]
    pub idle_timeout_s: u64,
    /// Flows each worker tracks at once (rounded up to a power of two).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
}

impl Default for FlowLogConfig {
    fn default() -> Self {
        FlowLogConfig {
            enabled: false,
            path: None,
            sample_rate: default_sample_rate(),
            max_file_bytes: default_max_file_bytes(),
            keep: default_keep(),
            active_timeout_s: default_active_timeout_s(),
            idle_timeout_s: default_idle_timeout_s(),
            cache_entries: default_cache_entries(),
        }
    }
}

/// Bounds of the `[flow_log]` settings.
pub const MAX_SAMPLE_RATE: u32 = 1 << 20;
pub const MIN_FILE_BYTES: u64 = 4096;
pub const MAX_KEEP: u32 = 100;
pub const MAX_TIMEOUT_S: u64 = 86_400;
pub const MAX_CACHE_ENTRIES: usize = 1 << 20;

impl FlowLogConfig {
    /// The file records go to.
    pub fn file(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| default_socket_dir().join(FLOW_LOG_NAME))
    }

    /// Checks every bound; the error names the field and the bound.
    pub fn validate(&self) -> Result<(), FlowLogError> {
        let check = |field: &'static str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(FlowLogError::OutOfRange {
                    field,
                    value,
                    min,
                    max,
                })
            }
        };
        check(
            "sample_rate",
            u64::from(self.sample_rate),
            1,
            u64::from(MAX_SAMPLE_RATE),
        )?;
        check(
            "max_file_bytes",
            self.max_file_bytes,
            MIN_FILE_BYTES,
            u64::MAX,
        )?;
        check("keep", u64::from(self.keep), 1, u64::from(MAX_KEEP))?;
        check("active_timeout_s", self.active_timeout_s, 1, MAX_TIMEOUT_S)?;
        check("idle_timeout_s", self.idle_timeout_s, 1, MAX_TIMEOUT_S)?;
        let entries = u64::try_from(self.cache_entries).unwrap_or(u64::MAX);
        let max_entries = u64::try_from(MAX_CACHE_ENTRIES).unwrap_or(u64::MAX);
        check("cache_entries", entries, 16, max_entries)
    }

    pub fn active_timeout(&self) -> Duration {
        Duration::from_secs(self.active_timeout_s)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_bounds_are_checked() {
        let config: FlowLogConfig = toml::from_str("").unwrap();
        assert!(!config.enabled);
        assert_eq!(config, FlowLogConfig::default());
        config.validate().unwrap();
        let zero: FlowLogConfig = toml::from_str("sample_rate = 0").unwrap();
        let err = zero.validate().unwrap_err().to_string();
        assert!(
            err.contains("sample_rate 0") && err.contains("[1, 1048576]"),
            "{err}"
        );
        assert!(toml::from_str::<FlowLogConfig>("rate = 3").is_err());
    }
}
