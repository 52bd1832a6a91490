//! The datapath's seam to `vif_core::offload` validation of guest TX headers.
//!
//! Every field of the TX `virtio_net_hdr` is guest-controlled. Until `vif_core::offload::validate`
//! lands, this file applies the checks the datapath cannot do without (anchors § 8.A.8): the GSO
//! type is defined and negotiated, GSO comes with `NEEDS_CSUM` and a non-zero `gso_size`,
//! `NEEDS_CSUM` was negotiated and its range lies inside the frame (DPDK CVE-2024-11614), and a
//! frame without GSO is no longer than the MTU allows. It then returns the header normalized for
//! the receiver: only the bits a receiver acts on, `num_buffers` zeroed.

use vif_core::offload::csum::CsumRange;
use vif_core::offload::header::VIRTIO_NET_HDR_F_NEEDS_CSUM;
use vif_core::offload::{GsoType, VirtioNetHdr};

use crate::device::Negotiated;
use crate::seam::DropReason;
use crate::tx::VLAN_ALLOWANCE;

/// Checks a guest's TX header against the negotiated features and the frame.
pub fn validate_tx(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    negotiated: Negotiated,
    mtu: u16,
) -> Result<VirtioNetHdr, DropReason> {
    let gso = GsoType::from_raw(hdr.gso_type).ok_or(DropReason::BadOffload)?;
    let gso_allowed = match gso {
        GsoType::None => true,
        GsoType::TcpV4 => negotiated.host_tso4(),
        GsoType::TcpV6 => negotiated.host_tso6(),
        // UFO and USO are never offered (see device.rs).
        GsoType::Udp | GsoType::UdpL4 => false,
    };
    if !gso_allowed {
        return Err(DropReason::BadOffload);
    }
    if hdr.ecn() && (gso == GsoType::None || !negotiated.host_ecn()) {
        return Err(DropReason::BadOffload);
    }
    if gso != GsoType::None && (!hdr.needs_csum() || hdr.gso_size == 0) {
        return Err(DropReason::BadOffload);
    }
    if hdr.needs_csum() {
        if !negotiated.host_csum() {
            return Err(DropReason::BadOffload);
        }
        CsumRange {
            start: hdr.csum_start,
            offset: hdr.csum_offset,
        }
        .check(frame.len())
        .map_err(|_| DropReason::BadOffload)?;
    }
    if frame.len() < vif_core::wire::ethernet::HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    let max_plain = usize::from(mtu) + vif_core::wire::ethernet::HEADER_LEN + VLAN_ALLOWANCE;
    if gso == GsoType::None && frame.len() > max_plain {
        return Err(DropReason::TooLong);
    }
    let needs_csum = hdr.needs_csum();
    Ok(VirtioNetHdr {
        flags: if needs_csum {
            VIRTIO_NET_HDR_F_NEEDS_CSUM
        } else {
            0
        },
        gso_type: hdr.gso_type,
        hdr_len: if gso == GsoType::None { 0 } else { hdr.hdr_len },
        gso_size: if gso == GsoType::None {
            0
        } else {
            hdr.gso_size
        },
        csum_start: if needs_csum { hdr.csum_start } else { 0 },
        csum_offset: if needs_csum { hdr.csum_offset } else { 0 },
        num_buffers: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::virtio_net::{
        VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4,
    };

    fn all() -> Negotiated {
        Negotiated::from_bits(
            1 << VIRTIO_NET_F_CSUM | 1 << VIRTIO_NET_F_HOST_TSO4 | 1 << VIRTIO_NET_F_HOST_ECN,
        )
    }

    #[test]
    fn plain_frame_passes_and_is_normalized() {
        let hdr = VirtioNetHdr {
            num_buffers: 7,
            hdr_len: 99,
            ..Default::default()
        };
        let out = validate_tx(&hdr, &[0; 60], Negotiated::default(), 1500).unwrap();
        assert_eq!(out, VirtioNetHdr::default());
    }

    #[test]
    fn rejects_bogus_offload_metadata() {
        let tso = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: GsoType::TCPV4,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            hdr_len: 54,
            num_buffers: 0,
        };
        let frame = [0u8; 3000];
        assert!(validate_tx(&tso, &frame, all(), 1500).is_ok());
        let cases = [
            // Not negotiated.
            (tso, Negotiated::default()),
            // csum_start past the frame (DPDK CVE-2024-11614).
            (
                VirtioNetHdr {
                    csum_start: 3000,
                    ..tso
                },
                all(),
            ),
            // Field straddles the end.
            (
                VirtioNetHdr {
                    csum_start: 2990,
                    csum_offset: 9,
                    ..tso
                },
                all(),
            ),
            // gso_size 0 (DPDK 7023f3e532).
            (VirtioNetHdr { gso_size: 0, ..tso }, all()),
            // GSO without NEEDS_CSUM.
            (VirtioNetHdr { flags: 0, ..tso }, all()),
            // Undefined and never-offered GSO types.
            (VirtioNetHdr { gso_type: 2, ..tso }, all()),
            (
                VirtioNetHdr {
                    gso_type: GsoType::UDP_L4,
                    ..tso
                },
                all(),
            ),
            // ECN without GSO.
            (
                VirtioNetHdr {
                    gso_type: GsoType::ECN,
                    ..tso
                },
                all(),
            ),
        ];
        for (hdr, negotiated) in cases {
            assert_eq!(
                validate_tx(&hdr, &frame, negotiated, 1500),
                Err(DropReason::BadOffload),
                "{hdr:?}"
            );
        }
    }

    #[test]
    fn plain_frame_over_mtu_is_too_long() {
        let frame = vec![0u8; 1500 + 14 + VLAN_ALLOWANCE + 1];
        assert_eq!(
            validate_tx(&VirtioNetHdr::default(), &frame, all(), 1500),
            Err(DropReason::TooLong)
        );
        assert_eq!(
            validate_tx(&VirtioNetHdr::default(), &[0; 13], all(), 1500),
            Err(DropReason::Malformed)
        );
    }
}
