//! [`AclSlot`]: where a VIF direction's compiled ACL lives, replaceable while workers classify.
//!
//! The slot is an `arc_swap::ArcSwapOption<CompiledAcl>`: a reader's `load` is lock-free and
//! wait-free in the common case (a thread-local debt slot, no reference-count write), a writer's
//! `store` publishes a whole new `Arc` at once. A worker loads once per burst and judges the
//! whole burst by that snapshot, so no packet is ever judged by half a rule set: a compiled set
//! is immutable, and the old one lives until its last snapshot is dropped. `vif-core` forbids
//! `unsafe`, and `arc-swap` (already in the tree through `vm-memory`) is the audited form of
//! the RCU pattern that would otherwise need it.

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};

use super::classify::CompiledAcl;

/// A snapshot of a slot, valid for as long as it is held. Hold it for a burst, not forever:
/// it keeps the old rule set alive after a swap.
pub type AclSnapshot = Guard<Option<Arc<CompiledAcl>>>;

/// One direction's ACL of one VIF, or none.
#[derive(Debug, Default)]
pub struct AclSlot {
    current: ArcSwapOption<CompiledAcl>,
}

impl AclSlot {
    pub fn new(acl: Option<Arc<CompiledAcl>>) -> AclSlot {
        AclSlot {
            current: ArcSwapOption::new(acl),
        }
    }

    /// The current rule set. Lock-free; allocates nothing.
    #[inline]
    pub fn load(&self) -> AclSnapshot {
        self.current.load()
    }

    /// Installs `acl` (or removes the ACL) and returns the previous one, whose counters the
    /// caller may read out. Packets already being judged finish with the previous set.
    pub fn swap(&self, acl: Option<Arc<CompiledAcl>>) -> Option<Arc<CompiledAcl>> {
        self.current.swap(acl)
    }
}
