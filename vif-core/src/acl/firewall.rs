//! [`Firewall`]: the policy engine of one VIF as the daemon's pipeline applies it — an ACL slot
//! per direction, port security, and the conntrack table they share.
//!
//! Per frame, in order:
//! 1. TX only: [`FirewallView::check_source`] (port security) → `DropReason::Spoofed`.
//! 2. [`FirewallView::filter`]: when the table tracks any flow, a packet of a live tracked flow
//!    passes ([`AclVerdict::Tracked`]) whatever the rules say — the flow was allowed when it
//!    opened, in whichever direction. Otherwise the direction's ACL decides; if it is stateful
//!    and allows, the flow is opened, and a full table refuses the packet or lets it pass
//!    untracked as [`FullPolicy`] says. Monitor mode neither drops nor opens flows.
//!
//! Tracked packets skip the rules, so rule hit counters count flows' first packets, as in VPP.
//! Replacing an ACL does not cut established flows (VPP and OVS keep sessions too); call
//! [`Conntrack::flush`] when it must.
//!
//! A worker takes a [`FirewallView`] once per burst (two lock-free snapshots) and judges the
//! burst with it; the clock (`now`, ns) and the worker's counter shard (`worker`, its queue
//! index) are parameters.

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};

use super::classify::AclVerdict;
use super::conntrack::{Admit, Conntrack, ConntrackConfig, FullPolicy, Track};
use super::error::AclError;
use super::key::AclKey;
use super::slot::{AclSlot, AclSnapshot};
use super::spoof::{PortSecurity, SpoofCause};
use super::Direction;
use crate::wire::frame::FrameLayout;

/// The policy engine of one VIF; shared by its workers (`&self` everywhere).
#[derive(Debug)]
pub struct Firewall {
    ingress: AclSlot,
    egress: AclSlot,
    port_security: ArcSwapOption<PortSecurity>,
    conntrack: Conntrack,
}

/// Snapshots of a firewall's policies, for one burst.
pub struct FirewallView<'a> {
    conntrack: &'a Conntrack,
    ingress: AclSnapshot,
    egress: AclSnapshot,
    port_security: Guard<Option<Arc<PortSecurity>>>,
}

impl Firewall {
    /// A firewall with no ACLs and no port security: everything passes until they are set.
    pub fn new(conntrack: ConntrackConfig) -> Result<Firewall, AclError> {
        Ok(Firewall {
            ingress: AclSlot::default(),
            egress: AclSlot::default(),
            port_security: ArcSwapOption::empty(),
            conntrack: Conntrack::new(conntrack)?,
        })
    }

    /// The ACL slot of `direction`, to swap rule sets in.
    pub fn acl(&self, direction: Direction) -> &AclSlot {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Installs (or removes) port security; returns the previous settings.
    pub fn set_port_security(
        &self,
        security: Option<Arc<PortSecurity>>,
    ) -> Option<Arc<PortSecurity>> {
        self.port_security.swap(security)
    }

    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// Snapshots for a burst. Lock-free; allocates nothing.
    #[inline]
    pub fn view(&self) -> FirewallView<'_> {
        FirewallView {
            conntrack: &self.conntrack,
            ingress: self.ingress.load(),
            egress: self.egress.load(),
            port_security: self.port_security.load(),
        }
    }

    /// [`FirewallView::filter`] for a single packet.
    pub fn filter(
        &self,
        direction: Direction,
        key: &AclKey,
        now: u64,
        worker: usize,
    ) -> AclVerdict {
        self.view().filter(direction, key, now, worker)
    }
}

impl FirewallView<'_> {
    /// Port security for a frame the guest sent; `Ok` when none is configured.
    #[inline]
    pub fn check_source(
        &self,
        frame: &[u8],
        layout: &FrameLayout,
        key: &AclKey,
    ) -> Result<(), SpoofCause> {
        match self.port_security.as_ref() {
            Some(security) => security.check(frame, layout, key),
            None => Ok(()),
        }
    }

    /// The verdict for `key` crossing in `direction`; see the module docs.
    #[inline]
    pub fn filter(
        &self,
        direction: Direction,
        key: &AclKey,
        now: u64,
        worker: usize,
    ) -> AclVerdict {
        // Flows exist only once a stateful ACL opened one: an empty table costs one load.
        if self.conntrack.occupancy() > 0 {
            if let Track::Hit(_) = self.conntrack.track(key, now) {
                return AclVerdict::Tracked;
            }
        }
        let snapshot = match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        };
        let Some(acl) = snapshot.as_ref() else {
            return AclVerdict::Unfiltered;
        };
        let verdict = acl.classify(direction, key, worker);
        if !(acl.is_stateful() && matches!(verdict, AclVerdict::Allow(_))) {
            return verdict;
        }
        match self.conntrack.admit(key, now) {
            Admit::Full if self.conntrack.config().on_full == FullPolicy::Refuse => {
                AclVerdict::ConntrackFull
            }
            _ => verdict,
        }
    }
}

#[cfg(test)]
mod tests;
