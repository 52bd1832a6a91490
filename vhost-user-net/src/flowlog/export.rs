//! The flow log exporter: one thread that sweeps every worker's cache once a second and appends
//! the records as JSON lines to a file it rotates by size (`flows.jsonl` → `flows.jsonl.1` → ...,
//! the oldest beyond `keep` deleted), as logrotate's `size` + `rotate` would.
//!
//! A cache whose worker is gone (its VIF was removed or restarted) is drained with its flows
//! marked `shutdown` and forgotten. Stopping the exporter (dropping [`FlowLog`]) drains every
//! cache and flushes the file, so a daemon stopped cleanly loses no record. Write errors are
//! counted and logged once per sweep, never retried in a loop.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cache::{Exported, FlowCache, FlowSampler};
use super::record::{Clock, FlowRecord};
use super::FlowLogConfig;

/// How often caches are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Why the flow log cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    #[error("flow_log: {field} {value} is out of range [{min}, {max}]")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("flow_log: cannot open {path:?}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("flow_log: cannot start the exporter thread: {0}")]
    Spawn(#[source] io::Error),
}

/// What the exporter has done, for metrics.
#[derive(Debug, Default)]
pub struct FlowLogStats {
    /// Records written.
    pub records: AtomicU64,
    /// Records lost: caches full (counted by the workers, summed here at each sweep), or a
    /// failed write.
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    pub rotations: AtomicU64,
}

struct Registered {
    vif: Arc<str>,
    cache: Arc<Mutex<FlowCache>>,
    /// The cache's drop count already added to the stats.
    dropped_seen: u64,
}

struct Shared {
    caches: Mutex<Vec<Registered>>,
    stats: FlowLogStats,
}

/// The running flow log. Dropping it stops the exporter after a last full drain.
pub struct FlowLog {
    shared: Arc<Shared>,
    config: FlowLogConfig,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FlowLog {
    /// Validates `config`, opens the file (creating its directory) and starts the exporter.
    pub fn start(config: &FlowLogConfig) -> Result<FlowLog, FlowLogError> {
        config.validate()?;
        let file = FlowFile::open(config.file(), config.max_file_bytes, config.keep)?;
        let shared = Arc::new(Shared {
            caches: Mutex::new(Vec::new()),
            stats: FlowLogStats::default(),
        });
        let (stop, stopped) = mpsc::channel();
        let exporter = Exporter {
            shared: Arc::clone(&shared),
            file,
            clock: Clock::now(),
            idle: config.idle_timeout(),
            active: config.active_timeout(),
            sample_rate: config.sample_rate,
            batch: Vec::new(),
            line: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("vif-flowlog".into())
            .spawn(move || exporter.run(&stopped))
            .map_err(FlowLogError::Spawn)?;
        log::info!(
            "flow log: {} (1 flow in {}, rotated at {} bytes, {} kept)",
            config.file().display(),
            config.sample_rate,
            config.max_file_bytes,
            config.keep
        );
        Ok(FlowLog {
            shared,
            config: config.clone(),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A new cache for one worker of `vif`, registered with the exporter.
    pub fn sampler(&self, vif: &str) -> FlowSampler {
        let cache = Arc::new(Mutex::new(FlowCache::new(
            self.config.cache_entries,
            self.config.sample_rate,
        )));
        let mut caches = self.shared.caches.lock().unwrap_or_else(|e| e.into_inner());
        caches.push(Registered {
            vif: Arc::from(vif),
            cache: Arc::clone(&cache),
            dropped_seen: 0,
        });
        FlowSampler::new(cache)
    }

    pub fn stats(&self) -> &FlowLogStats {
        &self.shared.stats
    }

    pub fn file(&self) -> PathBuf {
        self.config.file()
    }
}

impl Drop for FlowLog {
    fn drop(&mut self) {
        // Closing the channel is the stop signal.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("flow log: the exporter thread panicked");
            }
        }
    }
}

struct Exporter {
    shared: Arc<Shared>,
    file: FlowFile,
    clock: Clock,
    idle: Duration,
    active: Duration,
    sample_rate: u32,
    /// Reused across sweeps.
    batch: Vec<Exported>,
    line: Vec<u8>,
}

impl Exporter {
    fn run(mut self, stopped: &mpsc::Receiver<()>) {
        loop {
            match stopped.recv_timeout(SWEEP_INTERVAL) {
                Err(RecvTimeoutError::Timeout) => self.sweep(false),
                // Disconnected (the FlowLog was dropped) or an explicit stop.
                _ => {
                    self.sweep(true);
                    return;
                }
            }
        }
    }

    /// Collects due records from every cache (all of them when `final_drain`) and writes them.
    fn sweep(&mut self, final_drain: bool) {
        let now = Instant::now();
        let mut caches = self.shared.caches.lock().unwrap_or_else(|e| e.into_inner());
        let mut written = 0u64;
        let mut failed = 0u64;
        let mut first_error = None;
        let mut index = 0;
        while index < caches.len() {
            let Some(registered) = caches.get_mut(index) else {
                break;
            };
            // Only we hold it: the worker and its VIF are gone.
            let orphaned = Arc::strong_count(&registered.cache) == 1;
            {
                let mut cache = registered.cache.lock().unwrap_or_else(|e| e.into_inner());
                if final_drain || orphaned {
                    cache.drain(&mut self.batch);
                } else {
                    cache.sweep(now, self.idle, self.active, &mut self.batch);
                }
                let dropped = cache.dropped();
                let new_drops = dropped.wrapping_sub(registered.dropped_seen);
                registered.dropped_seen = dropped;
                self.shared
                    .stats
                    .dropped
                    .fetch_add(new_drops, Ordering::Relaxed);
            }
            let vif = Arc::clone(&registered.vif);
            for record in self.batch.drain(..) {
                self.line.clear();
                let serialized = serde_json::to_writer(
                    &mut self.line,
                    &FlowRecord::new(&vif, &record, &self.clock, self.sample_rate),
                );
                self.line.push(b'\n');
                let written_line = match serialized {
                    Ok(()) => self.file.write_line(&self.line).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match written_line {
                    Ok(()) => written += 1,
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            if orphaned {
                caches.swap_remove(index);
            } else {
                index += 1;
            }
        }
        drop(caches);
        if let Err(e) = self.file.flush() {
            first_error.get_or_insert(e.to_string());
        }
        let stats = &self.shared.stats;
        stats.records.fetch_add(written, Ordering::Relaxed);
        stats.dropped.fetch_add(failed, Ordering::Relaxed);
        stats
            .rotations
            .store(self.file.rotations, Ordering::Relaxed);
        if let Some(error) = first_error {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "flow log: cannot write {}: {error} ({failed} record(s) lost this sweep)",
                self.file.path.display()
            );
        }
    }
}

/// The log file and its rotation.
struct FlowFile {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    size: u64,
    max: u64,
    keep: u32,
    rotations: u64,
}

impl FlowFile {
    fn open(path: PathBuf, max: u64, keep: u32) -> Result<FlowFile, FlowLogError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| FlowLogError::Open {
                path: path.clone(),
                source,
            })?;
        }
        let (file, size) = open_append(&path).map_err(|source| FlowLogError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(FlowFile {
            path,
            file: Some(BufWriter::new(file)),
            size,
            max,
            keep,
            rotations: 0,
        })
    }

    /// Appends one line, rotating first if it would take the file past its size (a file always
    /// takes at least one line, so a line longer than the limit still goes somewhere).
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        if self.size > 0 && self.size.saturating_add(len) > self.max {
            self.rotate()?;
        }
        if self.file.is_none() {
            let (file, size) = open_append(&self.path)?;
            self.file = Some(BufWriter::new(file));
            self.size = size;
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("flow log file is not open"))?;
        file.write_all(line)?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        // flows.jsonl.(keep-1) -> .keep (replacing the oldest), ..., flows.jsonl -> .1
        for n in (1..self.keep).rev() {
            rename_if_exists(&numbered(n), &numbered(n + 1))?;
        }
        rename_if_exists(&self.path, &numbered(1))?;
        let (file, size) = open_append(&self.path)?;
        self.file = Some(BufWriter::new(file));
        self.size = size;
        self.rotations = self.rotations.wrapping_add(1);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use vmm_sys_util::tempdir::TempDir;

    use super::*;
    use crate::flowlog::cache::FlowVerdict;

    fn udp_frame(sport: u16) -> Vec<u8> {
        // As in cache.rs: Ethernet II, IPv4 (no options), UDP to port 53, 4 bytes of payload.
        let mut f = Vec::new();
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]);
        f
    }

    #[test]
    fn records_of_a_removed_vif_and_at_stop_are_written() {
        let dir = TempDir::new_with_prefix("/tmp/vif-flowlog-").unwrap();
        let config = FlowLogConfig {
            enabled: true,
            path: Some(dir.as_path().join("logs/flows.jsonl")),
            ..FlowLogConfig::default()
        };
        let log = FlowLog::start(&config).unwrap();
        let now = Instant::now();
        let kept = log.sampler("web-1");
        kept.lock()
            .observe(&udp_frame(1000), FlowVerdict::Forwarded, now);
        kept.lock()
            .observe(&udp_frame(1000), FlowVerdict::Forwarded, now);
        let gone = log.sampler("web-2");
        gone.lock().observe(
            &udp_frame(7),
            FlowVerdict::Dropped(vif_core::stats::DropReason::AclDeny),
            now,
        );
        drop(gone);
        drop(log); // stop: final drain
        let text = std::fs::read_to_string(config.file()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let web1 = lines.iter().find(|l| l["vif"] == "web-1").unwrap();
        assert_eq!(web1["packets"], 2);
        assert_eq!(web1["bytes"], 92);
        assert_eq!(web1["src"], "192.0.2.1");
        assert_eq!(web1["dst_port"], 53);
        assert_eq!(web1["proto"], 17);
        assert_eq!(web1["verdict"], "forwarded");
        assert_eq!(web1["end"], "shutdown");
        assert!(web1["first_seen"].as_str().unwrap().ends_with('Z'));
        let web2 = lines.iter().find(|l| l["vif"] == "web-2").unwrap();
        assert_eq!(
            (web2["verdict"].as_str(), web2["reason"].as_str()),
            (Some("dropped"), Some("acl_deny"))
        );
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let dir = TempDir::new_with_prefix("/tmp/vif-flowlog-").unwrap();
        let path = dir.as_path().join("flows.jsonl");
        let mut file = FlowFile::open(path.clone(), 100, 2).unwrap();
        for n in 0..10u8 {
            let line = format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(30));
            file.write_line(line.as_bytes()).unwrap();
        }
        file.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        // 47-byte lines, two per 100-byte file: 0..9 → [8,9] current, [6,7] .1, [4,5] .2.
        assert!(read(&path).contains("\"n\":9") && read(&path).contains("\"n\":8"));
        assert!(read(&numbered(1)).contains("\"n\":7"));
        assert!(read(&numbered(2)).contains("\"n\":4"));
        assert!(!numbered(3).exists(), "only `keep` rotated files");
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        assert_eq!(file.rotations, 4);
    }

    #[test]
    fn invalid_config_is_refused_before_any_file() {
        let config = FlowLogConfig {
            enabled: true,
            keep: 0,
            path: Some(PathBuf::from("/nonexistent/dir/flows.jsonl")),
            ..FlowLogConfig::default()
        };
        assert!(matches!(
            FlowLog::start(&config),
            Err(FlowLogError::OutOfRange { field: "keep", .. })
        ));
    }
}
