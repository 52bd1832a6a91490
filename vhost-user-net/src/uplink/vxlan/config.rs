//! What a VTEP and its VNIs are configured with, and why setting them up can fail.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use vif_core::ids::Vni;
use vif_core::model::VxlanUplink;
use vif_core::wire::WireError;

use super::fdb::DEFAULT_AGEING;
use super::socket::TxMode;
use crate::switch::SwitchError;

/// The outer TTL (IPv4) or hop limit (IPv6): Linux's default for vxlan devices without `ttl`.
pub const DEFAULT_TTL: u8 = 64;

/// Why a VTEP or a VNI cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error("VTEP {local}: UDP port 0 is no VXLAN port (it is both bound and sent to)")]
    PortZero { local: IpAddr },
    #[error("cannot bind the VXLAN UDP socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the raw transmit socket for {local} ({mode:?} mode asked): {source}")]
    RawSocket {
        local: IpAddr,
        mode: Option<TxMode>,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the receive thread's stop eventfd: {0}")]
    StopEvent(#[source] io::Error),
    #[error("cannot start the receive thread of the VTEP at {addr}: {source}")]
    RxThread {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("VNI {vni} is already served by the VTEP at {addr}")]
    VniInUse { vni: u32, addr: SocketAddr },
    #[error("VNI {vni}: remote {remote} is not of the family of the local address {local}")]
    RemoteFamily {
        vni: u32,
        remote: IpAddr,
        local: IpAddr,
    },
    #[error(
        "VNI {vni}: underlay MTU {underlay_mtu} leaves no room for an Ethernet frame after the \
         {overhead}-byte outer headers"
    )]
    UnderlayMtu {
        vni: u32,
        underlay_mtu: u16,
        overhead: usize,
    },
    #[error("VNI {vni}: cannot build the encapsulation for remote {remote}: {source}")]
    Template {
        vni: u32,
        remote: IpAddr,
        #[source]
        source: WireError,
    },
    #[error("VNI {vni}: {source}")]
    Switch {
        vni: u32,
        #[source]
        source: SwitchError,
    },
    #[error(
        "VNI {vni} is served by the VTEP at {served_by}; a VIF asks for it at {asked}: one VNI \
         has one VTEP per daemon"
    )]
    VniOnOtherVtep {
        vni: u32,
        served_by: SocketAddr,
        asked: SocketAddr,
    },
    #[error(
        "VNI {vni}: VIFs of one VNI must agree on its remotes and underlay MTU \
         (served: {served:?}, asked: {asked:?})"
    )]
    VniConflict {
        vni: u32,
        served: Box<VniConfig>,
        asked: Box<VniConfig>,
    },
    #[error("the VTEP at {addr} is bound to interface {served:?}; a VIF asks for {asked:?}")]
    InterfaceConflict {
        addr: SocketAddr,
        served: Option<String>,
        asked: Option<String>,
    },
}
/// A VTEP: the local end of the tunnels of every VNI that shares (local address, port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtepConfig {
    /// The local VTEP address; received datagrams must be addressed to it.
    pub local: IpAddr,
    /// The UDP port: bound locally and used as destination port towards every remote.
    pub udp_port: u16,
    /// `SO_BINDTODEVICE` on both sockets; `None` follows the routing table.
    pub interface: Option<String>,
    /// Outer TTL / hop limit.
    pub ttl: u8,
    /// Outer DSCP (6 bits).
    pub dscp: u8,
    /// `None`: [`TxMode::Raw`] if the process may open raw sockets, else [`TxMode::Udp`].
    pub tx_mode: Option<TxMode>,
}

impl VtepConfig {
    pub fn new(local: IpAddr, udp_port: u16) -> VtepConfig {
        VtepConfig {
            local,
            udp_port,
            interface: None,
            ttl: DEFAULT_TTL,
            dscp: 0,
            tx_mode: None,
        }
    }

    /// The VTEP a VIF's uplink uses.
    pub fn from_uplink(uplink: &VxlanUplink) -> VtepConfig {
        VtepConfig {
            interface: uplink.interface.clone(),
            ..VtepConfig::new(uplink.local, uplink.udp_port)
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.local, self.udp_port)
    }
}

/// One VNI on a VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniConfig {
    pub vni: Vni,
    /// Static remote VTEPs: the head-end replication list.
    pub remotes: Vec<IpAddr>,
    /// The underlay's L3 MTU: the outer IP datagram must fit it.
    pub underlay_mtu: u16,
    /// Ageing of learned (inner MAC → VTEP) entries.
    pub ageing: Duration,
}

impl VniConfig {
    pub fn from_uplink(uplink: &VxlanUplink) -> VniConfig {
        VniConfig {
            vni: uplink.vni,
            remotes: uplink.remotes.clone(),
            underlay_mtu: uplink.underlay_mtu,
            ageing: DEFAULT_AGEING,
        }
    }
}
