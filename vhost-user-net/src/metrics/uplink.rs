//! The uplinks' metric families: what the VXLAN and VLAN uplink ports carried and dropped, and
//! the SR-IOV VFs' counters as their PFs report them. Read at scrape time, like the VIFs' (see
//! [`super::collect`]); the uplinks' counters belong to their ports and never go backwards.
//!
//! `vif_uplink_*` series are per uplink port, labelled
//! `uplink` (`vxlan` or `vlan`), `vtep` (a VTEP's bound `address:port`), `vni`, `parent` (a VLAN
//! parent interface) and `vid`; the labels that do not apply to a kind are empty (Prometheus
//! drops empty labels, so a query reads `{uplink="vlan",parent="eth1",vid="100"}`). A series
//! with an empty `vni` (or `vid`) counts what the VTEP (or the parent) refused before finding
//! the VNI (or VID): garbage, unknown VNIs. Directions are the segment's: `tx` went out to the
//! network, `rx` came in from it.
//!
//! `vif_vf_*` series are per SR-IOV VIF, labelled `vif`, `tenant`, `pf` and `vf` (the index);
//! directions are the VF's, which are the guest's. `vif_vf_stats_up` is 0 while the PF does not
//! answer, and the VF's counters are then left out rather than reported as zeros.

use vif_core::stats::{DropReason, QueueCounters};

use super::exposition::{Exposition, MetricType};
use crate::uplink::sriov::netlink::VfStats;
use crate::uplink::sriov::VfAssignment;
use crate::uplink::vlan::VlanUplinks;
use crate::uplink::vxlan::VxlanUplinks;
use crate::uplink::UplinkStats;

/// One uplink port (or a VTEP's or parent's own counters) with its counters read once.
pub struct UplinkView {
    /// `vxlan` or `vlan`.
    pub kind: &'static str,
    pub vtep: String,
    pub vni: String,
    pub parent: String,
    pub vid: String,
    pub tx: QueueCounters,
    pub rx: QueueCounters,
}

impl UplinkView {
    fn new(kind: &'static str, stats: &UplinkStats) -> UplinkView {
        UplinkView {
            kind,
            vtep: String::new(),
            vni: String::new(),
            parent: String::new(),
            vid: String::new(),
            tx: stats.tx.snapshot(),
            rx: stats.rx.snapshot(),
        }
    }

    fn labels(&self) -> [(&str, &str); 5] {
        [
            ("uplink", self.kind),
            ("vtep", &self.vtep),
            ("vni", &self.vni),
            ("parent", &self.parent),
            ("vid", &self.vid),
        ]
    }
}

/// One SR-IOV VIF's VF.
pub struct VfView<'a> {
    pub vif: &'a str,
    pub tenant: &'a str,
    pub pf: &'a str,
    pub vf: String,
    /// `None` when the PF could not be asked.
    pub stats: Option<VfStats>,
}

impl<'a> VfView<'a> {
    pub fn new(assignment: &'a VfAssignment, tenant: &'a str, stats: Option<VfStats>) -> Self {
        VfView {
            vif: &assignment.vif,
            tenant,
            pf: &assignment.pf,
            vf: assignment.vf.to_string(),
            stats,
        }
    }

    fn labels(&self) -> [(&str, &str); 4] {
        [
            ("vif", self.vif),
            ("tenant", self.tenant),
            ("pf", self.pf),
            ("vf", &self.vf),
        ]
    }
}

/// Every VTEP and VNI port, then every VLAN parent and VID port, in address, VNI, name and VID
/// order.
pub fn uplink_views(vxlans: &VxlanUplinks, vlans: &VlanUplinks) -> Vec<UplinkView> {
    let mut views = Vec::new();
    for vtep in vxlans.vteps() {
        let addr = vtep.local_addr().to_string();
        views.push(UplinkView {
            vtep: addr.clone(),
            ..UplinkView::new("vxlan", vtep.stats())
        });
        for port in vtep.ports() {
            views.push(UplinkView {
                vtep: addr.clone(),
                vni: port.vni().to_string(),
                ..UplinkView::new("vxlan", port.stats())
            });
        }
    }
    for parent in vlans.parents() {
        views.push(UplinkView {
            parent: parent.name().to_owned(),
            ..UplinkView::new("vlan", parent.stats())
        });
        for port in parent.ports() {
            views.push(UplinkView {
                parent: parent.name().to_owned(),
                vid: port.tag().vid.map_or(0, |vid| vid.get()).to_string(),
                ..UplinkView::new("vlan", port.stats())
            });
        }
    }
    views
}

/// A direction of an uplink port: its family names and what it counts.
struct Direction {
    packets: &'static str,
    bytes: &'static str,
    drops: &'static str,
    what: &'static str,
    counters: fn(&UplinkView) -> &QueueCounters,
}

const DIRECTIONS: [Direction; 2] = [
    Direction {
        packets: "vif_uplink_tx_packets_total",
        bytes: "vif_uplink_tx_bytes_total",
        drops: "vif_uplink_tx_drops_total",
        what: "sent to the network",
        counters: |view| &view.tx,
    },
    Direction {
        packets: "vif_uplink_rx_packets_total",
        bytes: "vif_uplink_rx_bytes_total",
        drops: "vif_uplink_rx_drops_total",
        what: "received from the network and handed to the segment",
        counters: |view| &view.rx,
    },
];

/// A VF counter family: name, HELP text, the counter.
type VfFamily = (&'static str, &'static str, fn(&VfStats) -> u64);

/// `IFLA_VF_STATS` (include/uapi/linux/if_link.h); broadcast and multicast count received
/// frames, as in `rtnl_link_stats64`.
const VF_FAMILIES: [VfFamily; 8] = [
    (
        "vif_vf_rx_packets_total",
        "Frames the VF received (for the guest).",
        |s| s.rx_packets,
    ),
    (
        "vif_vf_tx_packets_total",
        "Frames the VF sent (from the guest).",
        |s| s.tx_packets,
    ),
    ("vif_vf_rx_bytes_total", "Bytes the VF received.", |s| {
        s.rx_bytes
    }),
    ("vif_vf_tx_bytes_total", "Bytes the VF sent.", |s| {
        s.tx_bytes
    }),
    (
        "vif_vf_rx_broadcast_packets_total",
        "Broadcast frames the VF received.",
        |s| s.broadcast,
    ),
    (
        "vif_vf_rx_multicast_packets_total",
        "Multicast frames the VF received.",
        |s| s.multicast,
    ),
    (
        "vif_vf_rx_drops_total",
        "Received frames the PF dropped for the VF.",
        |s| s.rx_dropped,
    ),
    (
        "vif_vf_tx_drops_total",
        "Frames from the VF the PF dropped.",
        |s| s.tx_dropped,
    ),
];

/// Writes the `vif_uplink_*` and `vif_vf_*` families.
pub fn uplink_families(out: &mut Exposition, uplinks: &[UplinkView], vfs: &[VfView<'_>]) {
    for dir in &DIRECTIONS {
        out.family(
            dir.packets,
            MetricType::Counter,
            &format!("Frames {} by an uplink port.", dir.what),
        );
        for view in uplinks {
            out.sample(dir.packets, &view.labels(), (dir.counters)(view).packets);
        }
        out.family(
            dir.bytes,
            MetricType::Counter,
            &format!(
                "Bytes of frames {} by an uplink port (VXLAN: inner frames).",
                dir.what
            ),
        );
        for view in uplinks {
            out.sample(dir.bytes, &view.labels(), (dir.counters)(view).bytes);
        }
        out.family(
            dir.drops,
            MetricType::Counter,
            &format!(
                "Frames an uplink port dropped instead of having them {}, by reason.",
                dir.what
            ),
        );
        for view in uplinks {
            let [kind, vtep, vni, parent, vid] = view.labels();
            for reason in DropReason::ALL {
                let labels = [kind, vtep, vni, parent, vid, ("reason", reason.as_str())];
                out.sample(dir.drops, &labels, (dir.counters)(view).drops(reason));
            }
        }
    }
    vf_families(out, vfs);
}

fn vf_families(out: &mut Exposition, vfs: &[VfView<'_>]) {
    let name = "vif_vf_stats_up";
    out.family(
        name,
        MetricType::Gauge,
        "1 when the PF reported the SR-IOV VIF's VF counters at this scrape, else 0.",
    );
    for vf in vfs {
        out.sample(name, &vf.labels(), u64::from(vf.stats.is_some()));
    }
    for (name, help, counter) in VF_FAMILIES {
        out.family(name, MetricType::Counter, help);
        for vf in vfs {
            if let Some(stats) = &vf.stats {
                out.sample(name, &vf.labels(), counter(stats));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, UdpSocket};
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use vif_core::ids::Vni;
    use vif_core::model::VxlanUplink;
    use vif_core::offload::TxOffload;

    use super::*;
    use crate::metrics::exposition::tests::{parse_exposition, ParsedSample};
    use crate::port::{Enqueued, FrameRef, Port};
    use crate::switch::Segment;
    use crate::uplink::vxlan::VniPort;

    const WAIT: Duration = Duration::from_secs(5);

    /// A VIF stand-in on a segment: takes every frame.
    struct SinkPort;

    impl Port for SinkPort {
        fn name(&self) -> &str {
            "sink"
        }
        fn enqueue(&self, _frame: FrameRef<'_>, _flow_hint: u16) -> Result<Enqueued, DropReason> {
            Ok(Enqueued::Queued)
        }
        fn wake(&self, _queue: u16) {}
    }

    fn lo(last: u8) -> IpAddr {
        Ipv4Addr::new(127, 0, 0, last).into()
    }

    fn vxlan(local: u8, remote: u8, udp_port: u16) -> VxlanUplink {
        VxlanUplink {
            vni: Vni::new(42).unwrap(),
            local: lo(local),
            remotes: vec![lo(remote)],
            udp_port,
            underlay_mtu: 1500,
            interface: None,
        }
    }

    /// VTEPs on 127.0.0.1 and 127.0.0.2 (one free UDP port), each with VNI 42 on a segment
    /// that also has a sink port.
    fn vtep_pair() -> [(VxlanUplinks, Arc<VniPort>); 2] {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        for _ in 0..64 {
            let udp_port =
                40000 + (std::process::id() as u16 % 10000) + NEXT.fetch_add(3, Ordering::Relaxed);
            let side = |local, remote| {
                let mut uplinks = VxlanUplinks::new();
                let segment = Segment::new("vxlan-42");
                segment.attach(Arc::new(SinkPort)).ok()?;
                let port = uplinks
                    .attach(&vxlan(local, remote, udp_port), &segment)
                    .ok()?;
                Some((uplinks, port))
            };
            if let (Some(a), Some(b)) = (side(1, 2), side(2, 1)) {
                return [a, b];
            }
        }
        panic!("no free UDP port on loopback");
    }

    fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            std::thread::yield_now();
        }
        condition()
    }

    fn scrape(uplinks: &[UplinkView], vfs: &[VfView<'_>]) -> Vec<ParsedSample> {
        let mut out = Exposition::new();
        uplink_families(&mut out, uplinks, vfs);
        parse_exposition(out.as_str()).unwrap()
    }

    /// The value of the one sample of `name` whose labels include `want`.
    fn value(samples: &[ParsedSample], name: &str, want: &[(&str, &str)]) -> u64 {
        let matching: Vec<&ParsedSample> = samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(key, value)| labels.iter().any(|(k, v)| k == key && v == value))
            })
            .collect();
        assert_eq!(matching.len(), 1, "{name} {want:?}: {matching:?}");
        matching[0].2.parse().unwrap()
    }

    #[test]
    fn vxlan_ports_and_vteps_are_scraped_after_traffic() {
        let [(uplinks_a, port_a), (uplinks_b, port_b)] = vtep_pair();
        // A broadcast from A's segment: replicated to B, the static remote.
        let mut frame = vec![0u8; 60];
        frame[..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        let sent = FrameRef {
            offload: TxOffload::None,
            bytes: &frame,
        };
        if let Ok(Enqueued::WakeOwed { queue }) = port_a.enqueue(sent, 0) {
            port_a.wake(queue);
        }
        assert!(eventually(|| port_b.stats().rx.snapshot().packets == 1));
        assert!(eventually(|| port_a.stats().tx.snapshot().packets == 1));
        // Not VXLAN: B's VTEP drops it before looking for a VNI.
        let vtep_b = uplinks_b.vteps().next().unwrap();
        let junk = UdpSocket::bind((lo(3), 0)).unwrap();
        junk.send_to(b"not vxlan", vtep_b.local_addr()).unwrap();
        assert!(eventually(
            || vtep_b.stats().rx.snapshot().total_drops() == 1
        ));

        let a = scrape(&uplink_views(&uplinks_a, &VlanUplinks::new()), &[]);
        let vtep_a = uplinks_a.vteps().next().unwrap().local_addr().to_string();
        let vni_a = [("uplink", "vxlan"), ("vtep", &vtep_a), ("vni", "42")];
        assert_eq!(value(&a, "vif_uplink_tx_packets_total", &vni_a), 1);
        assert_eq!(value(&a, "vif_uplink_tx_bytes_total", &vni_a), 60);
        assert_eq!(value(&a, "vif_uplink_rx_packets_total", &vni_a), 0);

        let b = scrape(&uplink_views(&uplinks_b, &VlanUplinks::new()), &[]);
        let vtep = vtep_b.local_addr().to_string();
        let vni_b = [("uplink", "vxlan"), ("vtep", &vtep), ("vni", "42")];
        assert_eq!(value(&b, "vif_uplink_rx_packets_total", &vni_b), 1);
        assert_eq!(value(&b, "vif_uplink_rx_bytes_total", &vni_b), 60);
        let vtep_only = [
            ("vtep", vtep.as_str()),
            ("vni", ""),
            ("reason", "malformed"),
        ];
        assert_eq!(value(&b, "vif_uplink_rx_drops_total", &vtep_only), 1);
        // Every reason is exported, zeros included, for the VTEP and its one VNI.
        let drops = b.iter().filter(|s| s.0 == "vif_uplink_rx_drops_total");
        assert_eq!(drops.count(), 2 * DropReason::COUNT);
    }

    #[test]
    fn vlan_labels_name_parent_and_vid() {
        let stats = UplinkStats::default();
        let mut batch = vif_core::stats::StatsBatch::new();
        batch.record_drop(DropReason::MtuExceeded);
        stats.tx.publish(&mut batch);
        let port = UplinkView {
            parent: "eth1".to_owned(),
            vid: "100".to_owned(),
            ..UplinkView::new("vlan", &stats)
        };
        let samples = scrape(&[port], &[]);
        let want = [
            ("uplink", "vlan"),
            ("vtep", ""),
            ("vni", ""),
            ("parent", "eth1"),
            ("vid", "100"),
            ("reason", "mtu_exceeded"),
        ];
        assert_eq!(value(&samples, "vif_uplink_tx_drops_total", &want), 1);
        assert_eq!(
            value(&samples, "vif_uplink_tx_packets_total", &want[..5]),
            0
        );
    }

    #[test]
    fn vf_counters_are_left_out_while_the_pf_is_silent() {
        let stats = VfStats {
            rx_packets: 3,
            tx_bytes: 900,
            multicast: 2,
            tx_dropped: 1,
            ..VfStats::default()
        };
        let view = |vif, vf: &str, stats| VfView {
            vif,
            tenant: "acme",
            pf: "enp59s0f0",
            vf: vf.to_owned(),
            stats,
        };
        let samples = scrape(
            &[],
            &[view("db-1", "3", Some(stats)), view("db-2", "4", None)],
        );
        let db1 = [
            ("vif", "db-1"),
            ("tenant", "acme"),
            ("pf", "enp59s0f0"),
            ("vf", "3"),
        ];
        assert_eq!(value(&samples, "vif_vf_stats_up", &db1), 1);
        assert_eq!(value(&samples, "vif_vf_rx_packets_total", &db1), 3);
        assert_eq!(value(&samples, "vif_vf_tx_bytes_total", &db1), 900);
        assert_eq!(
            value(&samples, "vif_vf_rx_multicast_packets_total", &db1),
            2
        );
        assert_eq!(value(&samples, "vif_vf_tx_drops_total", &db1), 1);
        assert_eq!(value(&samples, "vif_vf_stats_up", &[("vif", "db-2")]), 0);
        let db2_counters = samples
            .iter()
            .filter(|(name, labels, _)| {
                name != "vif_vf_stats_up" && labels.iter().any(|(_, v)| v == "db-2")
            })
            .count();
        assert_eq!(db2_counters, 0, "no zeros for an unanswered PF");
    }
}
