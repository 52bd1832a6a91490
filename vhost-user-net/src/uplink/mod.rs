//! Uplinks: the ports that carry a segment's frames beyond the host.
//!
//! An uplink is a [`crate::port::Port`] on a segment like any VIF, so the switch and the
//! pipeline never learn what is behind it. Frames the segment sends it go out on the network
//! (encapsulated, tagged, ...); frames it receives are decapsulated or untagged and enter the
//! segment from the uplink's port, learned and forwarded by destination MAC like frames from a
//! guest. One file per kind:
//! - [`vxlan`]: a VXLAN tunnel endpoint (RFC 7348); each VNI is a segment with one uplink port.
//! - [`vlan`]: 802.1Q tagging on a parent interface; each (parent, VID) is a segment with one
//!   uplink port, and one AF_PACKET socket per parent serves all its VIDs.
//! - [`sriov`]: not a port: an SR-IOV VF prepared for a VIF and handed to the VMM (vfio-pci).

pub mod sriov;
pub mod vlan;
pub mod vxlan;

use vif_core::stats::QueueStats;

/// The counters of one uplink port. Directions are the segment's: `tx` counts what the segment
/// sent out through the uplink, `rx` what the uplink received from the network and handed to
/// the segment. Several threads may publish into them (`QueueStats::publish` adds atomically);
/// each counts into its own `StatsBatch` first.
#[derive(Debug, Default)]
pub struct UplinkStats {
    pub tx: QueueStats,
    pub rx: QueueStats,
}
