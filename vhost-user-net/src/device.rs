//! The virtio-net device a VIF presents: the feature bits it offers, the vhost-user protocol
//! features, the queue layout and the config space (`struct virtio_net_config`).
//!
//! Everything here is derived from the VIF spec alone, deterministically: a frontend that
//! reconnects after a daemon restart compares the features offered now with those it acked
//! before, and fails the device on any difference (DPDK vhost library guide, "the vhost supported
//! features must be exactly the same before and after the restart"; VPP-536). So nothing here
//! may depend on the host, the time or the order VIFs were created.
//!
//! What the guest acked is kept in [`Negotiated`], which the datapath reads (one `u64` load) to
//! decide per packet whether it may hand over partial checksums, TSO frames or several buffers.

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vif_core::mac::MacAddr;
use vif_core::model::VifSpec;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

/// Bit `n` of a feature word.
const fn bit(n: u32) -> u64 {
    1u64 << n
}

/// The feature bits the datapath implements. `Offloads::feature_bits` may name more (USO, UFO);
/// those are masked off here until the datapath can honour them, so the guest never acks a
/// feature we would then mishandle.
const DATAPATH_FEATURES: u64 = bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_ECN)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_ECN)
    | bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_RING_F_EVENT_IDX)
    | bit(VIRTIO_RING_F_INDIRECT_DESC);

/// Queues per queue pair: receiveq then transmitq (VIRTIO 1.2 § 5.1.2).
pub const QUEUES_PER_PAIR: usize = 2;
/// Index of the receive queue within a pair.
pub const RX_QUEUE: usize = 0;
/// Index of the transmit queue within a pair.
pub const TX_QUEUE: usize = 1;

/// Size of the config space we expose: `mac`, `status`, `max_virtqueue_pairs`, `mtu`
/// (VIRTIO 1.2 § 5.1.4). `speed`/`duplex` and the RSS fields follow only with
/// `SPEED_DUPLEX`/`RSS`, which we do not offer, so the driver must not read them.
pub const CONFIG_SPACE_LEN: usize = 12;

/// Byte ranges of `struct virtio_net_config` (VIRTIO 1.2 § 5.1.4); all fields little-endian.
mod config_field {
    pub const MAC: core::ops::Range<usize> = 0..6;
    pub const STATUS: core::ops::Range<usize> = 6..8;
    pub const MAX_VIRTQUEUE_PAIRS: core::ops::Range<usize> = 8..10;
    pub const MTU: core::ops::Range<usize> = 10..12;
}

/// The device a VIF spec describes. Cheap to copy; built once per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetDevice {
    pub mac: MacAddr,
    pub mtu: u16,
    pub queue_pairs: u16,
    pub queue_size: u16,
    features: u64,
}

impl NetDevice {
    pub fn from_spec(spec: &VifSpec) -> NetDevice {
        let mut features = bit(VIRTIO_F_VERSION_1)
            | bit(VIRTIO_NET_F_MAC)
            | bit(VIRTIO_NET_F_MTU)
            | bit(VIRTIO_NET_F_STATUS)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            | (spec.offloads.feature_bits() & DATAPATH_FEATURES);
        if spec.queue_pairs > 1 {
            features |= bit(VIRTIO_NET_F_MQ);
        }
        NetDevice {
            mac: spec.mac,
            mtu: spec.mtu,
            queue_pairs: spec.queue_pairs.max(1),
            queue_size: spec.queue_size,
            features,
        }
    }

    /// The virtio feature bits offered in `GET_FEATURES`.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The vhost-user protocol features offered in `GET_PROTOCOL_FEATURES`. `MQ` is offered even
    /// with one pair: the spec says backends "should always implement" it (vhost-user.rst,
    /// "Multiple queue support"), and it lets `GET_QUEUE_NUM` answer.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
    }

    pub fn num_queues(&self) -> usize {
        usize::from(self.queue_pairs) * QUEUES_PER_PAIR
    }

    /// One worker thread per queue pair; worker `i` serves queues `2i` (RX) and `2i + 1` (TX).
    /// `queue_pairs` is at most 16 (the model's bound), so the shift stays inside a `u64`; the
    /// `checked_shl` keeps that true for any value.
    pub fn queues_per_thread(&self) -> Vec<u64> {
        (0..u32::from(self.queue_pairs))
            .map(|pair| 0b11u64.checked_shl(2 * pair).unwrap_or(0))
            .collect()
    }

    /// The config space bytes (VIRTIO 1.2 § 5.1.4).
    pub fn config_space(&self) -> [u8; CONFIG_SPACE_LEN] {
        let mut config = [0u8; CONFIG_SPACE_LEN];
        config[config_field::MAC].copy_from_slice(self.mac.as_bytes());
        // The link of a VIF is up while the daemon serves it (§ 5.1.4.2: the device reports
        // `VIRTIO_NET_S_LINK_UP` in `status` when `VIRTIO_NET_F_STATUS` is offered).
        config[config_field::STATUS].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        config[config_field::MAX_VIRTQUEUE_PAIRS].copy_from_slice(&self.queue_pairs.to_le_bytes());
        config[config_field::MTU].copy_from_slice(&self.mtu.to_le_bytes());
        config
    }

    /// `GET_CONFIG`: the bytes `[offset, offset + size)` of the config space, or nothing when the
    /// range is not inside it. Both values come from the frontend and are not trusted: the range
    /// is checked with checked arithmetic, never clamped into something the frontend did not ask
    /// for.
    pub fn read_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = self.config_space();
        let range = usize::try_from(offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(size).ok()?)?;
            config.get(start..end)
        });
        range.map(<[u8]>::to_vec).unwrap_or_default()
    }
}

/// What the guest acked, as the datapath needs it. `Copy`, so each worker snapshots it once per
/// wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Negotiated {
    bits: u64,
}

impl Negotiated {
    pub const fn from_bits(bits: u64) -> Negotiated {
        Negotiated { bits }
    }

    pub const fn bits(&self) -> u64 {
        self.bits
    }

    const fn has(&self, feature: u32) -> bool {
        self.bits & bit(feature) != 0
    }

    /// `MRG_RXBUF`: one received frame may span several chains (VIRTIO 1.2 § 5.1.6.3.1).
    pub const fn mrg_rxbuf(&self) -> bool {
        self.has(VIRTIO_NET_F_MRG_RXBUF)
    }

    pub const fn event_idx(&self) -> bool {
        self.has(VIRTIO_RING_F_EVENT_IDX)
    }

    /// The guest may send partial checksums (`CSUM`).
    pub const fn host_csum(&self) -> bool {
        self.has(VIRTIO_NET_F_CSUM)
    }

    /// We may deliver partial checksums to the guest (`GUEST_CSUM`).
    pub const fn guest_csum(&self) -> bool {
        self.has(VIRTIO_NET_F_GUEST_CSUM)
    }

    pub const fn host_tso4(&self) -> bool {
        self.has(VIRTIO_NET_F_HOST_TSO4)
    }

    pub const fn host_tso6(&self) -> bool {
        self.has(VIRTIO_NET_F_HOST_TSO6)
    }

    pub const fn host_ecn(&self) -> bool {
        self.has(VIRTIO_NET_F_HOST_ECN)
    }

    pub const fn host_ufo(&self) -> bool {
        self.has(VIRTIO_NET_F_HOST_UFO)
    }

    pub const fn guest_tso4(&self) -> bool {
        self.has(VIRTIO_NET_F_GUEST_TSO4)
    }

    pub const fn guest_tso6(&self) -> bool {
        self.has(VIRTIO_NET_F_GUEST_TSO6)
    }

    pub const fn guest_ecn(&self) -> bool {
        self.has(VIRTIO_NET_F_GUEST_ECN)
    }

    pub const fn guest_ufo(&self) -> bool {
        self.has(VIRTIO_NET_F_GUEST_UFO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vif_core::model::{LocalUplink, Offloads, UplinkSpec, VifId};

    fn spec(queue_pairs: u16, offloads: Offloads) -> VifSpec {
        let mut spec = VifSpec::new(
            VifId::new("web-1").unwrap(),
            "52:54:00:12:34:56".parse().unwrap(),
            UplinkSpec::Local(LocalUplink {
                segment: "seg".into(),
            }),
        );
        spec.queue_pairs = queue_pairs;
        spec.mtu = 9000;
        spec.offloads = offloads;
        spec
    }

    #[test]
    fn offers_the_contract_features() {
        let device = NetDevice::from_spec(&spec(1, Offloads::default()));
        let features = device.features();
        for feature in [
            VIRTIO_F_VERSION_1,
            VIRTIO_NET_F_MAC,
            VIRTIO_NET_F_MTU,
            VIRTIO_NET_F_STATUS,
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
            VIRTIO_NET_F_MRG_RXBUF,
            VIRTIO_RING_F_EVENT_IDX,
            VIRTIO_RING_F_INDIRECT_DESC,
        ] {
            assert_ne!(features & bit(feature), 0, "feature bit {feature}");
        }
        assert_ne!(
            features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(),
            0
        );
        assert_eq!(features & bit(VIRTIO_NET_F_MQ), 0, "MQ only with > 1 pair");
        assert_ne!(
            NetDevice::from_spec(&spec(2, Offloads::default())).features() & bit(VIRTIO_NET_F_MQ),
            0
        );
    }

    #[test]
    fn features_are_deterministic_and_follow_the_spec() {
        let a = NetDevice::from_spec(&spec(4, Offloads::default()));
        let b = NetDevice::from_spec(&spec(4, Offloads::default()));
        assert_eq!(a.features(), b.features());
        let none = NetDevice::from_spec(&spec(1, Offloads::NONE)).features();
        assert_eq!(none & DATAPATH_FEATURES, 0);
        // USO is never offered until the datapath implements it, whatever the spec says.
        let uso = Offloads {
            uso: true,
            ..Offloads::default()
        };
        assert_eq!(
            NetDevice::from_spec(&spec(1, uso)).features() & bit(56),
            0,
            "HOST_USO"
        );
    }

    #[test]
    fn queue_layout() {
        let device = NetDevice::from_spec(&spec(3, Offloads::default()));
        assert_eq!(device.num_queues(), 6);
        assert_eq!(device.queues_per_thread(), vec![0b11, 0b1100, 0b11_0000]);
    }

    #[test]
    fn config_space_layout() {
        // VIRTIO 1.2 § 5.1.4: mac, status (LINK_UP = 1), max_virtqueue_pairs, mtu; little-endian.
        let device = NetDevice::from_spec(&spec(2, Offloads::default()));
        assert_eq!(
            device.config_space(),
            [0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 1, 0, 2, 0, 0x28, 0x23]
        );
        assert_eq!(device.read_config(6, 2), vec![1, 0]);
        assert_eq!(device.read_config(10, 2), vec![0x28, 0x23]);
    }

    #[test]
    fn read_config_rejects_hostile_ranges() {
        let device = NetDevice::from_spec(&spec(1, Offloads::default()));
        assert!(device.read_config(0, 13).is_empty());
        assert!(device.read_config(12, 1).is_empty());
        assert!(device.read_config(u32::MAX, 2).is_empty());
        assert!(device.read_config(4, u32::MAX).is_empty());
        assert!(device.read_config(12, 0).is_empty());
        assert_eq!(device.read_config(0, 12).len(), 12);
    }

    #[test]
    fn negotiated_reads_bits() {
        let acked = Negotiated::from_bits(bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_NET_F_CSUM));
        assert!(acked.mrg_rxbuf() && acked.host_csum());
        assert!(!acked.guest_csum() && !acked.event_idx() && !acked.guest_tso4());
    }
}
