//! The label dimensions of the counters: why a frame was dropped ([`DropReason`]), how long it was
//! ([`SizeBin`]) and whom it was for ([`CastKind`]). Each has a fixed set of values with stable
//! Prometheus label strings, and an index into the counter arrays of [`super::QueueStats`].

use std::fmt;

use crate::mac::MacAddr;

/// Why the datapath dropped a frame. Each reason is one `reason` label value on the drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The frame is not valid Ethernet/IP: too short, or a length field disagrees with the buffer.
    Malformed,
    /// The virtio-net header's offload metadata does not describe the frame (VIRTIO 1.2 § 5.1.6.2).
    BadOffload,
    /// The descriptor chain is invalid: outside guest memory, looped, too long, wrong direction
    /// (VIRTIO 1.2 § 2.7.4, § 2.7.5).
    QueueError,
    /// An ACL rule denied it.
    AclDeny,
    /// The guest used a source MAC or IP address it does not own.
    Spoofed,
    /// The frame is longer than the MTU of the VIF or uplink it goes through.
    MtuExceeded,
    /// The guest posted no receive buffer for the frame (receiveq empty, or the receiving port's
    /// inbox full).
    NoRxBuffer,
    /// The guest's receive buffer chain cannot hold the frame and `MRG_RXBUF` is off.
    RxBufferTooSmall,
    /// A policer dropped it: traffic toward the guest cannot be pushed back, so it is dropped
    /// rather than throttled.
    RateLimited,
    /// The uplink failed to send it (socket error, no underlay route, VF gone).
    UplinkError,
    /// The destination MAC is unknown and flooding is off.
    NoRoute,
    /// The destination is the port the frame came in on: a bridge never sends a frame back to its
    /// reception port (IEEE 802.1Q-2018 § 8.6.1).
    Hairpin,
    /// The destination port is not serving: no frontend connected, or its queue is disabled (a
    /// started but disabled ring "must process and discard any TX packets", vhost-user spec).
    PortDown,
}

impl DropReason {
    /// Every reason, in [`index`](Self::index) order.
    pub const ALL: [DropReason; 13] = [
        DropReason::Malformed,
        DropReason::BadOffload,
        DropReason::QueueError,
        DropReason::AclDeny,
        DropReason::Spoofed,
        DropReason::MtuExceeded,
        DropReason::NoRxBuffer,
        DropReason::RxBufferTooSmall,
        DropReason::RateLimited,
        DropReason::UplinkError,
        DropReason::NoRoute,
        DropReason::Hairpin,
        DropReason::PortDown,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The position of this reason in [`ALL`](Self::ALL) and in drop counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The Prometheus label value: snake_case, stable across releases.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadOffload => "bad_offload",
            DropReason::QueueError => "queue_error",
            DropReason::AclDeny => "acl_deny",
            DropReason::Spoofed => "spoofed",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::NoRxBuffer => "no_rx_buffer",
            DropReason::RxBufferTooSmall => "rx_buffer_too_small",
            DropReason::RateLimited => "rate_limited",
            DropReason::UplinkError => "uplink_error",
            DropReason::NoRoute => "no_route",
            DropReason::Hairpin => "hairpin",
            DropReason::PortDown => "port_down",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Frame length bins, as DPDK's `rte_vhost` per-virtqueue stats (`vhost_queue_stats_update`)
/// define them, so numbers compare. Lengths exclude the FCS, which virtio frames do not carry, so
/// a minimum-size Ethernet frame (64 bytes with FCS) shows up as 60 bytes, in `Undersize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SizeBin {
    Undersize,
    Size64,
    Size65To127,
    Size128To255,
    Size256To511,
    Size512To1023,
    Size1024To1518,
    Size1519Max,
}

impl SizeBin {
    pub const ALL: [SizeBin; 8] = [
        SizeBin::Undersize,
        SizeBin::Size64,
        SizeBin::Size65To127,
        SizeBin::Size128To255,
        SizeBin::Size256To511,
        SizeBin::Size512To1023,
        SizeBin::Size1024To1518,
        SizeBin::Size1519Max,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The bin of a frame of `len` bytes, without a loop: between 65 and 1023 the bins are powers
    /// of two, so the bin follows from the position of the highest set bit.
    pub const fn of(len: usize) -> SizeBin {
        match len {
            0..=63 => SizeBin::Undersize,
            64 => SizeBin::Size64,
            65..=1023 => match len.ilog2() {
                6 => SizeBin::Size65To127,
                7 => SizeBin::Size128To255,
                8 => SizeBin::Size256To511,
                _ => SizeBin::Size512To1023,
            },
            1024..=1518 => SizeBin::Size1024To1518,
            _ => SizeBin::Size1519Max,
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    /// The Prometheus label value, after DPDK's xstats names (`size_65_127_packets`).
    pub const fn as_str(self) -> &'static str {
        match self {
            SizeBin::Undersize => "undersize",
            SizeBin::Size64 => "64",
            SizeBin::Size65To127 => "65_127",
            SizeBin::Size128To255 => "128_255",
            SizeBin::Size256To511 => "256_511",
            SizeBin::Size512To1023 => "512_1023",
            SizeBin::Size1024To1518 => "1024_1518",
            SizeBin::Size1519Max => "1519_max",
        }
    }
}

/// Whether a frame's destination MAC is unicast, multicast or broadcast (IEEE 802-2014 § 8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CastKind {
    Unicast,
    Multicast,
    Broadcast,
}

impl CastKind {
    pub const ALL: [CastKind; 3] = [CastKind::Unicast, CastKind::Multicast, CastKind::Broadcast];

    pub fn of(dst: MacAddr) -> CastKind {
        if dst.is_broadcast() {
            CastKind::Broadcast
        } else if dst.is_multicast() {
            CastKind::Multicast
        } else {
            CastKind::Unicast
        }
    }

    /// The Prometheus label value, after VPP's `rx-unicast`/`rx-multicast`/`rx-broadcast`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CastKind::Unicast => "unicast",
            CastKind::Multicast => "multicast",
            CastKind::Broadcast => "broadcast",
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn drop_reasons_have_distinct_snake_case_labels() {
        assert_eq!(DropReason::COUNT, DropReason::ALL.len());
        let labels: BTreeSet<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), DropReason::COUNT);
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
            let label = reason.as_str();
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && !label.starts_with('_'),
                "{label}"
            );
            assert_eq!(reason.to_string(), label);
        }
        assert_eq!(DropReason::AclDeny.as_str(), "acl_deny");
    }

    #[test]
    fn size_bins_have_distinct_labels_in_order() {
        let labels: BTreeSet<&str> = SizeBin::ALL.iter().map(|b| b.as_str()).collect();
        assert_eq!(labels.len(), SizeBin::COUNT);
        for (i, bin) in SizeBin::ALL.iter().enumerate() {
            assert_eq!(bin.index(), i);
        }
    }

    #[test]
    fn size_bin_boundaries() {
        // The edges of DPDK's bins, both sides of each.
        let cases = [
            (0, SizeBin::Undersize),
            (60, SizeBin::Undersize),
            (63, SizeBin::Undersize),
            (64, SizeBin::Size64),
            (65, SizeBin::Size65To127),
            (127, SizeBin::Size65To127),
            (128, SizeBin::Size128To255),
            (255, SizeBin::Size128To255),
            (256, SizeBin::Size256To511),
            (511, SizeBin::Size256To511),
            (512, SizeBin::Size512To1023),
            (1023, SizeBin::Size512To1023),
            (1024, SizeBin::Size1024To1518),
            (1518, SizeBin::Size1024To1518),
            (1519, SizeBin::Size1519Max),
            (65535 + 12, SizeBin::Size1519Max),
            (usize::MAX, SizeBin::Size1519Max),
        ];
        for (len, bin) in cases {
            assert_eq!(SizeBin::of(len), bin, "len {len}");
        }
    }

    /// The obvious definition, to check `SizeBin::of` against.
    pub(in crate::stats) fn reference_bin(len: usize) -> SizeBin {
        let bounds = [
            (63, SizeBin::Undersize),
            (64, SizeBin::Size64),
            (127, SizeBin::Size65To127),
            (255, SizeBin::Size128To255),
            (511, SizeBin::Size256To511),
            (1023, SizeBin::Size512To1023),
            (1518, SizeBin::Size1024To1518),
        ];
        bounds
            .iter()
            .find(|(upper, _)| len <= *upper)
            .map_or(SizeBin::Size1519Max, |&(_, bin)| bin)
    }

    proptest! {
        #[test]
        fn size_bin_matches_reference(len in 0usize..4096) {
            prop_assert_eq!(SizeBin::of(len), reference_bin(len));
        }
    }

    #[test]
    fn cast_kind_from_destination() {
        assert_eq!(CastKind::of(MacAddr::BROADCAST), CastKind::Broadcast);
        assert_eq!(
            CastKind::of(MacAddr([0x33, 0x33, 0, 0, 0, 1])),
            CastKind::Multicast
        );
        assert_eq!(
            CastKind::of(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            CastKind::Unicast
        );
        let labels: BTreeSet<&str> = CastKind::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), 3);
    }
}
