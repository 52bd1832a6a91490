//! Which virtio-net offloads and ring features a VIF's device offers, and their feature bits.
//!
//! Each offload is offered in both directions: `tso4` means the device accepts TSOv4 frames from
//! the guest (`VIRTIO_NET_F_HOST_TSO4`) and may deliver them to it (`VIRTIO_NET_F_GUEST_TSO4`).
//! The guest driver acks a subset; the daemon masks further by what its datapath supports. The
//! feature set must stay the same across daemon restarts for one VIF: a frontend that reconnects
//! fails when the backend offers different bits (DPDK vhost docs, VPP-536), which is why it lives
//! in the persistent spec and not in a runtime switch.
//!
//! Defaults: everything on except `ufo` (removed from Linux 4.14; guests no longer send UFO, and
//! delivering fragments to a guest that acked it only costs us) and `uso` (needs Linux 6.2 guests;
//! opt-in until the software segmentation path has seen real traffic).

use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::names::VifId;

/// virtio-net and ring feature bit numbers (VIRTIO 1.2 § 5.1.3 and § 6) that [`Offloads`] maps to.
pub mod feature {
    pub const CSUM: u32 = 0;
    pub const GUEST_CSUM: u32 = 1;
    pub const GUEST_TSO4: u32 = 7;
    pub const GUEST_TSO6: u32 = 8;
    pub const GUEST_ECN: u32 = 9;
    pub const GUEST_UFO: u32 = 10;
    pub const HOST_TSO4: u32 = 11;
    pub const HOST_TSO6: u32 = 12;
    pub const HOST_ECN: u32 = 13;
    pub const HOST_UFO: u32 = 14;
    pub const MRG_RXBUF: u32 = 15;
    pub const RING_INDIRECT_DESC: u32 = 28;
    pub const RING_EVENT_IDX: u32 = 29;
    pub const GUEST_USO4: u32 = 54;
    pub const GUEST_USO6: u32 = 55;
    pub const HOST_USO: u32 = 56;
}

/// The offloads a VIF's virtio-net device offers. Unset fields take their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Offloads {
    /// Partial checksums in both directions (`CSUM`, `GUEST_CSUM`). Every segmentation offload
    /// requires it.
    pub csum: bool,
    /// TCP segmentation over IPv4 (`HOST_TSO4`, `GUEST_TSO4`).
    pub tso4: bool,
    /// TCP segmentation over IPv6 (`HOST_TSO6`, `GUEST_TSO6`).
    pub tso6: bool,
    /// TSO frames may carry ECN CWR (`HOST_ECN`, `GUEST_ECN`).
    pub ecn: bool,
    /// UDP segmentation (`HOST_USO`, `GUEST_USO4`, `GUEST_USO6`).
    pub uso: bool,
    /// UDP fragmentation offload (`HOST_UFO`, `GUEST_UFO`), deprecated.
    pub ufo: bool,
    /// Mergeable receive buffers: a received frame may span several descriptor chains.
    pub mrg_rxbuf: bool,
    /// `VIRTIO_RING_F_EVENT_IDX`: notification suppression by index (VIRTIO 1.2 § 2.7.10).
    pub event_idx: bool,
    /// `VIRTIO_RING_F_INDIRECT_DESC`: indirect descriptor tables (VIRTIO 1.2 § 2.7.5.3).
    pub indirect_desc: bool,
}

impl Default for Offloads {
    fn default() -> Self {
        Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            ecn: true,
            uso: false,
            ufo: false,
            mrg_rxbuf: true,
            event_idx: true,
            indirect_desc: true,
        }
    }
}

impl Offloads {
    /// No offloads and no optional ring features: the most conservative device.
    pub const NONE: Offloads = Offloads {
        csum: false,
        tso4: false,
        tso6: false,
        ecn: false,
        uso: false,
        ufo: false,
        mrg_rxbuf: false,
        event_idx: false,
        indirect_desc: false,
    };

    /// The feature bits these offloads add to a device's feature set. The daemon adds the
    /// non-offload bits itself (`VERSION_1`, `MTU`, `MAC`, `MQ`, ...).
    pub fn feature_bits(&self) -> u64 {
        use feature::*;
        let on = |enabled: bool, bits: &[u32]| -> u64 {
            if enabled {
                bits.iter().fold(0, |acc, bit| acc | (1u64 << bit))
            } else {
                0
            }
        };
        on(self.csum, &[CSUM, GUEST_CSUM])
            | on(self.tso4, &[HOST_TSO4, GUEST_TSO4])
            | on(self.tso6, &[HOST_TSO6, GUEST_TSO6])
            | on(self.ecn, &[HOST_ECN, GUEST_ECN])
            | on(self.uso, &[HOST_USO, GUEST_USO4, GUEST_USO6])
            | on(self.ufo, &[HOST_UFO, GUEST_UFO])
            | on(self.mrg_rxbuf, &[MRG_RXBUF])
            | on(self.event_idx, &[RING_EVENT_IDX])
            | on(self.indirect_desc, &[RING_INDIRECT_DESC])
    }

    /// Checks the dependencies VIRTIO 1.2 § 5.1.3.1 puts between the bits: a device must not offer
    /// `HOST_TSO4`, `HOST_TSO6`, `HOST_UFO` or `HOST_USO` without `CSUM` (and likewise for the
    /// `GUEST_` bits with `GUEST_CSUM`), nor `HOST_ECN` without `HOST_TSO4` or `HOST_TSO6`.
    pub fn validate(&self, vif: &VifId) -> Result<(), ModelError> {
        let needs_csum = [
            (self.tso4, "tso4"),
            (self.tso6, "tso6"),
            (self.uso, "uso"),
            (self.ufo, "ufo"),
        ];
        if !self.csum {
            if let Some(&(_, offload)) = needs_csum.iter().find(|(on, _)| *on) {
                return Err(ModelError::OffloadDependency {
                    vif: vif.clone(),
                    offload,
                    requires: "csum",
                });
            }
        }
        if self.ecn && !(self.tso4 || self.tso6) {
            return Err(ModelError::OffloadDependency {
                vif: vif.clone(),
                offload: "ecn",
                requires: "tso4 or tso6",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vif() -> VifId {
        VifId::new("web-1").unwrap()
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(Offloads::default().validate(&vif()), Ok(()));
        assert_eq!(Offloads::NONE.validate(&vif()), Ok(()));
    }

    #[test]
    fn segmentation_requires_csum() {
        for (offloads, name) in [
            (
                Offloads {
                    tso4: true,
                    ..Offloads::NONE
                },
                "tso4",
            ),
            (
                Offloads {
                    tso6: true,
                    ..Offloads::NONE
                },
                "tso6",
            ),
            (
                Offloads {
                    uso: true,
                    ..Offloads::NONE
                },
                "uso",
            ),
            (
                Offloads {
                    ufo: true,
                    ..Offloads::NONE
                },
                "ufo",
            ),
        ] {
            let err = offloads.validate(&vif()).unwrap_err();
            assert_eq!(
                err,
                ModelError::OffloadDependency {
                    vif: vif(),
                    offload: name,
                    requires: "csum"
                }
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "vif web-1: offloads.{name} requires offloads.csum \
                     (VIRTIO 1.2 § 5.1.3.1 feature bit requirements)"
                )
            );
        }
    }

    #[test]
    fn ecn_requires_tso() {
        let offloads = Offloads {
            csum: true,
            ecn: true,
            ..Offloads::NONE
        };
        let err = offloads.validate(&vif()).unwrap_err();
        assert!(matches!(
            err,
            ModelError::OffloadDependency {
                offload: "ecn",
                requires: "tso4 or tso6",
                ..
            }
        ));
        assert!(err
            .to_string()
            .contains("offloads.ecn requires offloads.tso4 or tso6"));
    }

    #[test]
    fn feature_bits_match_the_spec_numbers() {
        assert_eq!(Offloads::NONE.feature_bits(), 0);
        let csum_only = Offloads {
            csum: true,
            ..Offloads::NONE
        };
        assert_eq!(csum_only.feature_bits(), 0b11);
        // Defaults: CSUM, GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN, HOST_TSO4/6, HOST_ECN, MRG_RXBUF,
        // INDIRECT_DESC, EVENT_IDX; as Linux's virtio_net.h and virtio_ring.h number them.
        let expected = (1 << 0)
            | (1 << 1)
            | (1 << 7)
            | (1 << 8)
            | (1 << 9)
            | (1 << 11)
            | (1 << 12)
            | (1 << 13)
            | (1 << 15)
            | (1 << 28)
            | (1 << 29);
        assert_eq!(Offloads::default().feature_bits(), expected);
        let uso = Offloads {
            csum: true,
            uso: true,
            ..Offloads::NONE
        };
        assert_eq!(uso.feature_bits(), 0b11 | (0b111 << 54));
    }
}
