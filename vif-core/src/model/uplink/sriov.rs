//! An SR-IOV virtual function as a VIF's uplink: which VF of which physical function, and the
//! settings the PF enforces on it (`ip link set PF vf N ...`): a VLAN the VF's frames are tagged
//! with, spoof checking, trust and transmit rate limits. The guest drives the VF itself, so
//! these PF-side settings are the only policy the host keeps over its traffic.
//!
//! The daemon's `uplink/sriov.rs` turns them into rtnetlink `IFLA_VF_*` attributes; the checks
//! here are the ranges the kernel itself checks in `do_setvfinfo` (net/core/rtnetlink.c), so a
//! bad value is refused at config time with the field and bound named.

use serde::{Deserialize, Serialize};

use super::MAX_PCP;
use crate::ids::VlanId;
use crate::model::error::ModelError;
use crate::model::names::VifId;

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u8) -> bool {
    *value == 0
}

/// An SR-IOV virtual function of a physical function. Only `pf` is required:
///
/// ```toml
/// uplink = { type = "sriov-vf", pf = "enp3s0f0", vf_index = 3, vlan = 100, qos = 5,
///            spoof_check = true, trust = false, max_tx_rate_mbps = 1000, min_tx_rate_mbps = 100 }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SriovVfUplink {
    /// The physical function's interface name.
    pub pf: String,
    /// The VF to use; `None` takes a free one from the daemon's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf_index: Option<u16>,
    /// The VLAN the PF puts the VF on (a "port VLAN": the PF inserts and strips the tag, the
    /// guest sends and receives untagged frames). `None` leaves the VF untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanId>,
    /// The 802.1p priority (PCP, IEEE 802.1Q-2018 § 6.9.3) of the port VLAN's tag: iproute2's
    /// `qos`. Needs `vlan`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub qos: u8,
    /// The PF drops frames the VF sends from a source MAC other than the VIF's. On by default:
    /// a tenant must not forge another station's address.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub spoof_check: bool,
    /// Lets the VF change its MAC and enter promiscuous or all-multicast mode. Off by default;
    /// off leaves the PF's setting untouched (drivers without the knob still take the VF).
    #[serde(default, skip_serializing_if = "is_false")]
    pub trust: bool,
    /// The VF's transmit rate ceiling in Mbit/s; `None` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tx_rate_mbps: Option<u32>,
    /// The VF's guaranteed transmit rate in Mbit/s; `None` is no guarantee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tx_rate_mbps: Option<u32>,
}

impl SriovVfUplink {
    /// A VF of `pf` with the defaults: any free VF, no VLAN, spoof checking on, trust off, no
    /// rate limits.
    pub fn new(pf: impl Into<String>) -> SriovVfUplink {
        SriovVfUplink {
            pf: pf.into(),
            vf_index: None,
            vlan: None,
            qos: 0,
            spoof_check: true,
            trust: false,
            max_tx_rate_mbps: None,
            min_tx_rate_mbps: None,
        }
    }
}

/// Checks the VF settings (the PF's name is checked by the caller, with the other interface
/// names).
pub(super) fn validate(uplink: &SriovVfUplink, vif: &VifId) -> Result<(), ModelError> {
    if uplink.qos > MAX_PCP {
        return Err(ModelError::VfQosOutOfRange {
            vif: vif.clone(),
            qos: uplink.qos,
            max: MAX_PCP,
        });
    }
    // The priority travels in the tag: without a port VLAN there is no tag to carry it
    // (`ip link set ... vf N qos Q` needs `vlan V`).
    if uplink.qos != 0 && uplink.vlan.is_none() {
        return Err(ModelError::VfQosWithoutVlan {
            vif: vif.clone(),
            qos: uplink.qos,
        });
    }
    // The kernel reads a rate of 0 as "no limit"; writing it would mean the opposite of what
    // it says, so absence is the only spelling of "no limit".
    for (field, rate) in [
        ("uplink.max_tx_rate_mbps", uplink.max_tx_rate_mbps),
        ("uplink.min_tx_rate_mbps", uplink.min_tx_rate_mbps),
    ] {
        if rate == Some(0) {
            return Err(ModelError::VfRateZero {
                vif: vif.clone(),
                field,
            });
        }
    }
    // Drivers refuse a guarantee above the ceiling (ixgbe, i40e, ice, mlx5 check it).
    if let (Some(min), Some(max)) = (uplink.min_tx_rate_mbps, uplink.max_tx_rate_mbps) {
        if min > max {
            return Err(ModelError::VfRateInverted {
                vif: vif.clone(),
                min,
                max,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::error::NameError;
    use crate::model::tests::vif_id;
    use crate::model::uplink::UplinkSpec;

    fn check(uplink: SriovVfUplink) -> Result<(), ModelError> {
        UplinkSpec::SriovVf(uplink).validate(&vif_id(), 9000)
    }

    fn vf() -> SriovVfUplink {
        SriovVfUplink::new("enp3s0f0")
    }

    #[test]
    fn defaults_are_a_locked_down_untagged_vf() {
        let parsed: SriovVfUplink = toml::from_str("pf = \"enp3s0f0\"").unwrap();
        assert_eq!(parsed, vf());
        assert!(parsed.spoof_check);
        assert!(!parsed.trust);
        assert_eq!(check(parsed), Ok(()));
    }

    #[test]
    fn every_setting_parses_and_round_trips() {
        let text = "pf = \"enp3s0f0\"\nvf_index = 3\nvlan = 100\nqos = 5\nspoof_check = false\n\
                    trust = true\nmax_tx_rate_mbps = 1000\nmin_tx_rate_mbps = 100\n";
        let parsed: SriovVfUplink = toml::from_str(text).unwrap();
        let want = SriovVfUplink {
            vf_index: Some(3),
            vlan: Some(VlanId::new(100).unwrap()),
            qos: 5,
            spoof_check: false,
            trust: true,
            max_tx_rate_mbps: Some(1000),
            min_tx_rate_mbps: Some(100),
            ..vf()
        };
        assert_eq!(parsed, want);
        assert_eq!(check(parsed.clone()), Ok(()));
        let back: SriovVfUplink = toml::from_str(&toml::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(back, parsed);
        // Defaults are left out of what the daemon reports.
        let json = serde_json::to_value(vf()).unwrap();
        assert_eq!(json, serde_json::json!({ "pf": "enp3s0f0" }));
    }

    #[test]
    fn vlan_is_a_vlan_id() {
        for bad in ["vlan = 0", "vlan = 4095", "vlan = -1"] {
            let text = format!("pf = \"p\"\n{bad}\n");
            assert!(toml::from_str::<SriovVfUplink>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn qos_above_7_is_refused() {
        let vlan = Some(VlanId::new(10).unwrap());
        let ok = SriovVfUplink {
            vlan,
            qos: 7,
            ..vf()
        };
        assert_eq!(check(ok), Ok(()));
        let err = check(SriovVfUplink {
            vlan,
            qos: 8,
            ..vf()
        })
        .unwrap_err();
        assert_eq!(
            err,
            ModelError::VfQosOutOfRange {
                vif: vif_id(),
                qos: 8,
                max: 7
            }
        );
        assert_eq!(
            err.to_string(),
            "vif web-1: uplink.qos 8 is out of range [0, 7] (IEEE 802.1Q-2018 § 6.9.3)"
        );
    }

    #[test]
    fn qos_without_vlan_is_refused() {
        let err = check(SriovVfUplink { qos: 3, ..vf() }).unwrap_err();
        assert_eq!(
            err,
            ModelError::VfQosWithoutVlan {
                vif: vif_id(),
                qos: 3
            }
        );
        assert!(err.to_string().contains("uplink.qos 3 needs uplink.vlan"));
    }

    #[test]
    fn zero_rates_are_refused() {
        let err = check(SriovVfUplink {
            max_tx_rate_mbps: Some(0),
            ..vf()
        })
        .unwrap_err();
        assert_eq!(
            err,
            ModelError::VfRateZero {
                vif: vif_id(),
                field: "uplink.max_tx_rate_mbps"
            }
        );
        assert!(err
            .to_string()
            .contains("uplink.max_tx_rate_mbps 0 is not a rate"));
        assert!(matches!(
            check(SriovVfUplink {
                min_tx_rate_mbps: Some(0),
                ..vf()
            }),
            Err(ModelError::VfRateZero {
                field: "uplink.min_tx_rate_mbps",
                ..
            })
        ));
    }

    #[test]
    fn min_rate_above_max_rate_is_refused() {
        let rates = |min, max| SriovVfUplink {
            min_tx_rate_mbps: Some(min),
            max_tx_rate_mbps: Some(max),
            ..vf()
        };
        assert_eq!(check(rates(1000, 1000)), Ok(()));
        let err = check(rates(1001, 1000)).unwrap_err();
        assert_eq!(
            err,
            ModelError::VfRateInverted {
                vif: vif_id(),
                min: 1001,
                max: 1000
            }
        );
        assert_eq!(
            err.to_string(),
            "vif web-1: uplink.min_tx_rate_mbps 1001 exceeds uplink.max_tx_rate_mbps 1000"
        );
        // A guarantee alone (no ceiling) is fine.
        let min_only = SriovVfUplink {
            min_tx_rate_mbps: Some(5000),
            ..vf()
        };
        assert_eq!(check(min_only), Ok(()));
    }

    #[test]
    fn pf_name_is_checked() {
        assert!(matches!(
            check(SriovVfUplink::new("")),
            Err(ModelError::InvalidInterfaceName {
                field: "uplink.pf",
                reason: NameError::Empty,
                ..
            })
        ));
    }
}
