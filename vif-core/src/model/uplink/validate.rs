//! The checks on an uplink: tunnel endpoints are unicast and of one family, interface names are
//! valid, lower-layer MTUs respect their family's minimum, and the VIF MTU fits through the
//! encapsulation.

use std::net::IpAddr;

use super::{
    VlanUplink, VxlanUplink, MAX_PCP, MAX_REMOTES, MIN_IPV4_MTU, MIN_IPV6_MTU, VLAN_OVERHEAD,
};
use crate::model::error::{EndpointProblem, ModelError};
use crate::model::names::{check_ifname, VifId, IFNAMSIZ};

fn endpoint_problem(addr: IpAddr) -> Option<EndpointProblem> {
    if addr.is_unspecified() {
        Some(EndpointProblem::Unspecified)
    } else if addr.is_multicast() {
        Some(EndpointProblem::Multicast)
    } else if matches!(addr, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some(EndpointProblem::Broadcast)
    } else {
        None
    }
}

pub(super) fn ifname(vif: &VifId, field: &'static str, name: &str) -> Result<(), ModelError> {
    check_ifname(name).map_err(|reason| ModelError::InvalidInterfaceName {
        vif: vif.clone(),
        field,
        value: name.to_owned(),
        reason,
        ifnamsiz: IFNAMSIZ,
    })
}

pub(super) fn vxlan(vxlan: &VxlanUplink, vif: &VifId, vif_mtu: u16) -> Result<(), ModelError> {
    if let Some(problem) = endpoint_problem(vxlan.local) {
        return Err(ModelError::LocalNotUnicast {
            vif: vif.clone(),
            addr: vxlan.local,
            problem,
        });
    }
    if vxlan.remotes.len() > MAX_REMOTES {
        return Err(ModelError::TooManyRemotes {
            vif: vif.clone(),
            count: vxlan.remotes.len(),
            max: MAX_REMOTES,
        });
    }
    for (index, &addr) in vxlan.remotes.iter().enumerate() {
        if let Some(problem) = endpoint_problem(addr) {
            return Err(ModelError::RemoteNotUnicast {
                vif: vif.clone(),
                index,
                addr,
                problem,
            });
        }
        if addr.is_ipv4() != vxlan.local.is_ipv4() {
            return Err(ModelError::RemoteFamilyMismatch {
                vif: vif.clone(),
                index,
                addr,
                local: vxlan.local,
            });
        }
        if addr == vxlan.local {
            return Err(ModelError::RemoteIsLocal {
                vif: vif.clone(),
                index,
                addr,
            });
        }
        // Quadratic, but bounded by MAX_REMOTES and run once per config load.
        if let Some(first) = vxlan.remotes.get(..index).and_then(|earlier| {
            earlier
                .iter()
                .position(|&earlier_addr| earlier_addr == addr)
        }) {
            return Err(ModelError::DuplicateRemote {
                vif: vif.clone(),
                index,
                first,
                addr,
            });
        }
    }
    if vxlan.udp_port == 0 {
        return Err(ModelError::UdpPortZero { vif: vif.clone() });
    }
    let (min, rfc) = match vxlan.local {
        IpAddr::V4(_) => (MIN_IPV4_MTU, "RFC 791 § 3.2"),
        IpAddr::V6(_) => (MIN_IPV6_MTU, "RFC 8200 § 5"),
    };
    if vxlan.underlay_mtu < min {
        return Err(ModelError::LowerMtuTooSmall {
            vif: vif.clone(),
            field: "uplink.underlay_mtu",
            mtu: vxlan.underlay_mtu,
            family: vxlan.family(),
            min,
            rfc,
        });
    }
    if let Some(interface) = &vxlan.interface {
        ifname(vif, "uplink.interface", interface)?;
    }
    // The classic overlay mismatch: a guest with the underlay's MTU sends frames that no longer
    // fit once encapsulated; with DF set they vanish as ICMP "fragmentation needed" the guest
    // never sees. Refuse it here rather than drop at runtime.
    let limit = vxlan.underlay_mtu.saturating_sub(vxlan.overhead());
    if vif_mtu > limit {
        return Err(ModelError::MtuOverUplink {
            vif: vif.clone(),
            mtu: vif_mtu,
            uplink: match vxlan.local {
                IpAddr::V4(_) => "VXLAN/IPv4",
                IpAddr::V6(_) => "VXLAN/IPv6",
            },
            limit,
            field: "underlay_mtu",
            lower_mtu: vxlan.underlay_mtu,
            overhead: vxlan.overhead(),
        });
    }
    Ok(())
}

pub(super) fn vlan(vlan: &VlanUplink, vif: &VifId, vif_mtu: u16) -> Result<(), ModelError> {
    if vlan.pcp > MAX_PCP {
        return Err(ModelError::PcpOutOfRange {
            vif: vif.clone(),
            pcp: vlan.pcp,
            max: MAX_PCP,
        });
    }
    ifname(vif, "uplink.parent", &vlan.parent)?;
    if vlan.parent_mtu < MIN_IPV4_MTU {
        return Err(ModelError::LowerMtuTooSmall {
            vif: vif.clone(),
            field: "uplink.parent_mtu",
            mtu: vlan.parent_mtu,
            family: "IPv4",
            min: MIN_IPV4_MTU,
            rfc: "RFC 791 § 3.2",
        });
    }
    // The pushed tag counts against the parent's MTU (see VLAN_OVERHEAD).
    let limit = vlan.parent_mtu.saturating_sub(VLAN_OVERHEAD);
    if vif_mtu > limit {
        return Err(ModelError::MtuOverVlanParent {
            vif: vif.clone(),
            mtu: vif_mtu,
            limit,
            parent_mtu: vlan.parent_mtu,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::model::error::NameError;
    use crate::model::tests::{spec, vif_id, vlan, vxlan_v4};
    use crate::model::uplink::{LocalUplink, SriovVfUplink, UplinkSpec, VXLAN_IPV4_OVERHEAD};

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    fn v6(last: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
    }

    fn vxlan_v6() -> VxlanUplink {
        VxlanUplink {
            local: v6(1),
            remotes: vec![v6(2)],
            ..vxlan_v4()
        }
    }

    fn check(uplink: UplinkSpec, mtu: u16) -> Result<(), ModelError> {
        uplink.validate(&vif_id(), mtu)
    }

    #[test]
    fn max_vif_mtu_per_kind() {
        assert_eq!(UplinkSpec::Vxlan(vxlan_v4()).max_vif_mtu(), Some(1450));
        assert_eq!(UplinkSpec::Vxlan(vxlan_v6()).max_vif_mtu(), Some(1430));
        assert_eq!(UplinkSpec::Vlan(vlan()).max_vif_mtu(), Some(1500));
        let sriov = SriovVfUplink::new("enp3s0f0");
        assert_eq!(UplinkSpec::SriovVf(sriov).max_vif_mtu(), None);
        let tiny = VxlanUplink {
            underlay_mtu: 10,
            ..vxlan_v4()
        };
        assert_eq!(UplinkSpec::Vxlan(tiny).max_vif_mtu(), Some(0));
    }

    #[test]
    fn vxlan_v4_mtu_mismatch_is_refused() {
        assert_eq!(check(UplinkSpec::Vxlan(vxlan_v4()), 1450), Ok(()));
        let err = check(UplinkSpec::Vxlan(vxlan_v4()), 1451).unwrap_err();
        assert!(matches!(
            err,
            ModelError::MtuOverUplink {
                mtu: 1451,
                limit: 1450,
                overhead: VXLAN_IPV4_OVERHEAD,
                ..
            }
        ));
        // The classic overlay mistake: the guest keeps the underlay's 1500.
        let mut spec = spec();
        spec.mtu = 1500;
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "vif web-1: mtu 1500 exceeds the VXLAN/IPv4 uplink limit 1450 \
             (underlay_mtu 1500 - 50 bytes of encapsulation)"
        );
    }

    #[test]
    fn vxlan_v6_overhead_is_70() {
        assert_eq!(check(UplinkSpec::Vxlan(vxlan_v6()), 1430), Ok(()));
        let err = check(UplinkSpec::Vxlan(vxlan_v6()), 1431).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vif web-1: mtu 1431 exceeds the VXLAN/IPv6 uplink limit 1430 \
             (underlay_mtu 1500 - 70 bytes of encapsulation)"
        );
    }

    #[test]
    fn vlan_mtu_over_parent_is_refused() {
        // The fixture's parent carries 1504 bytes: a 1500-byte VIF plus the 4-byte tag fits.
        assert_eq!(check(UplinkSpec::Vlan(vlan()), 1500), Ok(()));
        let err = check(UplinkSpec::Vlan(vlan()), 1501).unwrap_err();
        assert_eq!(
            err,
            ModelError::MtuOverVlanParent {
                vif: vif_id(),
                mtu: 1501,
                limit: 1500,
                parent_mtu: 1504
            }
        );
        assert_eq!(
            err.to_string(),
            "vif web-1: mtu 1501 exceeds the VLAN uplink limit 1500 (parent_mtu 1504 - 4 bytes \
             of 802.1Q tag)"
        );
        let standard_parent = VlanUplink {
            parent_mtu: 1500,
            ..vlan()
        };
        assert_eq!(
            UplinkSpec::Vlan(standard_parent.clone()).max_vif_mtu(),
            Some(1496)
        );
        assert!(check(UplinkSpec::Vlan(standard_parent), 1497).is_err());
    }

    #[test]
    fn lower_mtu_below_the_family_minimum_is_refused() {
        let small_v6 = VxlanUplink {
            underlay_mtu: 1279,
            ..vxlan_v6()
        };
        let err = check(UplinkSpec::Vxlan(small_v6), 1200).unwrap_err();
        assert!(matches!(
            err,
            ModelError::LowerMtuTooSmall {
                field: "uplink.underlay_mtu",
                mtu: 1279,
                min: 1280,
                ..
            }
        ));
        assert!(err
            .to_string()
            .contains("uplink.underlay_mtu 1279 is below the IPv6 minimum 1280 (RFC 8200 § 5)"));
        let small_parent = VlanUplink {
            parent_mtu: 67,
            ..vlan()
        };
        assert!(matches!(
            check(UplinkSpec::Vlan(small_parent), 68),
            Err(ModelError::LowerMtuTooSmall {
                field: "uplink.parent_mtu",
                min: 68,
                ..
            })
        ));
    }

    #[test]
    fn local_must_be_unicast() {
        for (local, problem) in [
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                EndpointProblem::Unspecified,
            ),
            (
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                EndpointProblem::Unspecified,
            ),
            (
                IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)),
                EndpointProblem::Multicast,
            ),
        ] {
            let vxlan = VxlanUplink {
                local,
                remotes: vec![],
                ..vxlan_v4()
            };
            let err = check(UplinkSpec::Vxlan(vxlan), 1400).unwrap_err();
            assert_eq!(
                err,
                ModelError::LocalNotUnicast {
                    vif: vif_id(),
                    addr: local,
                    problem
                }
            );
            assert!(err
                .to_string()
                .contains(&format!("uplink.local {local} is")));
        }
    }

    #[test]
    fn remotes_must_be_unicast() {
        for (remote, problem) in [
            (
                IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)),
                EndpointProblem::Multicast,
            ),
            (IpAddr::V4(Ipv4Addr::BROADCAST), EndpointProblem::Broadcast),
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                EndpointProblem::Unspecified,
            ),
        ] {
            let vxlan = VxlanUplink {
                remotes: vec![v4(11), remote],
                ..vxlan_v4()
            };
            let err = check(UplinkSpec::Vxlan(vxlan), 1400).unwrap_err();
            assert_eq!(
                err,
                ModelError::RemoteNotUnicast {
                    vif: vif_id(),
                    index: 1,
                    addr: remote,
                    problem
                }
            );
            assert!(err
                .to_string()
                .contains(&format!("uplink.remotes[1] {remote} is {problem}")));
        }
    }

    #[test]
    fn remotes_must_share_the_local_family() {
        let vxlan = VxlanUplink {
            remotes: vec![v4(11), v6(2)],
            ..vxlan_v4()
        };
        let err = check(UplinkSpec::Vxlan(vxlan), 1400).unwrap_err();
        assert_eq!(
            err,
            ModelError::RemoteFamilyMismatch {
                vif: vif_id(),
                index: 1,
                addr: v6(2),
                local: v4(10)
            }
        );
        assert!(err
            .to_string()
            .contains("not in the address family of uplink.local"));
    }

    #[test]
    fn remote_equal_to_local_is_refused() {
        let vxlan = VxlanUplink {
            remotes: vec![v4(10)],
            ..vxlan_v4()
        };
        assert_eq!(
            check(UplinkSpec::Vxlan(vxlan), 1400),
            Err(ModelError::RemoteIsLocal {
                vif: vif_id(),
                index: 0,
                addr: v4(10)
            })
        );
    }

    #[test]
    fn duplicate_remotes_are_refused() {
        let vxlan = VxlanUplink {
            remotes: vec![v4(11), v4(12), v4(11)],
            ..vxlan_v4()
        };
        let err = check(UplinkSpec::Vxlan(vxlan), 1400).unwrap_err();
        assert_eq!(
            err,
            ModelError::DuplicateRemote {
                vif: vif_id(),
                index: 2,
                first: 0,
                addr: v4(11)
            }
        );
        assert!(err
            .to_string()
            .contains("uplink.remotes[2] 192.0.2.11 repeats uplink.remotes[0]"));
    }

    #[test]
    fn too_many_remotes_are_refused() {
        let vxlan = VxlanUplink {
            remotes: (0..=MAX_REMOTES as u32)
                .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
                .collect(),
            ..vxlan_v4()
        };
        let err = check(UplinkSpec::Vxlan(vxlan), 1400).unwrap_err();
        assert!(matches!(
            err,
            ModelError::TooManyRemotes {
                count: 1025,
                max: MAX_REMOTES,
                ..
            }
        ));
        assert!(err.to_string().contains("more than 1024"));
    }

    #[test]
    fn udp_port_zero_is_refused() {
        let vxlan = VxlanUplink {
            udp_port: 0,
            ..vxlan_v4()
        };
        let err = check(UplinkSpec::Vxlan(vxlan), 1400).unwrap_err();
        assert_eq!(err, ModelError::UdpPortZero { vif: vif_id() });
        assert!(err.to_string().contains("uplink.udp_port 0"));
    }

    #[test]
    fn pcp_above_7_is_refused() {
        let ok = VlanUplink { pcp: 7, ..vlan() };
        assert_eq!(check(UplinkSpec::Vlan(ok), 1500), Ok(()));
        let bad = VlanUplink { pcp: 8, ..vlan() };
        let err = check(UplinkSpec::Vlan(bad), 1500).unwrap_err();
        assert_eq!(
            err,
            ModelError::PcpOutOfRange {
                vif: vif_id(),
                pcp: 8,
                max: 7
            }
        );
        assert!(err
            .to_string()
            .contains("uplink.pcp 8 is out of range [0, 7]"));
    }

    #[test]
    fn interface_names_are_checked() {
        let long_parent = VlanUplink {
            parent: "a-very-long-ifname".to_owned(),
            ..vlan()
        };
        let err = check(UplinkSpec::Vlan(long_parent), 1500).unwrap_err();
        assert!(matches!(
            &err,
            ModelError::InvalidInterfaceName {
                field: "uplink.parent",
                reason: NameError::TooLong { len: 18, max: 15 },
                ..
            }
        ));
        assert!(err.to_string().contains("(IFNAMSIZ 16 including the NUL"));
        let slash = VxlanUplink {
            interface: Some("eth/0".to_owned()),
            ..vxlan_v4()
        };
        assert!(matches!(
            check(UplinkSpec::Vxlan(slash), 1400),
            Err(ModelError::InvalidInterfaceName {
                field: "uplink.interface",
                reason: NameError::BadChar { ch: '/', .. },
                ..
            })
        ));
        let pf = SriovVfUplink {
            vf_index: Some(1),
            ..SriovVfUplink::new("")
        };
        assert!(matches!(
            check(UplinkSpec::SriovVf(pf), 9000),
            Err(ModelError::InvalidInterfaceName {
                field: "uplink.pf",
                reason: NameError::Empty,
                ..
            })
        ));
    }

    #[test]
    fn segment_name_is_checked() {
        let local = LocalUplink {
            segment: "lab 1".to_owned(),
        };
        let err = check(UplinkSpec::Local(local), 1500).unwrap_err();
        assert!(matches!(
            &err,
            ModelError::InvalidName {
                field: "uplink.segment",
                ..
            }
        ));
        assert!(err
            .to_string()
            .starts_with("vif web-1: uplink.segment \"lab 1\""));
    }

    #[test]
    fn kind_matches_the_type_tag() {
        for uplink in [UplinkSpec::Vxlan(vxlan_v4()), UplinkSpec::Vlan(vlan())] {
            let json = serde_json::to_value(&uplink).unwrap();
            assert_eq!(json["type"], uplink.kind());
        }
        let sriov = UplinkSpec::SriovVf(SriovVfUplink::new("p"));
        assert_eq!(serde_json::to_value(&sriov).unwrap()["type"], "sriov-vf");
    }
}
