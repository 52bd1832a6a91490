//! The port abstraction: anything a segment can forward a frame to.
//!
//! A VIF is a port ([`crate::inbox::VifPort`]); later an uplink (VXLAN, VLAN, SR-IOV VF) is one
//! too, behind this same trait, so [`crate::switch`] and [`crate::pipeline`] never learn what is
//! behind a port.
//!
//! The contract is shaped by the datapath's constraints:
//! - [`Port::enqueue`] is called on the *sender's* worker thread. It copies the frame and returns
//!   at once: it never blocks on the receiver, never touches the receiver's rings or counters, and
//!   never allocates in steady state. A full or detached receiver is a drop the sender counts.
//! - Wake-ups are batched: `enqueue` only says whether the receiver is owed a wake-up, and the
//!   sender calls [`Port::wake`] once per destination at the end of its burst.

use vif_core::offload::TxOffload;
use vif_core::stats::DropReason;

/// A port's index on its segment. Stable while the port is attached; reused after it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

impl PortId {
    /// The index into the segment's port table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A frame in flight between ports, borrowed from the sender's frame buffer (never from guest
/// memory). `offload` is what the sender's validated virtio-net header asked for: nothing, a
/// partial L4 checksum, or a TSO super-frame, so the receiver can deliver it as-is to a guest that
/// acked the same offloads, or complete/segment it for one that did not
/// (`vif_core::offload::rx_plan`).
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub offload: TxOffload,
    pub bytes: &'a [u8],
}

/// What happened to an enqueued frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued; the receiver was already owed a wake-up by someone.
    Queued,
    /// Queued, and this sender now owes the receiver's `queue` a wake-up: call
    /// [`Port::wake`]`(queue)` before going back to sleep.
    WakeOwed { queue: u16 },
}

/// A destination on a segment.
pub trait Port: Send + Sync {
    /// The port's name, for logs and metrics labels (the VIF id, or the uplink's name).
    fn name(&self) -> &str;

    /// Copies `frame` towards the port. `flow_hint` picks the receive queue (the sender's queue
    /// index keeps one sender queue's frames in order on one receiver queue).
    fn enqueue(&self, frame: FrameRef<'_>, flow_hint: u16) -> Result<Enqueued, DropReason>;

    /// Wakes the thread serving receive queue `queue`; once per burst per destination.
    fn wake(&self, queue: u16);
}
