//! The datapath's use of `vif_core::offload` on guest TX headers.
//!
//! Every field of the TX `virtio_net_hdr` is guest-controlled. `vif_core::offload::validate`
//! checks it against the negotiated features and the frame (GSO type defined and negotiated,
//! `NEEDS_CSUM` range inside the frame — DPDK CVE-2024-11614 —, `gso_size` non-zero, headers that
//! match the GSO type); this file adds what only the device knows: a frame without GSO must fit
//! the MTU, and every frame must hold at least an Ethernet header.

use vif_core::offload::{validate, OffloadError, TxOffload, TxOffloadCaps, VirtioNetHdr};
use vif_core::stats::DropReason;
use vif_core::wire::ethernet::HEADER_LEN as ETHERNET_HEADER_LEN;

use crate::device::Negotiated;
use crate::tx::VLAN_ALLOWANCE;

/// Most segments one guest TSO frame may expand to: a 64 KiB frame at the smallest sane MSS
/// (88 bytes: IPv4 minimum MTU 68 less headers, rounded) stays under it, and it bounds the work
/// one descriptor chain can cause when the receiver needs software segmentation.
pub const MAX_SEGMENTS: u16 = 1024;

/// The transmit caps a guest's acked features give.
pub fn tx_caps(negotiated: Negotiated) -> TxOffloadCaps {
    TxOffloadCaps {
        max_segments: MAX_SEGMENTS,
        ..TxOffloadCaps::from_features(negotiated.bits())
    }
}

/// Checks a guest's TX header against the negotiated features, the MTU and the frame.
pub fn validate_tx(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    negotiated: Negotiated,
    mtu: u16,
) -> Result<TxOffload, DropReason> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    let offload = validate(hdr, frame, &tx_caps(negotiated)).map_err(drop_reason)?;
    let max_plain = usize::from(mtu) + ETHERNET_HEADER_LEN + VLAN_ALLOWANCE;
    if !matches!(offload, TxOffload::Gso(_)) && frame.len() > max_plain {
        return Err(DropReason::MtuExceeded);
    }
    Ok(offload)
}

/// How an offload refusal is counted: the frame's own headers being broken is `Malformed`,
/// anything about the virtio header is `BadOffload`.
fn drop_reason(error: OffloadError) -> DropReason {
    match error {
        OffloadError::Frame(_) => DropReason::Malformed,
        _ => DropReason::BadOffload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vif_core::offload::header::VIRTIO_NET_HDR_F_NEEDS_CSUM;
    use vif_core::offload::GsoType;
    use virtio_bindings::virtio_net::{
        VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4,
    };

    fn all() -> Negotiated {
        Negotiated::from_bits(
            1 << VIRTIO_NET_F_CSUM | 1 << VIRTIO_NET_F_HOST_TSO4 | 1 << VIRTIO_NET_F_HOST_ECN,
        )
    }

    #[test]
    fn plain_frame_passes() {
        let hdr = VirtioNetHdr {
            num_buffers: 7,
            ..Default::default()
        };
        assert_eq!(
            validate_tx(&hdr, &[0; 60], Negotiated::default(), 1500),
            Ok(TxOffload::None)
        );
    }

    #[test]
    fn rejects_bogus_offload_metadata() {
        // A partial checksum on a 60-byte frame.
        let csum = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        let frame = [0u8; 60];
        assert!(matches!(
            validate_tx(&csum, &frame, all(), 1500),
            Ok(TxOffload::Csum(_))
        ));
        let cases = [
            // Not negotiated.
            (csum, Negotiated::default()),
            // csum_start past the frame (DPDK CVE-2024-11614).
            (
                VirtioNetHdr {
                    csum_start: 60,
                    ..csum
                },
                all(),
            ),
            // Field straddles the end.
            (
                VirtioNetHdr {
                    csum_start: 50,
                    csum_offset: 9,
                    ..csum
                },
                all(),
            ),
            // Undefined GSO type.
            (
                VirtioNetHdr {
                    gso_type: 2,
                    ..csum
                },
                all(),
            ),
            // TSO with gso_size 0 (DPDK 7023f3e532).
            (
                VirtioNetHdr {
                    gso_type: GsoType::TCPV4,
                    gso_size: 0,
                    ..csum
                },
                all(),
            ),
        ];
        for (hdr, negotiated) in cases {
            assert!(
                validate_tx(&hdr, &frame, negotiated, 1500).is_err(),
                "{hdr:?}"
            );
        }
    }

    #[test]
    fn plain_frame_over_mtu_and_runt() {
        let frame = vec![0u8; 1500 + 14 + VLAN_ALLOWANCE + 1];
        assert_eq!(
            validate_tx(&VirtioNetHdr::default(), &frame, all(), 1500),
            Err(DropReason::MtuExceeded)
        );
        assert_eq!(
            validate_tx(&VirtioNetHdr::default(), &[0; 13], all(), 1500),
            Err(DropReason::Malformed)
        );
    }
}
