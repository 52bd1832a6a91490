//! The daemon's uplinks as the metrics see them: every VTEP and VNI port, VLAN parent and VID
//! port, and SR-IOV VF, read at scrape time into `metrics::uplink` views. Part of
//! [`Daemon::scrape`].

use super::Daemon;
use crate::metrics::exposition::Exposition;
use crate::metrics::uplink::{uplink_families, uplink_views, VfView};

impl Daemon {
    /// The `vif_uplink_*` and `vif_vf_*` families, read now. Asks each SR-IOV PF for its VFs'
    /// counters (one rtnetlink dump per PF).
    pub fn uplink_exposition(&self) -> String {
        let uplinks = uplink_views(&self.vxlans, &self.vlans);
        let counters = self.vf_counters();
        let vfs: Vec<VfView<'_>> = counters
            .iter()
            .map(|(assignment, stats)| {
                let tenant = self
                    .vf_vifs
                    .get(assignment.vif.as_str())
                    .and_then(|config| config.spec.labels.get("tenant"))
                    .map_or("", String::as_str);
                VfView::new(assignment, tenant, *stats)
            })
            .collect();
        let mut out = Exposition::new();
        uplink_families(&mut out, &uplinks, &vfs);
        out.into_string()
    }
}
