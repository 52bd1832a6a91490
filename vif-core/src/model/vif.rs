//! The VIF spec: identity, MAC, MTU, queues, offloads, uplink, policy references, port security
//! and labels, with the defaults the config file may omit and [`VifSpec::validate`].
//!
//! ACLs and QoS policies are referenced by name; resolving the names is the daemon's job, since
//! they are defined elsewhere in its config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::names::{check_label_key, check_name, VifId};
use super::offloads::Offloads;
use super::port_security::PortSecurityConfig;
use super::uplink::{UplinkSpec, MIN_IPV4_MTU};
use crate::mac::MacAddr;

/// The smallest VIF MTU: every IPv4 link must carry 68 bytes (RFC 791 § 3.2), and the VIRTIO
/// `mtu` config field must not be below it (VIRTIO 1.2 § 5.1.4.1). The largest is `u16::MAX`, as
/// Linux's virtio_net allows (`ETH_MAX_MTU`).
pub const MIN_MTU: u16 = MIN_IPV4_MTU;
pub const DEFAULT_MTU: u16 = 1500;
/// Most queue pairs per VIF: one worker thread each, on hosts where cores are shared with guests.
pub const MAX_QUEUE_PAIRS: u16 = 16;
pub const DEFAULT_QUEUE_PAIRS: u16 = 1;
/// The smallest queue size offered. It is the most descriptors `SET_VRING_NUM` may ask for, and
/// QEMU's vhost-user-net frontend never uses fewer than 256 (`VIRTIO_NET_RX_QUEUE_MIN_SIZE`), so a
/// smaller maximum would fail every QEMU guest at ring setup.
pub const MIN_QUEUE_SIZE: u16 = 256;
/// The largest split-ring size (VIRTIO 1.2 § 2.7: "Queue Size ... maximum 32768").
pub const MAX_QUEUE_SIZE: u16 = 32768;
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
/// Bytes of an untagged Ethernet header (no FCS: virtio frames carry none).
pub const ETHERNET_HEADER_LEN: u16 = 14;
/// Most labels per VIF, and the longest label value: labels are metadata, not storage.
pub const MAX_LABELS: usize = 16;
pub const MAX_LABEL_VALUE_LEN: usize = 256;

fn default_mtu() -> u16 {
    DEFAULT_MTU
}

fn default_queue_pairs() -> u16 {
    DEFAULT_QUEUE_PAIRS
}

fn default_queue_size() -> u16 {
    DEFAULT_QUEUE_SIZE
}

/// A VIF: one virtio-net device served over one vhost-user socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VifSpec {
    pub id: VifId,
    /// The guest's MAC: the device's `mac` config field, and the source address anti-spoofing
    /// allows.
    pub mac: MacAddr,
    /// The L3 MTU, as on a Linux interface; offered to the guest as `VIRTIO_NET_F_MTU`.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    #[serde(default = "default_queue_pairs")]
    pub queue_pairs: u16,
    /// The most descriptors per virtqueue the backend accepts.
    #[serde(default = "default_queue_size")]
    pub queue_size: u16,
    /// A QoS policy name, resolved by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    #[serde(default)]
    pub offloads: Offloads,
    pub uplink: UplinkSpec,
    #[serde(default)]
    pub acl: AclRefs,
    /// Anti-spoofing of what the guest sends; none when absent (`port_security.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<PortSecurityConfig>,
    /// Free-form metadata (owner, tenant); keys follow Prometheus label-name syntax.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The ACLs applied to a VIF, by name. Directions are the guest's: `ingress` filters frames
/// delivered to the guest, `egress` frames the guest sends.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRefs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<String>,
}

impl VifSpec {
    /// A spec with every optional field at its default.
    pub fn new(id: VifId, mac: MacAddr, uplink: UplinkSpec) -> VifSpec {
        VifSpec {
            id,
            mac,
            mtu: DEFAULT_MTU,
            queue_pairs: DEFAULT_QUEUE_PAIRS,
            queue_size: DEFAULT_QUEUE_SIZE,
            qos: None,
            offloads: Offloads::default(),
            uplink,
            acl: AclRefs::default(),
            port_security: None,
            labels: BTreeMap::new(),
        }
    }

    /// The longest untagged frame the guest may send or receive outside GSO: `mtu` plus the
    /// Ethernet header, without the virtio-net header.
    pub fn max_frame_len(&self) -> u32 {
        u32::from(self.mtu) + u32::from(ETHERNET_HEADER_LEN)
    }

    /// Checks every rule; returns the first broken one, in field order.
    pub fn validate(&self) -> Result<(), ModelError> {
        let vif = &self.id;
        if self.mac.is_multicast() {
            return Err(ModelError::MacNotUnicast {
                vif: vif.clone(),
                mac: self.mac,
            });
        }
        if self.mac.is_zero() {
            return Err(ModelError::MacZero { vif: vif.clone() });
        }
        if self.mtu < MIN_MTU {
            return Err(ModelError::MtuTooSmall {
                vif: vif.clone(),
                mtu: self.mtu,
                min: MIN_MTU,
            });
        }
        if !(1..=MAX_QUEUE_PAIRS).contains(&self.queue_pairs) {
            return Err(ModelError::QueuePairsOutOfRange {
                vif: vif.clone(),
                queue_pairs: self.queue_pairs,
                min: 1,
                max: MAX_QUEUE_PAIRS,
            });
        }
        if !(MIN_QUEUE_SIZE..=MAX_QUEUE_SIZE).contains(&self.queue_size) {
            return Err(ModelError::QueueSizeOutOfRange {
                vif: vif.clone(),
                queue_size: self.queue_size,
                min: MIN_QUEUE_SIZE,
                max: MAX_QUEUE_SIZE,
            });
        }
        if !self.queue_size.is_power_of_two() {
            return Err(ModelError::QueueSizeNotPowerOfTwo {
                vif: vif.clone(),
                queue_size: self.queue_size,
            });
        }
        if let Some(qos) = &self.qos {
            object_name(vif, "qos", qos)?;
        }
        self.offloads.validate(vif)?;
        self.uplink.validate(vif, self.mtu)?;
        if let Some(ingress) = &self.acl.ingress {
            object_name(vif, "acl.ingress", ingress)?;
        }
        if let Some(egress) = &self.acl.egress {
            object_name(vif, "acl.egress", egress)?;
        }
        if let Some(port_security) = &self.port_security {
            port_security.validate(vif)?;
        }
        self.validate_labels()
    }

    fn validate_labels(&self) -> Result<(), ModelError> {
        let vif = &self.id;
        if self.labels.len() > MAX_LABELS {
            return Err(ModelError::TooManyLabels {
                vif: vif.clone(),
                count: self.labels.len(),
                max: MAX_LABELS,
            });
        }
        for (key, value) in &self.labels {
            check_label_key(key).map_err(|reason| ModelError::InvalidName {
                vif: vif.clone(),
                field: "label key",
                value: key.clone(),
                reason,
            })?;
            if value.len() > MAX_LABEL_VALUE_LEN {
                return Err(ModelError::LabelValueTooLong {
                    vif: vif.clone(),
                    key: key.clone(),
                    len: value.len(),
                    max: MAX_LABEL_VALUE_LEN,
                });
            }
            // Values are exported and logged; control characters would forge lines in both.
            if let Some((at, ch)) = value.char_indices().find(|(_, ch)| ch.is_control()) {
                return Err(ModelError::LabelValueControlChar {
                    vif: vif.clone(),
                    key: key.clone(),
                    ch,
                    at,
                });
            }
        }
        Ok(())
    }
}

fn object_name(vif: &VifId, field: &'static str, name: &str) -> Result<(), ModelError> {
    check_name(name).map_err(|reason| ModelError::InvalidName {
        vif: vif.clone(),
        field,
        value: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::error::NameError;
    use crate::model::tests::{mac, spec, vif_id};
    use crate::model::uplink::LocalUplink;

    fn local_spec() -> VifSpec {
        VifSpec::new(
            vif_id(),
            mac(),
            UplinkSpec::Local(LocalUplink {
                segment: "lab".to_owned(),
            }),
        )
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(local_spec().validate(), Ok(()));
        assert_eq!(spec().validate(), Ok(()));
        assert_eq!(local_spec().max_frame_len(), 1514);
    }

    #[test]
    fn group_mac_is_refused() {
        let mac = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
        let err = VifSpec { mac, ..spec() }.validate().unwrap_err();
        assert_eq!(err, ModelError::MacNotUnicast { vif: vif_id(), mac });
        assert!(err
            .to_string()
            .starts_with("vif web-1: mac 01:00:5e:00:00:01 is a group"));
        let broadcast = VifSpec {
            mac: MacAddr::BROADCAST,
            ..spec()
        };
        assert!(matches!(
            broadcast.validate(),
            Err(ModelError::MacNotUnicast { .. })
        ));
    }

    #[test]
    fn zero_mac_is_refused() {
        let err = VifSpec {
            mac: MacAddr::ZERO,
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err, ModelError::MacZero { vif: vif_id() });
        assert!(err.to_string().contains("mac 00:00:00:00:00:00"));
    }

    #[test]
    fn mtu_below_68_is_refused() {
        let ok = VifSpec { mtu: 68, ..spec() };
        assert_eq!(ok.validate(), Ok(()));
        let err = VifSpec { mtu: 67, ..spec() }.validate().unwrap_err();
        assert_eq!(
            err,
            ModelError::MtuTooSmall {
                vif: vif_id(),
                mtu: 67,
                min: 68
            }
        );
        assert_eq!(
            err.to_string(),
            "vif web-1: mtu 67 is below the minimum 68 (RFC 791 § 3.2)"
        );
    }

    #[test]
    fn jumbo_mtu_is_fine_without_a_lower_layer() {
        let spec = VifSpec {
            mtu: u16::MAX,
            ..local_spec()
        };
        assert_eq!(spec.validate(), Ok(()));
        assert_eq!(spec.max_frame_len(), 65535 + 14);
    }

    #[test]
    fn queue_pairs_out_of_range_are_refused() {
        for queue_pairs in [0, MAX_QUEUE_PAIRS + 1] {
            let err = VifSpec {
                queue_pairs,
                ..spec()
            }
            .validate()
            .unwrap_err();
            assert_eq!(
                err,
                ModelError::QueuePairsOutOfRange {
                    vif: vif_id(),
                    queue_pairs,
                    min: 1,
                    max: 16
                }
            );
            assert!(err.to_string().contains(&format!(
                "queue_pairs {queue_pairs} is out of range [1, 16]"
            )));
        }
        let max = VifSpec {
            queue_pairs: MAX_QUEUE_PAIRS,
            ..spec()
        };
        assert_eq!(max.validate(), Ok(()));
    }

    #[test]
    fn queue_size_out_of_range_is_refused() {
        for queue_size in [0, 128, 65535] {
            let err = VifSpec {
                queue_size,
                ..spec()
            }
            .validate()
            .unwrap_err();
            assert_eq!(
                err,
                ModelError::QueueSizeOutOfRange {
                    vif: vif_id(),
                    queue_size,
                    min: 256,
                    max: 32768
                }
            );
            assert!(err.to_string().contains("out of range [256, 32768]"));
        }
        for queue_size in [256, 1024, 32768] {
            let ok = VifSpec {
                queue_size,
                ..spec()
            };
            assert_eq!(ok.validate(), Ok(()), "{queue_size}");
        }
    }

    #[test]
    fn queue_size_must_be_a_power_of_two() {
        let err = VifSpec {
            queue_size: 1000,
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err,
            ModelError::QueueSizeNotPowerOfTwo {
                vif: vif_id(),
                queue_size: 1000
            }
        );
        assert!(err
            .to_string()
            .contains("queue_size 1000 is not a power of two"));
    }

    #[test]
    fn offload_dependencies_are_checked_on_the_spec() {
        let mut spec = spec();
        spec.offloads.csum = false;
        assert!(matches!(
            spec.validate(),
            Err(ModelError::OffloadDependency {
                offload: "tso4",
                requires: "csum",
                ..
            })
        ));
    }

    #[test]
    fn policy_names_are_checked() {
        let qos = VifSpec {
            qos: Some("gold plan".to_owned()),
            ..spec()
        };
        let err = qos.validate().unwrap_err();
        assert!(matches!(
            &err,
            ModelError::InvalidName {
                field: "qos",
                reason: NameError::BadChar { ch: ' ', at: 4, .. },
                ..
            }
        ));
        assert!(err
            .to_string()
            .starts_with("vif web-1: qos \"gold plan\" has ' '"));
        let mut spec = spec();
        spec.acl.egress = Some(String::new());
        let err = spec.validate().unwrap_err();
        assert!(matches!(
            &err,
            ModelError::InvalidName {
                field: "acl.egress",
                reason: NameError::Empty,
                ..
            }
        ));
        spec.acl.egress = None;
        spec.acl.ingress = Some("x".repeat(65));
        assert!(matches!(
            spec.validate(),
            Err(ModelError::InvalidName {
                field: "acl.ingress",
                reason: NameError::TooLong { len: 65, max: 64 },
                ..
            })
        ));
    }

    #[test]
    fn too_many_labels_are_refused() {
        let mut spec = spec();
        spec.labels = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        let err = spec.validate().unwrap_err();
        assert_eq!(
            err,
            ModelError::TooManyLabels {
                vif: vif_id(),
                count: 17,
                max: 16
            }
        );
        assert!(err
            .to_string()
            .contains("labels has 17 entries, more than 16"));
    }

    #[test]
    fn label_keys_and_values_are_checked() {
        let mut spec = spec();
        spec.labels.insert("team.name".to_owned(), "web".to_owned());
        assert!(matches!(
            spec.validate(),
            Err(ModelError::InvalidName {
                field: "label key",
                reason: NameError::BadChar { ch: '.', .. },
                ..
            })
        ));
        spec.labels.clear();
        spec.labels.insert("team".to_owned(), "x".repeat(257));
        let err = spec.validate().unwrap_err();
        assert!(matches!(
            err,
            ModelError::LabelValueTooLong {
                len: 257,
                max: 256,
                ..
            }
        ));
        assert!(err
            .to_string()
            .contains("labels.team value is 257 bytes long, more than 256"));
        spec.labels
            .insert("team".to_owned(), "web\nvif_fake 1".to_owned());
        let err = spec.validate().unwrap_err();
        assert!(matches!(
            err,
            ModelError::LabelValueControlChar {
                ch: '\n',
                at: 3,
                ..
            }
        ));
        assert!(err
            .to_string()
            .contains("labels.team value has control character"));
    }
}
