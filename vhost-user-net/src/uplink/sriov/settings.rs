//! The PF-side settings of a VF besides its MAC ([`VfSettings`]), and how an SR-IOV VIF's
//! uplink spec (`vif_core::model::SriovVfUplink`) maps onto them. Which knobs are sent at all
//! matters: the kernel fails a whole `RTM_SETLINK` when a driver lacks one attribute's
//! `ndo_set_vf_*`, so settings left at "don't care" are left out (see [`VfConfig`]).

use vif_core::mac::MacAddr;
use vif_core::model::SriovVfUplink;

use super::netlink::{VfConfig, VfRate, VfVlan};

/// The PF-side settings of a VF besides its MAC. The default is what a tenant VF wants: spoof
/// checking on (the VF may only send from its own MAC), no VLAN, trust and rate left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfSettings {
    pub vlan: Option<VfVlan>,
    pub spoofchk: bool,
    pub trust: Option<bool>,
    pub rate: Option<VfRate>,
}

impl Default for VfSettings {
    fn default() -> Self {
        VfSettings {
            vlan: None,
            spoofchk: true,
            trust: None,
            rate: None,
        }
    }
}

impl VfSettings {
    /// The settings an SR-IOV VIF's uplink asks for. Trust off and absent rates leave the PF's
    /// knobs alone (see [`VfConfig`]: a driver without them still takes the VF); a rate given
    /// alone sends the other as 0, the kernel's "no limit" / "no guarantee".
    pub fn from_uplink(uplink: &SriovVfUplink) -> VfSettings {
        let rate =
            (uplink.max_tx_rate_mbps.is_some() || uplink.min_tx_rate_mbps.is_some()).then(|| {
                VfRate {
                    min_mbps: uplink.min_tx_rate_mbps.unwrap_or(0),
                    max_mbps: uplink.max_tx_rate_mbps.unwrap_or(0),
                }
            });
        VfSettings {
            vlan: uplink.vlan.map(|vid| VfVlan {
                vid: vid.get(),
                qos: uplink.qos,
            }),
            spoofchk: uplink.spoof_check,
            trust: uplink.trust.then_some(true),
            rate,
        }
    }

    pub(super) fn config(&self, vf: u16, mac: MacAddr) -> VfConfig {
        VfConfig {
            vf: u32::from(vf),
            mac,
            vlan: self.vlan,
            spoofchk: self.spoofchk,
            trust: self.trust,
            rate: self.rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use vif_core::ids::VlanId;

    use super::*;

    #[test]
    fn defaults_check_spoofing_and_leave_the_rest_alone() {
        let settings = VfSettings::from_uplink(&SriovVfUplink::new("eth0"));
        assert_eq!(settings, VfSettings::default());
        let config = settings.config(2, MacAddr([0x52, 0x54, 0, 0, 0, 1]));
        assert_eq!(
            (
                config.vf,
                config.spoofchk,
                config.vlan,
                config.trust,
                config.rate
            ),
            (2, true, None, None, None)
        );
    }

    #[test]
    fn every_uplink_setting_reaches_the_vf() {
        let uplink = SriovVfUplink {
            vlan: Some(VlanId::new(100).unwrap()),
            qos: 5,
            spoof_check: false,
            trust: true,
            max_tx_rate_mbps: Some(1000),
            min_tx_rate_mbps: Some(100),
            ..SriovVfUplink::new("eth0")
        };
        assert_eq!(
            VfSettings::from_uplink(&uplink),
            VfSettings {
                vlan: Some(VfVlan { vid: 100, qos: 5 }),
                spoofchk: false,
                trust: Some(true),
                rate: Some(VfRate {
                    min_mbps: 100,
                    max_mbps: 1000
                }),
            }
        );
    }

    #[test]
    fn a_rate_alone_sends_the_other_as_unlimited() {
        let ceiling = SriovVfUplink {
            max_tx_rate_mbps: Some(500),
            ..SriovVfUplink::new("eth0")
        };
        let rate = VfSettings::from_uplink(&ceiling).rate;
        assert_eq!(
            rate,
            Some(VfRate {
                min_mbps: 0,
                max_mbps: 500
            })
        );
        let guarantee = SriovVfUplink {
            min_tx_rate_mbps: Some(50),
            ..SriovVfUplink::new("eth0")
        };
        let config = VfSettings::from_uplink(&guarantee).config(0, MacAddr::ZERO);
        assert_eq!(config.rate.map(|rate| rate.max_mbps), Some(0));
        // 0 is "no ceiling" to the kernel, so the guarantee alone passes its check.
        assert!(config.check().is_ok());
    }
}
