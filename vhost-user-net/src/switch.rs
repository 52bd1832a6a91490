//! A learning L2 switch per local segment: the forwarding database (FDB) and the port table.
//!
//! Every VIF on a segment is a [`Port`]; later an uplink (VXLAN, VLAN, SR-IOV) is one too. The
//! switch learns source MACs with a timestamp, forwards known unicast to one port, and floods
//! broadcast, multicast and unknown unicast to every other port (never back to the ingress port:
//! no hairpin). It does not move frames itself: [`crate::pipeline`] asks it for a decision and the
//! caller hands the frame to the chosen ports.
//!
//! (being written: skeleton with the names the daemon builds against)

use std::sync::Arc;
use std::time::Instant;

/// One learning L2 switch, shared by the VIFs of a local segment.
pub struct Segment {
    name: String,
}

impl Segment {
    pub fn new(name: &str) -> Arc<Segment> {
        Arc::new(Segment {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Forgets MACs not seen for the ageing time, as of `now` (the clock is a parameter).
    pub fn age_out(&self, now: Instant) {
        let _ = now;
    }
}
