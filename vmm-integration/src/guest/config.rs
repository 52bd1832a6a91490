//! What the virtual guest asks for (`GuestConfig`, `TxLayout`) and what it learned from the
//! device (`NetConfig`, the virtio-net config space of VIRTIO 1.2 § 5.1.4).
//!
//! Feature bits are offered by the device and accepted by the driver (VIRTIO 1.2 § 2.2): the
//! guest acks `offered & accept_features` and fails the handshake if `required_features` are not
//! all offered. The masks in [`feature`] name the bits a test usually toggles.

use std::time::Duration;

use vif_core::mac::MacAddr;

/// Feature bit masks (VIRTIO 1.2 § 5.1.3, § 6), as `1 << bit`.
pub mod feature {
    use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
    use virtio_bindings::virtio_net as net;
    use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

    const fn bit(b: u32) -> u64 {
        1u64 << b
    }

    pub const CSUM: u64 = bit(net::VIRTIO_NET_F_CSUM);
    pub const GUEST_CSUM: u64 = bit(net::VIRTIO_NET_F_GUEST_CSUM);
    pub const MTU: u64 = bit(net::VIRTIO_NET_F_MTU);
    pub const MAC: u64 = bit(net::VIRTIO_NET_F_MAC);
    pub const GUEST_TSO4: u64 = bit(net::VIRTIO_NET_F_GUEST_TSO4);
    pub const GUEST_TSO6: u64 = bit(net::VIRTIO_NET_F_GUEST_TSO6);
    pub const GUEST_ECN: u64 = bit(net::VIRTIO_NET_F_GUEST_ECN);
    pub const GUEST_UFO: u64 = bit(net::VIRTIO_NET_F_GUEST_UFO);
    pub const HOST_TSO4: u64 = bit(net::VIRTIO_NET_F_HOST_TSO4);
    pub const HOST_TSO6: u64 = bit(net::VIRTIO_NET_F_HOST_TSO6);
    pub const HOST_ECN: u64 = bit(net::VIRTIO_NET_F_HOST_ECN);
    pub const HOST_UFO: u64 = bit(net::VIRTIO_NET_F_HOST_UFO);
    pub const MRG_RXBUF: u64 = bit(net::VIRTIO_NET_F_MRG_RXBUF);
    pub const STATUS: u64 = bit(net::VIRTIO_NET_F_STATUS);
    pub const CTRL_VQ: u64 = bit(net::VIRTIO_NET_F_CTRL_VQ);
    pub const MQ: u64 = bit(net::VIRTIO_NET_F_MQ);
    pub const GUEST_USO4: u64 = bit(net::VIRTIO_NET_F_GUEST_USO4);
    pub const GUEST_USO6: u64 = bit(net::VIRTIO_NET_F_GUEST_USO6);
    pub const HOST_USO: u64 = bit(net::VIRTIO_NET_F_HOST_USO);
    pub const INDIRECT_DESC: u64 = bit(VIRTIO_RING_F_INDIRECT_DESC);
    pub const EVENT_IDX: u64 = bit(VIRTIO_RING_F_EVENT_IDX);
    pub const VERSION_1: u64 = bit(VIRTIO_F_VERSION_1);
    /// `VHOST_USER_F_PROTOCOL_FEATURES`: a vhost-user bit, not a virtio one (vhost-user spec
    /// "Protocol features"); rings start disabled until `SET_VRING_ENABLE` when it is acked.
    pub const PROTOCOL_FEATURES: u64 = 1 << 30;

    /// Everything the guest knows how to drive. No control queue: the guest has no `CTRL_VQ`.
    pub const DRIVER_SUPPORTED: u64 = CSUM
        | GUEST_CSUM
        | MTU
        | MAC
        | GUEST_TSO4
        | GUEST_TSO6
        | GUEST_ECN
        | GUEST_UFO
        | HOST_TSO4
        | HOST_TSO6
        | HOST_ECN
        | HOST_UFO
        | MRG_RXBUF
        | STATUS
        | MQ
        | GUEST_USO4
        | GUEST_USO6
        | HOST_USO
        | INDIRECT_DESC
        | EVENT_IDX
        | VERSION_1;

    /// Names of the bits above, for error messages.
    pub fn name(mask: u64) -> &'static str {
        match mask {
            CSUM => "VIRTIO_NET_F_CSUM",
            GUEST_CSUM => "VIRTIO_NET_F_GUEST_CSUM",
            MTU => "VIRTIO_NET_F_MTU",
            MAC => "VIRTIO_NET_F_MAC",
            MRG_RXBUF => "VIRTIO_NET_F_MRG_RXBUF",
            STATUS => "VIRTIO_NET_F_STATUS",
            MQ => "VIRTIO_NET_F_MQ",
            INDIRECT_DESC => "VIRTIO_RING_F_INDIRECT_DESC",
            EVENT_IDX => "VIRTIO_RING_F_EVENT_IDX",
            VERSION_1 => "VIRTIO_F_VERSION_1",
            PROTOCOL_FEATURES => "VHOST_USER_F_PROTOCOL_FEATURES",
            _ => "a feature bit",
        }
    }
}

/// How `send` lays a packet (12-byte header + frame) out in descriptors.
///
/// Devices must accept any layout (VIRTIO 1.2 § 2.7.4, "Message Framing"); Linux puts the header
/// in its own descriptor when it cannot push it in front of the frame, modern drivers send one
/// contiguous buffer. Both must work, so tests choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLayout {
    /// The header gets a descriptor of its own.
    pub header_separate: bool,
    /// The frame is split across this many descriptors of near-equal length (0 is taken as 1;
    /// never more than one per byte). With `header_separate == false` the header shares the
    /// first one.
    pub frame_segments: u16,
    /// The chain is written to an indirect table (VIRTIO 1.2 § 2.7.5.3); needs `INDIRECT_DESC`.
    pub indirect: bool,
}

impl TxLayout {
    /// Header and frame in one descriptor.
    pub const CONTIGUOUS: TxLayout = TxLayout {
        header_separate: false,
        frame_segments: 1,
        indirect: false,
    };
    /// Header in its own descriptor, frame in a second, as Linux's `xmit_skb` without `can_push`.
    pub const HEADER_SEPARATE: TxLayout = TxLayout {
        header_separate: true,
        frame_segments: 1,
        indirect: false,
    };

    /// Same layout, written through an indirect table.
    pub const fn indirect(self) -> TxLayout {
        TxLayout {
            indirect: true,
            ..self
        }
    }
}

impl Default for TxLayout {
    fn default() -> Self {
        TxLayout::CONTIGUOUS
    }
}

/// What the guest asks for. `Default` is one queue pair of 256 entries, 64 MiB of memory and
/// every feature the guest supports.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// Guest-physical address of the single RAM region. Not 0, so that address 0 and other low
    /// addresses are outside guest memory for hostile tests.
    pub mem_base: u64,
    /// Bytes of guest RAM (a memfd; pages are only allocated when touched).
    pub mem_size: u64,
    /// Entries per virtqueue; a power of two (VIRTIO 1.2 § 2.7).
    pub queue_size: u16,
    /// Queue pairs to set up; the handshake fails if the device offers fewer.
    pub queue_pairs: u16,
    /// Device features to accept when offered (masks from [`feature`]).
    pub accept_features: u64,
    /// Features the device must offer, else the handshake fails.
    pub required_features: u64,
    /// Negotiate `VHOST_USER_F_PROTOCOL_FEATURES` when offered (rings then start disabled until
    /// `SET_VRING_ENABLE`). Off tests the legacy path where `SET_FEATURES` enables every ring.
    pub use_protocol_features: bool,
    /// Default layout of `send`.
    pub tx_layout: TxLayout,
    /// Initial capacity of each per-descriptor TX buffer; grows on demand.
    pub tx_buf_len: u32,
    /// How long to wait for the backend's socket (connect) and for each vhost-user reply.
    pub reply_timeout: Duration,
    /// Default deadline of blocking helpers (`send` on a full ring, `recv_timeout` callers
    /// that pass none).
    pub op_timeout: Duration,
}

impl Default for GuestConfig {
    fn default() -> Self {
        GuestConfig {
            mem_base: 0x4000_0000,
            mem_size: 64 << 20,
            queue_size: 256,
            queue_pairs: 1,
            accept_features: feature::DRIVER_SUPPORTED,
            required_features: feature::VERSION_1,
            use_protocol_features: true,
            tx_layout: TxLayout::CONTIGUOUS,
            tx_buf_len: 2048,
            reply_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(5),
        }
    }
}

impl GuestConfig {
    /// Accepts `mask` when offered, or stops accepting it.
    pub fn with_feature(mut self, mask: u64, accept: bool) -> Self {
        if accept {
            self.accept_features |= mask;
        } else {
            self.accept_features &= !mask;
        }
        self
    }

    pub fn with_queue_pairs(mut self, queue_pairs: u16) -> Self {
        self.queue_pairs = queue_pairs;
        self
    }

    pub fn with_queue_size(mut self, queue_size: u16) -> Self {
        self.queue_size = queue_size;
        self
    }

    pub fn with_mem_size(mut self, mem_size: u64) -> Self {
        self.mem_size = mem_size;
        self
    }

    pub fn with_tx_layout(mut self, tx_layout: TxLayout) -> Self {
        self.tx_layout = tx_layout;
        self
    }
}

/// Bytes of `struct virtio_net_config` the guest reads: `mac`, `status`, `max_virtqueue_pairs`,
/// `mtu` (VIRTIO 1.2 § 5.1.4). The backend must answer `GET_CONFIG(offset 0, size 12)`.
pub const NET_CONFIG_READ_LEN: usize = 12;

/// The device's virtio-net config space; a field is `None` when the feature that makes it valid
/// (VIRTIO 1.2 § 5.1.4) was not negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// Valid with `VIRTIO_NET_F_MAC`.
    pub mac: Option<MacAddr>,
    /// Valid with `VIRTIO_NET_F_STATUS`; bit 0 is `VIRTIO_NET_S_LINK_UP`.
    pub status: Option<u16>,
    /// Valid with `VIRTIO_NET_F_MQ`.
    pub max_virtqueue_pairs: Option<u16>,
    /// Valid with `VIRTIO_NET_F_MTU`.
    pub mtu: Option<u16>,
    /// The raw bytes read, for tests that check the layout itself.
    pub raw: [u8; NET_CONFIG_READ_LEN],
}

impl NetConfig {
    /// Decodes the config space read with `GET_CONFIG`, given the negotiated features.
    pub fn parse(raw: [u8; NET_CONFIG_READ_LEN], features: u64) -> NetConfig {
        let le16 = |mask: u64, at: usize| {
            (features & mask != 0).then(|| u16::from_le_bytes([raw[at], raw[at + 1]]))
        };
        NetConfig {
            mac: (features & feature::MAC != 0)
                .then(|| MacAddr([raw[0], raw[1], raw[2], raw[3], raw[4], raw[5]])),
            status: le16(feature::STATUS, 6),
            max_virtqueue_pairs: le16(feature::MQ, 8),
            mtu: le16(feature::MTU, 10),
            raw,
        }
    }

    /// `VIRTIO_NET_S_LINK_UP` (VIRTIO 1.2 § 5.1.4); `None` without `STATUS`.
    pub fn link_up(&self) -> Option<bool> {
        self.status.map(|status| status & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_space_fields_follow_features() {
        // Built by hand from VIRTIO 1.2 § 5.1.4: MAC 52:54:00:12:34:56, status LINK_UP,
        // 4 queue pairs, MTU 9000, all little-endian.
        let raw = [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0, 4, 0, 0x28, 0x23];
        let all = NetConfig::parse(
            raw,
            feature::MAC | feature::STATUS | feature::MQ | feature::MTU,
        );
        assert_eq!(all.mac, Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])));
        assert_eq!(all.link_up(), Some(true));
        assert_eq!(all.max_virtqueue_pairs, Some(4));
        assert_eq!(all.mtu, Some(9000));
        let none = NetConfig::parse(raw, 0);
        assert_eq!((none.mac, none.status, none.mtu), (None, None, None));
    }

    #[test]
    fn with_feature_toggles_the_mask() {
        let cfg = GuestConfig::default().with_feature(feature::EVENT_IDX, false);
        assert_eq!(cfg.accept_features & feature::EVENT_IDX, 0);
        let cfg = cfg.with_feature(feature::EVENT_IDX, true);
        assert_ne!(cfg.accept_features & feature::EVENT_IDX, 0);
    }
}
