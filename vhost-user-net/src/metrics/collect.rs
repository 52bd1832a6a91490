//! What a scrape exports: every family, its HELP text, its labels, read from the daemon's VIFs.
//!
//! Families are written in a fixed order, each once, with the VIFs in id order inside
//! (STYLE.md § 5: names never depend on creation order). Every drop reason and size bin is
//! exported, zeros included: an absent series and a zero are not the same thing to an alert.
//!
//! Labels: `vif` (the VIF id), `tenant` (the VIF's `tenant` label, empty when it has none, so
//! every series of a family has the same label names), `queue` (the queue pair index; `rx` and
//! `tx` are in the metric name, as in STYLE.md § 5), `reason`, `size`, `cast`, `outcome`,
//! `stage`, `segment`.

use std::sync::Arc;

use vif_core::acl::Firewall;
use vif_core::stats::{CastKind, DropReason, QueueCounters, SizeBin, StatsSnapshot, VifStats};

use super::exposition::{Exposition, MetricType};
use super::histogram::{HistogramSnapshot, ProvisioningTimes};
use super::policy::{policy_families, PolicyView};
use crate::daemon::status::{LinkState, VifStatus};
use crate::flowlog::export::FlowLogStats;

/// One VIF as the exporter sees it.
pub struct VifView<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    pub segment: &'a str,
    pub mac: String,
    /// `server` or `client`.
    pub mode: &'a str,
    pub stats: Arc<VifStats>,
    pub status: &'a VifStatus,
    /// The VIF's policy engine, when it has one (ACL and conntrack series).
    pub firewall: Option<Arc<Firewall>>,
}

/// One segment as the exporter sees it.
pub struct SegmentView<'a> {
    pub name: &'a str,
    pub fdb_entries: usize,
    pub vifs: usize,
}

/// Everything one scrape exports.
pub struct Scrape<'a> {
    pub vifs: Vec<VifView<'a>>,
    pub segments: Vec<SegmentView<'a>>,
    pub provisioning: &'a ProvisioningTimes,
    /// The flow log's counters, when it runs.
    pub flow_log: Option<&'a FlowLogStats>,
}

/// A VIF's values read once per scrape.
struct Read<'a> {
    view: &'a VifView<'a>,
    stats: StatsSnapshot,
    queues: Vec<String>,
}

impl Read<'_> {
    fn base(&self) -> [(&str, &str); 2] {
        [("vif", self.view.id), ("tenant", self.view.tenant)]
    }
}

#[derive(Clone, Copy)]
enum Dir {
    Rx,
    Tx,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Rx => "rx",
            Dir::Tx => "tx",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Dir::Rx => "delivered to the guest (receiveq)",
            Dir::Tx => "sent by the guest (transmitq)",
        }
    }

    fn of(self, pair: &vif_core::stats::QueuePairCounters) -> &QueueCounters {
        match self {
            Dir::Rx => &pair.rx,
            Dir::Tx => &pair.tx,
        }
    }
}

/// Renders the whole exposition.
pub fn render(scrape: &Scrape<'_>) -> String {
    let reads: Vec<Read<'_>> = scrape
        .vifs
        .iter()
        .map(|view| {
            let stats = view.stats.snapshot();
            let queues = (0..stats.queue_pairs.len())
                .map(|q| q.to_string())
                .collect();
            Read {
                view,
                stats,
                queues,
            }
        })
        .collect();
    let mut out = Exposition::new();
    vif_families(&mut out, &reads);
    for dir in [Dir::Rx, Dir::Tx] {
        queue_families(&mut out, &reads, dir);
    }
    batch_and_provisioning(&mut out, &reads, scrape.provisioning);
    segment_families(&mut out, scrape);
    let policies: Vec<PolicyView<'_>> = reads
        .iter()
        .filter_map(|read| {
            let firewall = read.view.firewall.as_deref()?;
            Some(PolicyView {
                labels: read.base(),
                firewall,
            })
        })
        .collect();
    policy_families(&mut out, &policies);
    if let Some(stats) = scrape.flow_log {
        flow_log_families(&mut out, stats);
    }
    out.into_string()
}

fn flow_log_families(out: &mut Exposition, stats: &FlowLogStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let families = [
        (
            "vif_flowlog_records_total",
            "Flow records written to the flow log.",
            &stats.records,
        ),
        (
            "vif_flowlog_dropped_total",
            "Flow records lost: a worker's flow cache was full, or the write failed.",
            &stats.dropped,
        ),
        (
            "vif_flowlog_write_errors_total",
            "Flow log sweeps that failed to write.",
            &stats.write_errors,
        ),
        (
            "vif_flowlog_rotations_total",
            "Times the flow log file was rotated.",
            &stats.rotations,
        ),
    ];
    for (name, help, counter) in families {
        out.family(name, MetricType::Counter, help);
        out.sample(name, &[], counter.load(Relaxed));
    }
}

fn vif_families(out: &mut Exposition, reads: &[Read<'_>]) {
    let name = "vif_info";
    out.family(
        name,
        MetricType::Gauge,
        "A VIF served by this daemon (value 1), with its segment, MAC and socket mode.",
    );
    for read in reads {
        let v = read.view;
        let [vif, tenant] = read.base();
        let labels = [
            vif,
            tenant,
            ("segment", v.segment),
            ("mac", &v.mac),
            ("mode", v.mode),
        ];
        out.sample(name, &labels, 1);
    }
    let name = "vif_link_up";
    out.family(
        name,
        MetricType::Gauge,
        "1 while a vhost-user frontend is connected to the VIF, else 0.",
    );
    for read in reads {
        let up = read.view.status.state() == LinkState::Connected;
        out.sample(name, &read.base(), u64::from(up));
    }
    let name = "vif_frontend_connections_total";
    out.family(
        name,
        MetricType::Counter,
        "vhost-user frontend connections that started the VIF's device (a reconnect counts one more).",
    );
    for read in reads {
        out.sample(name, &read.base(), read.view.status.connections());
    }
}

/// Writes one per-queue counter family of `dir`.
fn per_queue(
    out: &mut Exposition,
    reads: &[Read<'_>],
    dir: Dir,
    suffix: &str,
    help: &str,
    value: impl Fn(&QueueCounters) -> u64,
) {
    let name = format!("vif_{}_{suffix}", dir.name());
    out.family(
        &name,
        MetricType::Counter,
        &format!("{help} {}.", dir.what()),
    );
    for read in reads {
        let [vif, tenant] = read.base();
        for (queue, pair) in read.queues.iter().zip(&read.stats.queue_pairs) {
            out.sample(&name, &[vif, tenant, ("queue", queue)], value(dir.of(pair)));
        }
    }
}

/// Writes one per-queue counter family of `dir` with one extra label over `values`.
fn per_queue_by<T: Copy>(
    out: &mut Exposition,
    reads: &[Read<'_>],
    dir: Dir,
    (suffix, help): (&str, &str),
    (key, values): (&str, &[T]),
    label: impl Fn(T) -> &'static str,
    value: impl Fn(&QueueCounters, T) -> u64,
) {
    let name = format!("vif_{}_{suffix}", dir.name());
    out.family(
        &name,
        MetricType::Counter,
        &format!("{help} {}.", dir.what()),
    );
    for read in reads {
        let [vif, tenant] = read.base();
        for (queue, pair) in read.queues.iter().zip(&read.stats.queue_pairs) {
            let counters = dir.of(pair);
            for &item in values {
                let labels = [vif, tenant, ("queue", queue.as_str()), (key, label(item))];
                out.sample(&name, &labels, value(counters, item));
            }
        }
    }
}

fn queue_families(out: &mut Exposition, reads: &[Read<'_>], dir: Dir) {
    per_queue(out, reads, dir, "packets_total", "Good frames", |c| {
        c.packets
    });
    per_queue(
        out,
        reads,
        dir,
        "bytes_total",
        "Bytes of good frames (without the virtio-net header)",
        |c| c.bytes,
    );
    per_queue_by(
        out,
        reads,
        dir,
        ("cast_packets_total", "Good frames by destination MAC kind"),
        ("cast", &CastKind::ALL),
        CastKind::as_str,
        |c, cast| match cast {
            CastKind::Unicast => c.unicast_packets,
            CastKind::Multicast => c.multicast_packets,
            CastKind::Broadcast => c.broadcast_packets,
        },
    );
    per_queue_by(
        out,
        reads,
        dir,
        (
            "size_packets_total",
            "Good frames by length bin (DPDK vhost bins, no FCS)",
        ),
        ("size", &SizeBin::ALL),
        SizeBin::as_str,
        QueueCounters::size_bin,
    );
    per_queue_by(
        out,
        reads,
        dir,
        ("drops_total", "Dropped frames by reason"),
        ("reason", &DropReason::ALL),
        DropReason::as_str,
        QueueCounters::drops,
    );
    per_queue_by(
        out,
        reads,
        dir,
        (
            "notifications_total",
            "Used-buffer notifications sent, or suppressed at the guest's request,",
        ),
        ("outcome", &[true, false]),
        |sent| if sent { "sent" } else { "suppressed" },
        |c, sent| {
            if sent {
                c.notifications_sent
            } else {
                c.notifications_suppressed
            }
        },
    );
    if let Dir::Tx = dir {
        per_queue(
            out,
            reads,
            dir,
            "throttled_total",
            "Frames left in the ring by the rate limiter (backpressure, not drops)",
            |c| c.throttled,
        );
    }
}

fn batch_and_provisioning(out: &mut Exposition, reads: &[Read<'_>], prov: &ProvisioningTimes) {
    let name = "vif_batch_duration_seconds";
    out.family(
        name,
        MetricType::Histogram,
        "Time a VIF's worker spent on one event (a guest kick or frames from other ports).",
    );
    for read in reads {
        let [vif, tenant] = read.base();
        let times = read.view.status.batch_times();
        for (worker, queue) in read.queues.iter().enumerate().take(times.workers()) {
            if let Some(s) = times.snapshot(worker) {
                histogram(out, name, &[vif, tenant, ("queue", queue)], &s);
            }
        }
    }
    let name = "vif_provisioning_seconds";
    out.family(
        name,
        MetricType::Gauge,
        "Time from the VIF's creation request (or config load) to a provisioning stage: \
         socket_ready, or driver_ok (the frontend started the device after the guest's DRIVER_OK).",
    );
    for read in reads {
        let [vif, tenant] = read.base();
        let status = read.view.status;
        let stages = [
            ("socket_ready", status.socket_ready_after()),
            ("driver_ok", status.driver_ok_after()),
        ];
        for (stage, after) in stages {
            if let Some(after) = after {
                out.sample_f64(name, &[vif, tenant, ("stage", stage)], after.as_secs_f64());
            }
        }
    }
    let name = "vif_provisioning_duration_seconds";
    out.family(
        name,
        MetricType::Histogram,
        "Provisioning latency of the VIFs created since the daemon started, by stage.",
    );
    histogram(
        out,
        name,
        &[("stage", "socket_ready")],
        &prov.socket_ready.snapshot(),
    );
    histogram(
        out,
        name,
        &[("stage", "driver_ok")],
        &prov.driver_ok.snapshot(),
    );
}

fn histogram(out: &mut Exposition, name: &str, labels: &[(&str, &str)], s: &HistogramSnapshot) {
    out.histogram(name, labels, &s.bounds_seconds, &s.counts, s.sum_seconds);
}

fn segment_families(out: &mut Exposition, scrape: &Scrape<'_>) {
    let name = "vif_segment_fdb_entries";
    out.family(
        name,
        MetricType::Gauge,
        "MAC addresses learned in the segment's forwarding database.",
    );
    for segment in &scrape.segments {
        let count = u64::try_from(segment.fdb_entries).unwrap_or(u64::MAX);
        out.sample(name, &[("segment", segment.name)], count);
    }
    let name = "vif_segment_vifs";
    out.family(name, MetricType::Gauge, "VIFs on the segment.");
    for segment in &scrape.segments {
        let count = u64::try_from(segment.vifs).unwrap_or(u64::MAX);
        out.sample(name, &[("segment", segment.name)], count);
    }
    let name = "vif_vifs";
    out.family(name, MetricType::Gauge, "VIFs served by this daemon.");
    let count = u64::try_from(scrape.vifs.len()).unwrap_or(u64::MAX);
    out.sample(name, &[], count);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use vif_core::stats::StatsBatch;

    use super::*;
    use crate::metrics::exposition::tests::{parse_exposition, ParsedSample};

    fn value(samples: &[ParsedSample], name: &str, want: &[(&str, &str)]) -> Option<String> {
        samples
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v.clone())
    }

    #[test]
    fn renders_every_family_once_with_values() {
        let stats = Arc::new(VifStats::new(2));
        let mut batch = StatsBatch::new();
        batch.record_packet(100, CastKind::Broadcast);
        batch.record_drop(DropReason::AclDeny);
        stats.queue_pair(1).unwrap().tx.publish(&mut batch);
        let prov = Arc::new(ProvisioningTimes::default());
        let status = VifStatus::new(Instant::now(), 2, Arc::clone(&prov));
        status.socket_ready();
        status.connected();
        status.device_started(true);
        status
            .batch_times()
            .record(1, std::time::Duration::from_micros(3));
        let scrape = Scrape {
            vifs: vec![VifView {
                id: "web-1",
                tenant: "ac\"me",
                segment: "lab",
                mac: "52:54:00:00:00:01".into(),
                mode: "server",
                stats: Arc::clone(&stats),
                status: &status,
                firewall: None,
            }],
            segments: vec![SegmentView {
                name: "lab",
                fdb_entries: 3,
                vifs: 1,
            }],
            provisioning: &prov,
            flow_log: None,
        };
        let text = render(&scrape);
        let samples = parse_exposition(&text).unwrap();
        let base = [("vif", "web-1"), ("tenant", "ac\"me")];
        let q1 = [base[0], base[1], ("queue", "1")];
        assert_eq!(
            value(&samples, "vif_tx_packets_total", &q1).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&samples, "vif_tx_bytes_total", &q1).as_deref(),
            Some("100")
        );
        let deny = [base[0], ("queue", "1"), ("reason", "acl_deny")];
        assert_eq!(
            value(&samples, "vif_tx_drops_total", &deny).as_deref(),
            Some("1")
        );
        let bcast = [base[0], ("queue", "1"), ("cast", "broadcast")];
        assert_eq!(
            value(&samples, "vif_tx_cast_packets_total", &bcast).as_deref(),
            Some("1")
        );
        let bin = [base[0], ("queue", "1"), ("size", "65_127")];
        assert_eq!(
            value(&samples, "vif_tx_size_packets_total", &bin).as_deref(),
            Some("1")
        );
        assert_eq!(value(&samples, "vif_link_up", &base).as_deref(), Some("1"));
        assert_eq!(
            value(&samples, "vif_frontend_connections_total", &base).as_deref(),
            Some("1")
        );
        let le = [base[0], ("queue", "1"), ("le", "0.000005")];
        assert_eq!(
            value(&samples, "vif_batch_duration_seconds_bucket", &le).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&samples, "vif_segment_fdb_entries", &[("segment", "lab")]).as_deref(),
            Some("3")
        );
        assert!(value(
            &samples,
            "vif_provisioning_seconds",
            &[("stage", "socket_ready")]
        )
        .is_some());
        assert!(value(
            &samples,
            "vif_provisioning_seconds",
            &[("stage", "driver_ok")]
        )
        .is_some());
        let count = [("stage", "socket_ready")];
        assert_eq!(
            value(&samples, "vif_provisioning_duration_seconds_count", &count).as_deref(),
            Some("1")
        );
        // Every drop reason of every queue of both directions, zeros included.
        let drops = samples
            .iter()
            .filter(|(n, ..)| n == "vif_rx_drops_total")
            .count();
        assert_eq!(drops, 2 * DropReason::COUNT);
        // Each family's TYPE line appears once.
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let total = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), total);
    }
}
