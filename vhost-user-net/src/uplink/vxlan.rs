//! The VXLAN uplink (RFC 7348): a VXLAN tunnel endpoint ([`Vtep`]) per (local address, UDP
//! port), and one [`VniPort`] per VNI on that VNI's segment.
//!
//! A VNI is a broadcast domain, so it is a segment (`switch.rs`): the VIFs of the VNI and its
//! `VniPort` are ports on it. Frames between local VIFs of the VNI never leave the host; remote
//! MACs are learned by the segment as "behind the `VniPort`". The port keeps the VNI's own table
//! of which remote VTEP each remote MAC is behind ([`VniFdb`]: learned with ageing, plus the
//! static remotes that floods are replicated to). Tenants on different VNIs never share a
//! segment, and received datagrams are demultiplexed by VNI before anything looks at the inner
//! frame, so they never see each other's frames.
//!
//! - Transmit ([`tx`]): on the sending VIF's thread, the port makes the frame wire-ready (checksum
//!   completion, TSO/USO segmentation: the underlay takes neither) into a per-VTEP shard; the
//!   sender's end-of-burst `wake` encapsulates the shard's frames and sends them with
//!   `sendmmsg(2)`.
//! - Receive ([`rx`]): one thread per VTEP reads batches with `recvmmsg(2)`, demultiplexes by VNI,
//!   learns (inner source MAC → outer source IP), and hands each inner frame to its segment as
//!   any port would. It also ages the forwarding tables once per [`rx::AGEING_TICK`].
//! - Sockets ([`socket`]): one UDP socket per VTEP, shared by its VNIs, for receiving; a raw IP
//!   socket for sending, so each inner flow gets its own UDP source port.
//!
//! Lifetimes: the VTEP's table of VNIs holds the ports, each port holds the VTEP's shared state
//! and its segment, and the segment holds the port: [`Vtep::remove_vni`] and dropping the
//! [`Vtep`] break those cycles (detach from the segment, forget the VNI) after stopping the
//! receive thread.

mod config;
mod fdb;
mod registry;
mod rx;
mod socket;
#[cfg(test)]
mod tests;
mod tx;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use vif_core::ids::Vni;
use vif_core::mac::MacAddr;
use vif_core::stats::{DropReason, StatsBatch};
use vif_core::wire::encap::{EncapTemplate, VxlanEncap};
use vif_core::wire::{ethernet, WireError};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use config::{VniConfig, VtepConfig, VxlanError, DEFAULT_TTL};
pub use fdb::{Destinations, FdbView, VniFdb, DEFAULT_AGEING, MAX_LEARNED, MAX_LEARNED_PER_REMOTE};
pub use registry::VxlanUplinks;
pub use socket::TxMode;

use super::UplinkStats;
use crate::port::{Enqueued, FrameRef, Port, PortId};
use crate::switch::Segment;
use socket::SockAddr;
use tx::TxShard;

/// Most remotes with a prebuilt encapsulation template per VNI (static and learned); frames to
/// a learned remote beyond it get a template built on the spot.
pub const MAX_TEMPLATES: usize = 2 * vif_core::model::uplink::MAX_REMOTES;

/// A remote VTEP as the transmit path needs it: its headers and its socket address.
struct Remote {
    template: EncapTemplate,
    to: SockAddr,
}

/// What the receive thread and the ports share.
struct VtepShared {
    config: VtepConfig,
    local_addr: SocketAddr,
    rx_socket: std::net::UdpSocket,
    raw_tx: Option<OwnedFd>,
    shards: Box<[TxShard]>,
    vnis: RwLock<HashMap<Vni, Arc<VniPort>>>,
    /// Drops that belong to no VNI: garbage, unknown VNIs, a VNI removed mid-flight.
    stats: UplinkStats,
}

impl VtepShared {
    fn tx_mode(&self) -> TxMode {
        if self.raw_tx.is_some() {
            TxMode::Raw
        } else {
            TxMode::Udp
        }
    }

    fn tx_fd(&self) -> BorrowedFd<'_> {
        match &self.raw_tx {
            Some(fd) => fd.as_fd(),
            None => self.rx_socket.as_fd(),
        }
    }

    /// The port of `vni`, cloned out so that no other lock is ever taken under the table's.
    fn vni_port(&self, vni: Vni) -> Option<Arc<VniPort>> {
        self.read_vnis().get(&vni).cloned()
    }

    fn read_vnis(&self) -> RwLockReadGuard<'_, HashMap<Vni, Arc<VniPort>>> {
        self.vnis.read().unwrap_or_else(|e| e.into_inner())
    }

    fn count_tx_drops(&self, reason: DropReason, count: usize) {
        add_drops(&self.stats.tx, reason, count);
    }
}

fn add_drops(stats: &vif_core::stats::QueueStats, reason: DropReason, count: usize) {
    if let Some(counter) = stats.drops.get(reason.index()) {
        counter.fetch_add(count as u64, Ordering::Relaxed);
    }
}

/// A VXLAN tunnel endpoint. Dropping it stops its receive thread and takes its ports off their
/// segments.
pub struct Vtep {
    shared: Arc<VtepShared>,
    stop: Arc<EventFd>,
    rx_thread: Option<JoinHandle<()>>,
}

impl Vtep {
    /// Binds the sockets and starts the receive thread.
    pub fn bind(config: VtepConfig) -> Result<Vtep, VxlanError> {
        if config.udp_port == 0 {
            return Err(VxlanError::PortZero {
                local: config.local,
            });
        }
        let addr = config.socket_addr();
        let interface = config.interface.as_deref();
        let rx_socket = socket::bind_udp(addr, interface)
            .map_err(|source| VxlanError::Bind { addr, source })?;
        let local_addr = rx_socket.local_addr().unwrap_or(addr);
        let raw_tx = match config.tx_mode {
            Some(TxMode::Udp) => None,
            mode => match socket::raw_tx(config.local, interface) {
                Ok(fd) => Some(fd),
                Err(source)
                    if mode.is_none() && source.kind() == io::ErrorKind::PermissionDenied =>
                {
                    log::warn!(
                        "VTEP {addr}: no CAP_NET_RAW ({source}); sending from the UDP socket, \
                         so every flow has source port {}",
                        local_addr.port()
                    );
                    None
                }
                Err(source) => {
                    return Err(VxlanError::RawSocket {
                        local: config.local,
                        mode,
                        source,
                    })
                }
            },
        };
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(VxlanError::StopEvent)?);
        let shared = Arc::new(VtepShared {
            config,
            local_addr,
            rx_socket,
            raw_tx,
            shards: (0..tx::SHARDS).map(|_| TxShard::new()).collect(),
            vnis: RwLock::new(HashMap::new()),
            stats: UplinkStats::default(),
        });
        let rx_thread = rx::spawn(Arc::clone(&shared), Arc::clone(&stop))
            .map_err(|source| VxlanError::RxThread { addr, source })?;
        Ok(Vtep {
            shared,
            stop,
            rx_thread: Some(rx_thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn config(&self) -> &VtepConfig {
        &self.shared.config
    }

    pub fn tx_mode(&self) -> TxMode {
        self.shared.tx_mode()
    }

    /// Counters for what belongs to no VNI: datagrams that are not VXLAN or are for a VNI not
    /// served here (`rx` drops), frames whose VNI left before they were sent (`tx` drops).
    pub fn stats(&self) -> &UplinkStats {
        &self.shared.stats
    }

    /// Serves `config.vni` on `segment`: creates its port and attaches it to the segment.
    pub fn add_vni(
        &self,
        config: &VniConfig,
        segment: &Arc<Segment>,
    ) -> Result<Arc<VniPort>, VxlanError> {
        let vni = config.vni;
        let local = self.shared.config.local;
        if let Some(&remote) = config
            .remotes
            .iter()
            .find(|remote| remote.is_ipv4() != local.is_ipv4())
        {
            return Err(VxlanError::RemoteFamily {
                vni: vni.get(),
                remote,
                local,
            });
        }
        if self.shared.read_vnis().contains_key(&vni) {
            return Err(VxlanError::VniInUse {
                vni: vni.get(),
                addr: self.local_addr(),
            });
        }
        let port = Arc::new(VniPort::new(&self.shared, config, segment)?);
        let id = segment
            .attach(port.clone())
            .map_err(|source| VxlanError::Switch {
                vni: vni.get(),
                source,
            })?;
        let _ = port.port_id.set(id);
        let mut vnis = self.shared.vnis.write().unwrap_or_else(|e| e.into_inner());
        if vnis.contains_key(&vni) {
            // Lost a race with another add of the same VNI.
            drop(vnis);
            segment.detach(id);
            return Err(VxlanError::VniInUse {
                vni: vni.get(),
                addr: self.local_addr(),
            });
        }
        vnis.insert(vni, Arc::clone(&port));
        Ok(port)
    }

    /// Stops serving `vni`: its port leaves its segment. Returns whether it was served.
    pub fn remove_vni(&self, vni: Vni) -> bool {
        let removed = self
            .shared
            .vnis
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&vni);
        match removed {
            Some(port) => {
                port.detach();
                true
            }
            None => false,
        }
    }

    /// The port of `vni`, if served.
    pub fn port(&self, vni: Vni) -> Option<Arc<VniPort>> {
        self.shared.vni_port(vni)
    }

    /// Every VNI port, in VNI order (cloned out of the table, for the metrics).
    pub fn ports(&self) -> Vec<Arc<VniPort>> {
        let mut ports: Vec<Arc<VniPort>> = self.shared.read_vnis().values().cloned().collect();
        ports.sort_by_key(|port| port.vni);
        ports
    }
}

impl Drop for Vtep {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.rx_thread.take() {
            let _ = thread.join();
        }
        let ports: Vec<Arc<VniPort>> = self
            .shared
            .vnis
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, port)| port)
            .collect();
        ports.iter().for_each(|port| port.detach());
    }
}

/// One VNI's port on its segment.
pub struct VniPort {
    name: String,
    vni: Vni,
    vtep: Arc<VtepShared>,
    segment: Arc<Segment>,
    port_id: OnceLock<PortId>,
    fdb: VniFdb,
    remotes: RwLock<HashMap<IpAddr, Remote>>,
    /// The encapsulation of this VNI with the destination left to fill per remote.
    base: VxlanEncap,
    /// The longest inner frame whose outer IP datagram fits the underlay MTU.
    max_inner_len: usize,
    config: VniConfig,
    stats: UplinkStats,
}

impl VniPort {
    fn new(
        vtep: &Arc<VtepShared>,
        config: &VniConfig,
        segment: &Arc<Segment>,
    ) -> Result<VniPort, VxlanError> {
        let vni = config.vni;
        let local = vtep.config.local;
        let base = VxlanEncap {
            // A raw IP socket drops the Ethernet header; the UDP socket never sees it.
            outer_src_mac: MacAddr::ZERO,
            outer_dst_mac: MacAddr::ZERO,
            src: local,
            dst: local,
            dst_port: vtep.config.udp_port,
            vni,
            ttl: vtep.config.ttl,
            dscp: vtep.config.dscp,
        };
        // The outer IP datagram: everything but the outer Ethernet header.
        let ip_overhead = base.overhead() - ethernet::HEADER_LEN;
        let max_inner_len = usize::from(config.underlay_mtu)
            .checked_sub(ip_overhead)
            .filter(|&len| len >= ethernet::HEADER_LEN)
            .ok_or(VxlanError::UnderlayMtu {
                vni: vni.get(),
                underlay_mtu: config.underlay_mtu,
                overhead: ip_overhead,
            })?;
        let port = VniPort {
            name: format!("vxlan-{}@{}", vni.get(), vtep.local_addr),
            vni,
            vtep: Arc::clone(vtep),
            segment: Arc::clone(segment),
            port_id: OnceLock::new(),
            fdb: VniFdb::new(&config.remotes, config.ageing, Instant::now()),
            remotes: RwLock::new(HashMap::new()),
            base,
            max_inner_len,
            config: config.clone(),
            stats: UplinkStats::default(),
        };
        let mode = vtep.tx_mode();
        let mut remotes = HashMap::with_capacity(port.fdb.static_remotes().len());
        for &remote in port.fdb.static_remotes() {
            let built = port
                .build_remote(remote, mode)
                .map_err(|source| VxlanError::Template {
                    vni: vni.get(),
                    remote,
                    source,
                })?;
            remotes.insert(remote, built);
        }
        *port.remotes.write().unwrap_or_else(|e| e.into_inner()) = remotes;
        Ok(port)
    }

    pub fn vni(&self) -> Vni {
        self.vni
    }

    /// What the port was set up with.
    pub fn config(&self) -> &VniConfig {
        &self.config
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// The port's id on its segment.
    pub fn port_id(&self) -> Option<PortId> {
        self.port_id.get().copied()
    }

    /// The VNI's forwarding table.
    pub fn fdb(&self) -> &VniFdb {
        &self.fdb
    }

    /// The VTEP `mac` was learned behind, if any.
    pub fn learned_remote(&self, mac: MacAddr) -> Option<IpAddr> {
        self.fdb.remote_of(mac)
    }

    /// The longest inner frame (Ethernet header included) the underlay MTU allows.
    pub fn max_inner_len(&self) -> usize {
        self.max_inner_len
    }

    /// `tx`: datagrams sent (one per remote a frame was replicated to; bytes of the inner frame)
    /// and frames dropped; `rx`: inner frames received and handed to the segment.
    pub fn stats(&self) -> &UplinkStats {
        &self.stats
    }

    /// Learns what a received batch showed, and prepares the headers of any new remote.
    fn learn(&self, now: Instant, seen: &[(MacAddr, IpAddr)]) {
        if self.fdb.learn(now, seen) == 0 {
            return;
        }
        let missing = {
            let remotes = self.read_remotes();
            seen.iter().any(|(_, remote)| !remotes.contains_key(remote))
        };
        if !missing {
            return;
        }
        let mode = self.vtep.tx_mode();
        let mut remotes = self.remotes.write().unwrap_or_else(|e| e.into_inner());
        for &(_, remote) in seen {
            if remotes.len() >= MAX_TEMPLATES || remotes.contains_key(&remote) {
                continue;
            }
            if let Ok(built) = self.build_remote(remote, mode) {
                remotes.insert(remote, built);
            }
        }
    }

    /// Ages the forwarding table and forgets the headers of remotes nothing points at.
    fn age_out(&self, now: Instant) {
        if self.fdb.age_out(now) == 0 {
            return;
        }
        let mut remotes = self.remotes.write().unwrap_or_else(|e| e.into_inner());
        remotes
            .retain(|&remote, _| self.fdb.is_static(remote) || self.fdb.has_learned_remote(remote));
    }

    fn read_remotes(&self) -> RwLockReadGuard<'_, HashMap<IpAddr, Remote>> {
        self.remotes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn build_remote(&self, remote: IpAddr, mode: TxMode) -> Result<Remote, WireError> {
        let template = VxlanEncap {
            dst: remote,
            ..self.base
        }
        .template()?;
        // A raw socket's port field is the protocol, 0 meaning the socket's own.
        let port = match mode {
            TxMode::Raw => 0,
            TxMode::Udp => self.base.dst_port,
        };
        Ok(Remote {
            template,
            to: SockAddr::new(SocketAddr::new(remote, port)),
        })
    }

    fn publish_tx(&self, batch: &mut StatsBatch) {
        if !batch.is_empty() {
            self.stats.tx.publish(batch);
        }
    }

    fn publish_rx(&self, batch: &mut StatsBatch) {
        if !batch.is_empty() {
            self.stats.rx.publish(batch);
        }
    }

    fn detach(&self) {
        if let Some(&id) = self.port_id.get() {
            self.segment.detach(id);
        }
    }
}

impl Port for VniPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn enqueue(&self, frame: FrameRef<'_>, flow_hint: u16) -> Result<Enqueued, DropReason> {
        match tx::enqueue(&self.vtep.shards, usize::from(flow_hint), self, frame) {
            // Shard indices are below tx::SHARDS: they fit a u16.
            Ok((shard, true)) => Ok(Enqueued::WakeOwed {
                queue: shard as u16,
            }),
            Ok((_, false)) => Ok(Enqueued::Queued),
            Err(reason) => {
                // The sender counts it too, but not for flooded copies: count it here as well.
                add_drops(&self.stats.tx, reason, 1);
                Err(reason)
            }
        }
    }

    fn wake(&self, queue: u16) {
        if let Some(shard) = self.vtep.shards.get(usize::from(queue)) {
            tx::flush(shard, &self.vtep);
        }
    }
}
