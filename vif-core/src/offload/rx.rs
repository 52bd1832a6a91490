//! What a receiving guest gets: the virtio-net header for a frame, decided from how the frame
//! arrived and what the guest negotiated (VIRTIO 1.2 § 5.1.6.4).
//!
//! The decision is made once, here; [`RxPlan`] tells the datapath exactly which of three actions
//! to take (copy as is, complete the checksum first, or segment first) and carries the header to
//! write, so `rx.rs` in the daemon never re-decides. `num_buffers` is left 0: with `MRG_RXBUF`
//! the receive path fills it in once it knows how many buffers the frame took.

use super::csum::CsumRange;
use super::header::{VirtioNetHdr, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM};
use super::segment::SegmentCsum;
use super::validate::{has_feature, Gso, GsoKind, IpVersion, TxOffload};

/// What the receiving guest negotiated (its `GUEST_*` feature bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxOffloadCaps {
    /// `VIRTIO_NET_F_GUEST_CSUM`: accepts partial checksums and `DATA_VALID`.
    pub guest_csum: bool,
    pub guest_tso4: bool,
    pub guest_tso6: bool,
    pub guest_ecn: bool,
    pub guest_ufo: bool,
    pub guest_uso4: bool,
    pub guest_uso6: bool,
}

impl RxOffloadCaps {
    /// A guest that negotiated nothing: it gets plain, fully checksummed frames.
    pub const NONE: RxOffloadCaps = RxOffloadCaps {
        guest_csum: false,
        guest_tso4: false,
        guest_tso6: false,
        guest_ecn: false,
        guest_ufo: false,
        guest_uso4: false,
        guest_uso6: false,
    };

    /// The caps from the feature bits the driver acked.
    pub fn from_features(acked: u64) -> RxOffloadCaps {
        use crate::model::offloads::feature::*;
        let has = |bit| has_feature(acked, bit);
        RxOffloadCaps {
            guest_csum: has(GUEST_CSUM),
            guest_tso4: has(GUEST_TSO4),
            guest_tso6: has(GUEST_TSO6),
            guest_ecn: has(GUEST_ECN),
            guest_ufo: has(GUEST_UFO),
            guest_uso4: has(GUEST_USO4),
            guest_uso6: has(GUEST_USO6),
        }
    }

    /// True when the guest accepts `gso` as one large frame (§ 5.1.6.4.1: a GSO type only with
    /// its `GUEST_*` feature, the ECN bit only with `GUEST_ECN`, and NEEDS_CSUM, hence
    /// `GUEST_CSUM`, with any GSO type).
    fn accepts(&self, gso: &Gso) -> bool {
        let kind = match gso.kind() {
            GsoKind::TcpV4 => self.guest_tso4,
            GsoKind::TcpV6 => self.guest_tso6,
            GsoKind::Ufo => self.guest_ufo,
            GsoKind::Uso => match gso.ip() {
                IpVersion::V4 => self.guest_uso4,
                IpVersion::V6 => self.guest_uso6,
            },
        };
        self.guest_csum && kind && (!gso.ecn() || self.guest_ecn)
    }
}

/// How a frame reached the receive path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxSource<'a> {
    /// Described by a validated header: a local guest's transmit, or an uplink that carries
    /// virtio-net headers (a tap with `IFF_VNET_HDR`).
    Offload(&'a TxOffload),
    /// A plain frame from an uplink. `csum_verified`: its L4 checksum is known good (checked by
    /// the NIC or by vif), so a guest with `GUEST_CSUM` may skip checking it.
    Plain { csum_verified: bool },
}

/// What to do with a frame before it enters the receiving guest's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxPlan {
    /// Write `hdr`, then the frame as it is.
    Deliver(VirtioNetHdr),
    /// Run [`super::complete_csum`] with `csum` on the frame, then write `hdr` and the frame.
    CompleteCsumThen { csum: CsumRange, hdr: VirtioNetHdr },
    /// Run [`super::Segmenter::segment`] with `csum`, then write each segment behind
    /// [`super::Segments::virtio_hdr`].
    Segment { csum: SegmentCsum },
}

/// Decides what the receiving guest with `caps` gets for a frame that arrived as `source`.
pub fn rx_plan(source: RxSource<'_>, caps: &RxOffloadCaps) -> RxPlan {
    match source {
        // § 5.1.6.4.1: DATA_VALID only with GUEST_CSUM, and only for a validated checksum.
        RxSource::Plain { csum_verified } => {
            let flags = if csum_verified && caps.guest_csum {
                VIRTIO_NET_HDR_F_DATA_VALID
            } else {
                0
            };
            RxPlan::Deliver(VirtioNetHdr {
                flags,
                ..VirtioNetHdr::default()
            })
        }
        // The sending guest vouched for its checksums; vif did not check them.
        RxSource::Offload(TxOffload::None) => RxPlan::Deliver(VirtioNetHdr::default()),
        RxSource::Offload(TxOffload::Csum(csum)) => csum_plan(*csum, caps),
        // One segment: the frame is already a valid packet with a partial checksum.
        RxSource::Offload(TxOffload::Gso(gso)) if gso.segments() <= 1 => {
            csum_plan(gso.csum(), caps)
        }
        RxSource::Offload(offload @ TxOffload::Gso(gso)) if caps.accepts(gso) => {
            RxPlan::Deliver(offload.virtio_hdr())
        }
        RxSource::Offload(TxOffload::Gso(gso)) => RxPlan::Segment {
            // Partial checksums per segment are cheaper when the guest takes them; UFO
            // fragments cannot carry one (the checksum covers the whole datagram).
            csum: if caps.guest_csum && gso.kind() != GsoKind::Ufo {
                SegmentCsum::Partial
            } else {
                SegmentCsum::Full
            },
        },
    }
}

/// A partial checksum: hand it on (`GUEST_CSUM`) or complete it first (§ 5.1.6.4.1: without
/// `GUEST_CSUM` the device must set `flags` to zero and supply a fully checksummed packet).
fn csum_plan(csum: CsumRange, caps: &RxOffloadCaps) -> RxPlan {
    if caps.guest_csum {
        RxPlan::Deliver(VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: csum.start,
            csum_offset: csum.offset,
            ..VirtioNetHdr::default()
        })
    } else {
        RxPlan::CompleteCsumThen {
            csum,
            hdr: VirtioNetHdr::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::offloads::feature::{GUEST_CSUM, GUEST_TSO4, GUEST_USO6};
    use crate::offload::csum::complete_csum;
    use crate::offload::header::GsoType;
    use crate::offload::segment::Segmenter;
    use crate::offload::testframe::{build, gso_hdr, l4_verifies, Built, Spec};
    use crate::offload::validate::{validate, TxOffloadCaps};

    const EVERYTHING: RxOffloadCaps = RxOffloadCaps {
        guest_csum: true,
        guest_tso4: true,
        guest_tso6: true,
        guest_ecn: true,
        guest_ufo: true,
        guest_uso4: true,
        guest_uso6: true,
    };

    fn offload(built: &Built, gso_type: GsoType, gso_size: u16) -> TxOffload {
        validate(
            &gso_hdr(built, gso_type, gso_size),
            &built.frame,
            &TxOffloadCaps::ALL,
        )
        .unwrap()
    }

    fn tcp4(len: usize) -> Built {
        build(&Spec::new(IpVersion::V4, true, vec![7; len]))
    }

    #[test]
    fn plain_frames_get_data_valid_only_when_verified_and_acked() {
        let flags = |csum_verified, caps: &RxOffloadCaps| match rx_plan(
            RxSource::Plain { csum_verified },
            caps,
        ) {
            RxPlan::Deliver(hdr) => hdr.flags,
            other => panic!("{other:?}"),
        };
        assert_eq!(flags(true, &EVERYTHING), VIRTIO_NET_HDR_F_DATA_VALID);
        assert_eq!(flags(false, &EVERYTHING), 0);
        assert_eq!(flags(true, &RxOffloadCaps::NONE), 0);
        assert_eq!(
            rx_plan(RxSource::Offload(&TxOffload::None), &EVERYTHING),
            RxPlan::Deliver(VirtioNetHdr::default())
        );
    }

    #[test]
    fn partial_checksum_is_handed_on_or_completed() {
        let csum = CsumRange {
            start: 34,
            offset: 16,
        };
        let partial = TxOffload::Csum(csum);
        assert_eq!(
            rx_plan(RxSource::Offload(&partial), &EVERYTHING),
            RxPlan::Deliver(partial.virtio_hdr())
        );
        assert_eq!(
            rx_plan(RxSource::Offload(&partial), &RxOffloadCaps::NONE),
            RxPlan::CompleteCsumThen {
                csum,
                hdr: VirtioNetHdr::default()
            }
        );
    }

    #[test]
    fn gso_passes_through_to_a_guest_that_acked_it() {
        let built = tcp4(5000);
        let tso = offload(&built, GsoType::TcpV4, 1448);
        let RxPlan::Deliver(hdr) = rx_plan(RxSource::Offload(&tso), &EVERYTHING) else {
            panic!("expected pass-through");
        };
        assert_eq!(hdr.gso_type, GsoType::TCPV4);
        assert_eq!((hdr.hdr_len, hdr.gso_size), (54, 1448));
        assert!(hdr.needs_csum());
        // The header it hands on validates back to the same offload.
        assert_eq!(validate(&hdr, &built.frame, &TxOffloadCaps::ALL), Ok(tso));
    }

    #[test]
    fn gso_is_segmented_for_a_guest_that_did_not() {
        let built = tcp4(5000);
        let tso = offload(&built, GsoType::TcpV4, 1448);
        let no_tso4 = RxOffloadCaps {
            guest_tso4: false,
            ..EVERYTHING
        };
        assert_eq!(
            rx_plan(RxSource::Offload(&tso), &no_tso4),
            RxPlan::Segment {
                csum: SegmentCsum::Partial
            }
        );
        assert_eq!(
            rx_plan(RxSource::Offload(&tso), &RxOffloadCaps::NONE),
            RxPlan::Segment {
                csum: SegmentCsum::Full
            }
        );
        // CWR needs GUEST_ECN.
        let mut spec = Spec::new(IpVersion::V4, true, vec![0; 5000]);
        spec.tcp_flags |= 0x80;
        let ecn = offload(&build(&spec), GsoType::TcpV4, 1448);
        let no_ecn = RxOffloadCaps {
            guest_ecn: false,
            ..EVERYTHING
        };
        assert!(matches!(
            rx_plan(RxSource::Offload(&ecn), &no_ecn),
            RxPlan::Segment { .. }
        ));
        // USO is per IP version.
        let uso6 = offload(
            &build(&Spec::new(IpVersion::V6, false, vec![0; 5000])),
            GsoType::UdpL4,
            1400,
        );
        let only_uso4 = RxOffloadCaps {
            guest_uso6: false,
            ..EVERYTHING
        };
        assert!(matches!(
            rx_plan(RxSource::Offload(&uso6), &only_uso4),
            RxPlan::Segment { .. }
        ));
        // UFO fragments always carry the full checksum.
        let ufo = offload(
            &build(&Spec::new(IpVersion::V4, false, vec![0; 5000])),
            GsoType::Udp,
            1480,
        );
        let no_ufo = RxOffloadCaps {
            guest_ufo: false,
            ..EVERYTHING
        };
        assert_eq!(
            rx_plan(RxSource::Offload(&ufo), &no_ufo),
            RxPlan::Segment {
                csum: SegmentCsum::Full
            }
        );
    }

    #[test]
    fn one_segment_gso_is_a_checksum_offload() {
        let built = tcp4(1000);
        let tso = offload(&built, GsoType::TcpV4, 1448);
        assert_eq!(
            rx_plan(RxSource::Offload(&tso), &RxOffloadCaps::NONE),
            RxPlan::CompleteCsumThen {
                csum: CsumRange {
                    start: 34,
                    offset: 16
                },
                hdr: VirtioNetHdr::default()
            }
        );
    }

    #[test]
    fn caps_from_feature_bits() {
        let acked = (1 << GUEST_CSUM) | (1 << GUEST_TSO4) | (1u64 << GUEST_USO6);
        let caps = RxOffloadCaps::from_features(acked);
        assert!(caps.guest_csum && caps.guest_tso4 && caps.guest_uso6);
        assert!(!caps.guest_tso6 && !caps.guest_ecn && !caps.guest_ufo && !caps.guest_uso4);
    }

    /// Carries out `plan` the way the daemon's receive path does: the frames and headers the
    /// guest would get.
    fn carry_out(plan: RxPlan, offload: &TxOffload, frame: &[u8]) -> Vec<(VirtioNetHdr, Vec<u8>)> {
        match plan {
            RxPlan::Deliver(hdr) => vec![(hdr, frame.to_vec())],
            RxPlan::CompleteCsumThen { csum, hdr } => {
                let mut copy = frame.to_vec();
                complete_csum(&mut copy, csum).unwrap();
                vec![(hdr, copy)]
            }
            RxPlan::Segment { csum } => {
                let TxOffload::Gso(gso) = offload else {
                    panic!("Segment for {offload:?}");
                };
                let mut segmenter = Segmenter::new();
                let segments = segmenter.segment(frame, gso, csum).unwrap();
                let hdr = segments.virtio_hdr();
                segments
                    .iter()
                    .map(|segment| (hdr, segment.to_vec()))
                    .collect()
            }
        }
    }

    proptest! {
        /// Whatever the receiver acked, it gets only what it acked, and every checksum it is
        /// not asked to complete verifies.
        #[test]
        fn receivers_get_only_what_they_acked(
            acked in any::<[bool; 7]>(),
            v6 in any::<bool>(),
            tcp in any::<bool>(),
            vlan in any::<bool>(),
            cwr in any::<bool>(),
            gso in any::<bool>(),
            len in 0usize..4000,
            gso_size in 500u16..1500,
        ) {
            let [guest_csum, guest_tso4, guest_tso6, guest_ecn, guest_ufo, guest_uso4, guest_uso6] =
                acked;
            let caps = RxOffloadCaps {
                guest_csum, guest_tso4, guest_tso6, guest_ecn, guest_ufo, guest_uso4, guest_uso6,
            };
            let ip = if v6 { IpVersion::V6 } else { IpVersion::V4 };
            let mut spec = Spec::new(ip, tcp, vec![0x5a; len]);
            spec.vlan = vlan;
            if tcp && cwr {
                spec.tcp_flags |= 0x80;
            }
            let built = build(&spec);
            let gso_type = match (gso, tcp, ip) {
                (false, _, _) => GsoType::None,
                (true, true, IpVersion::V4) => GsoType::TcpV4,
                (true, true, IpVersion::V6) => GsoType::TcpV6,
                (true, false, _) => GsoType::UdpL4,
            };
            let offload = offload(&built, gso_type, gso_size);
            let plan = rx_plan(RxSource::Offload(&offload), &caps);
            let protocol = if tcp { 6 } else { 17 };
            for (hdr, frame) in carry_out(plan, &offload, &built.frame) {
                prop_assert!(hdr.flags == 0 || caps.guest_csum, "flags {} without GUEST_CSUM", hdr.flags);
                match GsoType::from_raw(hdr.gso_type) {
                    Some(GsoType::None) => {
                        let payload = frame.len() - built.headers_len;
                        prop_assert!(!gso || payload <= usize::from(gso_size));
                    }
                    Some(GsoType::TcpV4) => prop_assert!(caps.guest_tso4),
                    Some(GsoType::TcpV6) => prop_assert!(caps.guest_tso6),
                    Some(GsoType::UdpL4) if v6 => prop_assert!(caps.guest_uso6),
                    Some(GsoType::UdpL4) => prop_assert!(caps.guest_uso4),
                    other => prop_assert!(false, "unexpected gso_type {:?}", other),
                }
                prop_assert!(!hdr.ecn() || caps.guest_ecn);
                let mut frame = frame;
                if hdr.needs_csum() {
                    let csum = CsumRange { start: hdr.csum_start, offset: hdr.csum_offset };
                    complete_csum(&mut frame, csum).unwrap();
                }
                prop_assert!(l4_verifies(&frame, built.l3, built.l4, ip, protocol));
            }
        }
    }
}
