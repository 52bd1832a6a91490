//! The 802.1Q VLAN uplink: vif tags and untags frames itself on a host interface (the
//! "parent"), so no kernel VLAN device is needed.
//!
//! An 802.1Q VLAN is a broadcast domain, so each (parent, VID) is a segment (`switch.rs`) with
//! one [`VlanPort`] on it beside the VIFs of that VLAN: VIF-to-VIF traffic on the VLAN stays on
//! the host, and MACs seen on the wire are learned as "behind the VLAN port". Many VIDs share one
//! parent: a [`VlanParent`] owns the parent's one AF_PACKET socket ([`socket`]) and demultiplexes
//! received frames by VID.
//!
//! - Transmit ([`tx`]): on the sending VIF's thread, the port makes the frame wire-ready
//!   (checksum completion, software segmentation: the parent takes raw frames), pushes the
//!   VID/PCP tag into headroom and queues it; the sender's end-of-burst [`Port::wake`] sends the
//!   batch with `sendmmsg(2)`. A frame longer than the parent carries is a counted
//!   `MtuExceeded` drop.
//! - Receive ([`rx`]): one thread per parent reads batches with `recvmmsg(2)`, finds each
//!   frame's VID (in `PACKET_AUXDATA` when the kernel stripped the tag, in the frame
//!   otherwise), pops the tag and enters the frame into its VID's segment.
//!
//! The PCP is a property of the (parent, VID) port, since the segment does not tell the port
//! which VIF a frame came from: VIFs on one VLAN of one parent must agree on it
//! ([`VlanError::PcpMismatch`]).
//!
//! MTU: IEEE 802.1Q-2018 § 9.3 puts the 4-byte tag inside the frame, and vif counts it against
//! the parent's MTU (`vif_core::model::VLAN_OVERHEAD`): the longest untagged frame sent is
//! `min(parent_mtu, the interface's MTU) + 14 - 4` bytes.
//!
//! Lifetimes: the parent's VID table holds each VID's segment and port; the segment holds the
//! port; the port holds only the socket. [`VlanParent::detach`] and dropping the [`VlanParent`]
//! stop the receive thread first, then take the ports off their segments.

mod rx;
pub mod socket;
mod tx;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use vif_core::ids::VlanId;
use vif_core::model::VlanUplink;
use vif_core::stats::DropReason;
use vif_core::wire::ethernet;
use vif_core::wire::vlan::{VlanRepr, TAG_LEN};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use tx::{TX_BATCH_BYTES, TX_BATCH_FRAMES};

use super::UplinkStats;
use crate::port::{Enqueued, FrameRef, Port, PortId};
use crate::switch::{Segment, SwitchError};
use socket::PacketSocket;
use tx::{PushError, TxBatch};

/// Bytes past the untagged maximum that a receive slot leaves room for: the tag when the
/// kernel leaves it in the frame, and an S-tag we skip.
const RX_SLOT_SLACK: usize = 2 * TAG_LEN;

/// Why a VLAN parent or VID cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VlanError {
    #[error("vlan parent {parent}: cannot open its AF_PACKET socket: {source}")]
    Socket {
        parent: String,
        #[source]
        source: io::Error,
    },
    #[error("vlan parent {parent}: cannot create the receive thread's stop eventfd: {source}")]
    StopEvent {
        parent: String,
        #[source]
        source: io::Error,
    },
    #[error("vlan parent {parent}: cannot spawn the receive thread: {source}")]
    Spawn {
        parent: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "vlan parent {parent} vid {vid}: pcp {pcp} differs from pcp {existing} of another VIF \
         on this VLAN (the tag's priority is per (parent, VID))"
    )]
    PcpMismatch {
        parent: String,
        vid: u16,
        pcp: u8,
        existing: u8,
    },
    #[error("vlan parent {parent} vid {vid}: already attached to segment {segment}")]
    OtherSegment {
        parent: String,
        vid: u16,
        segment: String,
    },
    #[error("vlan parent {parent} vid {vid}: {source}")]
    Switch {
        parent: String,
        vid: u16,
        #[source]
        source: SwitchError,
    },
}

/// One VID of a parent, as the receive thread finds it.
pub(crate) struct VidEntry {
    segment: Arc<Segment>,
    port_id: PortId,
    port: Arc<VlanPort>,
}

/// What a parent's receive thread and its ports share.
pub(crate) struct ParentShared {
    name: String,
    socket: Arc<PacketSocket>,
    slot_len: usize,
    vids: RwLock<HashMap<u16, VidEntry>>,
    /// Frames refused before their VID was known (truncated, malformed).
    stats: UplinkStats,
}

/// The port of one (parent, VID) on its segment.
pub struct VlanPort {
    name: String,
    tag: VlanRepr,
    socket: Arc<PacketSocket>,
    tx: Mutex<TxBatch>,
    stats: UplinkStats,
}

impl VlanPort {
    /// The tag pushed on every frame sent.
    pub fn tag(&self) -> VlanRepr {
        self.tag
    }

    /// `tx`: frames sent on the wire (and drops at send); `rx`: frames from the wire entered
    /// into the segment.
    pub fn stats(&self) -> &UplinkStats {
        &self.stats
    }

    fn flush(&self, batch: &mut TxBatch) {
        batch.flush(&self.socket);
        self.stats.tx.publish(&mut batch.stats);
    }
}

impl Port for VlanPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn enqueue(&self, frame: FrameRef<'_>, _flow_hint: u16) -> Result<Enqueued, DropReason> {
        let mut batch = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = batch.is_empty();
        let result = match batch.push(frame) {
            Err(PushError::Full) => {
                // A sender with a larger burst than the batch: send what is queued now (never
                // blocking: MSG_DONTWAIT) and make room.
                self.flush(&mut batch);
                batch.push(frame)
            }
            other => other,
        };
        match result {
            Ok(()) if was_empty || batch.len() == 1 => Ok(Enqueued::WakeOwed { queue: 0 }),
            Ok(()) => Ok(Enqueued::Queued),
            Err(PushError::Drop(reason)) => {
                batch.stats.record_drop(reason);
                self.stats.tx.publish(&mut batch.stats);
                Err(reason)
            }
            // A frame that does not fit an empty batch cannot be sent at all.
            Err(PushError::Full) => {
                batch.stats.record_drop(DropReason::MtuExceeded);
                self.stats.tx.publish(&mut batch.stats);
                Err(DropReason::MtuExceeded)
            }
        }
    }

    fn wake(&self, _queue: u16) {
        let mut batch = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        self.flush(&mut batch);
    }
}

/// A host interface carrying tagged frames for any number of VIDs.
pub struct VlanParent {
    shared: Arc<ParentShared>,
    stop: Arc<EventFd>,
    rx_thread: Option<JoinHandle<()>>,
}

impl VlanParent {
    /// Opens `parent`'s socket (promiscuous, see [`socket`]) and starts its receive thread.
    pub fn open(parent: &str) -> Result<VlanParent, VlanError> {
        let socket = PacketSocket::open(parent).map_err(|source| VlanError::Socket {
            parent: parent.to_owned(),
            source,
        })?;
        let slot_len = (socket.mtu() as usize)
            .saturating_add(ethernet::HEADER_LEN + RX_SLOT_SLACK)
            .next_multiple_of(64);
        let shared = Arc::new(ParentShared {
            name: parent.to_owned(),
            socket: Arc::new(socket),
            slot_len,
            vids: RwLock::new(HashMap::new()),
            stats: UplinkStats::default(),
        });
        let stop = Arc::new(
            EventFd::new(EFD_NONBLOCK).map_err(|source| VlanError::StopEvent {
                parent: parent.to_owned(),
                source,
            })?,
        );
        let rx_thread = std::thread::Builder::new()
            .name(format!("vlan-rx-{parent}"))
            .spawn({
                let shared = Arc::clone(&shared);
                let stop = Arc::clone(&stop);
                move || rx::run(shared, stop)
            })
            .map_err(|source| VlanError::Spawn {
                parent: parent.to_owned(),
                source,
            })?;
        Ok(VlanParent {
            shared,
            stop,
            rx_thread: Some(rx_thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The parent interface's MTU when it was opened.
    pub fn mtu(&self) -> u32 {
        self.shared.socket.mtu()
    }

    /// Frames the parent refused before finding their VID.
    pub fn stats(&self) -> &UplinkStats {
        &self.shared.stats
    }

    /// Puts `uplink.vid` of this parent on `segment`: creates its port and attaches it. A VIF
    /// joining a VID that already has its port gets that port, if it asks for the same PCP.
    pub fn attach(
        &self,
        uplink: &VlanUplink,
        segment: &Arc<Segment>,
    ) -> Result<Arc<VlanPort>, VlanError> {
        let vid = uplink.vid.get();
        let mut vids = self.shared.vids.write().unwrap_or_else(|e| e.into_inner());
        // A segment only this table still holds was dropped by the daemon with its last VIF:
        // its port goes, and the VID joins the new segment.
        if let Some(entry) = vids.get(&vid) {
            if !Arc::ptr_eq(&entry.segment, segment) && Arc::strong_count(&entry.segment) == 1 {
                if let Some(stale) = vids.remove(&vid) {
                    stale.segment.detach(stale.port_id);
                }
            }
        }
        if let Some(entry) = vids.get(&vid) {
            if !Arc::ptr_eq(&entry.segment, segment) {
                return Err(VlanError::OtherSegment {
                    parent: self.shared.name.clone(),
                    vid,
                    segment: entry.segment.name().to_owned(),
                });
            }
            if entry.port.tag.pcp != uplink.pcp {
                return Err(VlanError::PcpMismatch {
                    parent: self.shared.name.clone(),
                    vid,
                    pcp: uplink.pcp,
                    existing: entry.port.tag.pcp,
                });
            }
            return Ok(Arc::clone(&entry.port));
        }
        let mtu = u32::from(uplink.parent_mtu).min(self.shared.socket.mtu());
        if mtu < u32::from(uplink.parent_mtu) {
            log::warn!(
                "vlan parent {}: interface MTU {mtu} is below the configured parent_mtu {}; \
                 using {mtu}",
                self.shared.name,
                uplink.parent_mtu
            );
        }
        let max_untagged_len = (mtu as usize + ethernet::HEADER_LEN).saturating_sub(TAG_LEN);
        let tag = VlanRepr::c_tag(Some(uplink.vid), uplink.pcp);
        let port = Arc::new(VlanPort {
            name: format!("vlan:{}.{vid}", self.shared.name),
            tag,
            socket: Arc::clone(&self.shared.socket),
            tx: Mutex::new(TxBatch::new(tag, max_untagged_len)),
            stats: UplinkStats::default(),
        });
        let port_id = segment
            .attach(Arc::clone(&port) as Arc<dyn Port>)
            .map_err(|source| VlanError::Switch {
                parent: self.shared.name.clone(),
                vid,
                source,
            })?;
        vids.insert(
            vid,
            VidEntry {
                segment: Arc::clone(segment),
                port_id,
                port: Arc::clone(&port),
            },
        );
        Ok(port)
    }

    /// The port of `vid`, if attached.
    pub fn port(&self, vid: VlanId) -> Option<Arc<VlanPort>> {
        let vids = self.shared.vids.read().unwrap_or_else(|e| e.into_inner());
        vids.get(&vid.get()).map(|entry| Arc::clone(&entry.port))
    }

    /// Every VID's port, in VID order (for the metrics).
    pub fn ports(&self) -> Vec<Arc<VlanPort>> {
        let vids = self.shared.vids.read().unwrap_or_else(|e| e.into_inner());
        let mut ports: Vec<Arc<VlanPort>> =
            vids.values().map(|entry| Arc::clone(&entry.port)).collect();
        ports.sort_by_key(|port| port.tag.vid.map(VlanId::get));
        ports
    }

    /// Takes `vid` off its segment; frames with that VID are ignored from now on.
    pub fn detach(&self, vid: VlanId) {
        let entry = self
            .shared
            .vids
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&vid.get());
        if let Some(entry) = entry {
            entry.segment.detach(entry.port_id);
        }
    }
}

impl Drop for VlanParent {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.rx_thread.take() {
            let _ = thread.join();
        }
        let entries: Vec<VidEntry> = self
            .shared
            .vids
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, entry)| entry)
            .collect();
        for entry in entries {
            entry.segment.detach(entry.port_id);
        }
    }
}

/// The daemon's VLAN parents, opened on first use.
#[derive(Default)]
pub struct VlanUplinks {
    parents: BTreeMap<String, VlanParent>,
}

impl VlanUplinks {
    pub fn new() -> VlanUplinks {
        VlanUplinks::default()
    }

    /// Attaches `uplink`'s (parent, VID) to `segment`, opening the parent on first use.
    pub fn attach(
        &mut self,
        uplink: &VlanUplink,
        segment: &Arc<Segment>,
    ) -> Result<Arc<VlanPort>, VlanError> {
        let parent = match self.parents.get(&uplink.parent) {
            Some(parent) => parent,
            None => {
                let parent = VlanParent::open(&uplink.parent)?;
                self.parents.entry(uplink.parent.clone()).or_insert(parent)
            }
        };
        parent.attach(uplink, segment)
    }

    pub fn parent(&self, name: &str) -> Option<&VlanParent> {
        self.parents.get(name)
    }

    /// Every parent, in name order.
    pub fn parents(&self) -> impl Iterator<Item = &VlanParent> {
        self.parents.values()
    }
}
