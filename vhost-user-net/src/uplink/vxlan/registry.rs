//! The daemon's VTEPs: one per (local address, UDP port), bound when the first VIF of one of
//! its VNIs starts, shared by every VNI on it.
//!
//! Several VIFs of one VNI share its segment and so its one port; they must then agree on what
//! the port was set up with (remotes, underlay MTU), and a VNI lives on one VTEP only: a second
//! VTEP on the same segment would relay frames between two underlays. A VIF that comes back
//! after its VNI's segment was dropped (every VIF of the VNI removed) gets a fresh port on the
//! new segment; the stale one is taken off its old segment first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use vif_core::ids::Vni;
use vif_core::model::VxlanUplink;

use super::{VniConfig, VniPort, Vtep, VtepConfig, VxlanError};
use crate::switch::Segment;

/// The VTEPs of one daemon, keyed by bound address.
#[derive(Default)]
pub struct VxlanUplinks {
    vteps: BTreeMap<SocketAddr, Vtep>,
}

impl VxlanUplinks {
    pub fn new() -> VxlanUplinks {
        VxlanUplinks::default()
    }

    /// Puts `uplink`'s VNI on `segment`: binds its VTEP on first use, then creates the VNI's
    /// port or returns the one a VIF of the same VNI already attached.
    pub fn attach(
        &mut self,
        uplink: &VxlanUplink,
        segment: &Arc<Segment>,
    ) -> Result<Arc<VniPort>, VxlanError> {
        let config = VtepConfig::from_uplink(uplink);
        let asked = config.socket_addr();
        let vni = uplink.vni;
        if let Some((&served_by, _)) = self
            .vteps
            .iter()
            .find(|(&addr, vtep)| addr != asked && vtep.port(vni).is_some())
        {
            return Err(VxlanError::VniOnOtherVtep {
                vni: vni.get(),
                served_by,
                asked,
            });
        }
        let vtep = match self.vteps.get(&asked) {
            Some(vtep) => vtep,
            None => {
                let vtep = Vtep::bind(config.clone())?;
                self.vteps.entry(asked).or_insert(vtep)
            }
        };
        if vtep.config().interface != config.interface {
            return Err(VxlanError::InterfaceConflict {
                addr: asked,
                served: vtep.config().interface.clone(),
                asked: config.interface,
            });
        }
        let vni_config = VniConfig::from_uplink(uplink);
        if let Some(port) = vtep.port(vni) {
            if Arc::ptr_eq(port.segment(), segment) {
                return if same_vni_config(port.config(), &vni_config) {
                    Ok(port)
                } else {
                    Err(VxlanError::VniConflict {
                        vni: vni.get(),
                        served: Box::new(port.config().clone()),
                        asked: Box::new(vni_config),
                    })
                };
            }
            // The daemon dropped the segment this port was on: replace the port.
            vtep.remove_vni(vni);
        }
        vtep.add_vni(&vni_config, segment)
    }

    /// The port of `vni` on whichever VTEP serves it.
    pub fn port(&self, vni: Vni) -> Option<Arc<VniPort>> {
        self.vteps.values().find_map(|vtep| vtep.port(vni))
    }

    pub fn vtep(&self, addr: SocketAddr) -> Option<&Vtep> {
        self.vteps.get(&addr)
    }

    /// Every VTEP, in address order.
    pub fn vteps(&self) -> impl Iterator<Item = &Vtep> {
        self.vteps.values()
    }
}

/// Same remotes (as a set) and underlay MTU.
fn same_vni_config(a: &VniConfig, b: &VniConfig) -> bool {
    let mut a_remotes = a.remotes.clone();
    let mut b_remotes = b.remotes.clone();
    a_remotes.sort();
    a_remotes.dedup();
    b_remotes.sort();
    b_remotes.dedup();
    a.vni == b.vni && a.underlay_mtu == b.underlay_mtu && a_remotes == b_remotes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicU16, Ordering};

    fn uplink(vni: u32, local: u8, port: u16, remotes: &[u8]) -> VxlanUplink {
        let lo = |last| IpAddr::from(Ipv4Addr::new(127, 0, 0, last));
        VxlanUplink {
            vni: Vni::new(vni).unwrap(),
            local: lo(local),
            remotes: remotes.iter().map(|&r| lo(r)).collect(),
            udp_port: port,
            underlay_mtu: 1500,
            interface: None,
        }
    }

    fn free_port() -> u16 {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        for _ in 0..64 {
            let port =
                40000 + (std::process::id() as u16 % 10000) + NEXT.fetch_add(3, Ordering::Relaxed);
            if std::net::UdpSocket::bind(("127.0.0.9", port)).is_ok() {
                return port;
            }
        }
        panic!("no free port");
    }

    #[test]
    fn vifs_of_one_vni_share_its_port_and_must_agree() {
        let port = free_port();
        let mut uplinks = VxlanUplinks::new();
        let segment = Segment::new("vxlan-5");
        let first = uplinks
            .attach(&uplink(5, 9, port, &[2, 3]), &segment)
            .unwrap();
        let second = uplinks
            .attach(&uplink(5, 9, port, &[3, 2, 3]), &segment)
            .unwrap();
        assert!(Arc::ptr_eq(&first, &second), "one port per VNI");
        assert!(matches!(
            uplinks.attach(&uplink(5, 9, port, &[2]), &segment),
            Err(VxlanError::VniConflict { vni: 5, .. })
        ));
        // Another VNI shares the VTEP.
        let other = uplinks
            .attach(&uplink(6, 9, port, &[2]), &Segment::new("vxlan-6"))
            .unwrap();
        assert_eq!(uplinks.vteps.len(), 1);
        assert_eq!(
            uplinks.port(Vni::new(6).unwrap()).unwrap().vni(),
            other.vni()
        );
        // The same VNI on another local address is refused.
        assert!(matches!(
            uplinks.attach(&uplink(5, 8, port, &[2, 3]), &segment),
            Err(VxlanError::VniOnOtherVtep { vni: 5, .. })
        ));
    }

    #[test]
    fn a_vni_back_on_a_new_segment_gets_a_new_port() {
        let port = free_port();
        let mut uplinks = VxlanUplinks::new();
        let old_segment = Segment::new("vxlan-7");
        let old = uplinks
            .attach(&uplink(7, 9, port, &[2]), &old_segment)
            .unwrap();
        let new_segment = Segment::new("vxlan-7");
        let new = uplinks
            .attach(&uplink(7, 9, port, &[2]), &new_segment)
            .unwrap();
        assert!(!Arc::ptr_eq(&old, &new));
        assert!(Arc::ptr_eq(new.segment(), &new_segment));
        // The old port left its segment: a broadcast there reaches no port.
        let burst = old_segment.begin_burst(std::time::Instant::now());
        let mut ports = 0;
        burst.for_each_other_port(crate::port::PortId(u32::MAX), |_, _| ports += 1);
        assert_eq!(ports, 0);
    }
}
