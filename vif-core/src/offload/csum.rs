//! Checksum completion for `VIRTIO_NET_HDR_F_NEEDS_CSUM` frames (VIRTIO 1.2 § 5.1.6.2).
//!
//! The driver leaves the pseudo-header sum in the L4 checksum field (Linux `CHECKSUM_PARTIAL`)
//! and asks the device to "calculate a ones' complement checksum from `csum_start` up until the
//! end of the packet and store the result at offset `csum_offset` from `csum_start`". The stored
//! pseudo-header sum is part of the summed bytes, so one pass of [`checksum::data`] suffices.
//! This file only does that arithmetic; whether the range describes the frame's real L4 header
//! is the validator's concern.

use super::error::OffloadError;
use crate::checksum;

/// Where a partial checksum starts and where its result goes, as in `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CsumRange {
    /// First byte summed, from the start of the frame (after the virtio header).
    pub start: u16,
    /// Offset of the 16-bit result from `start`.
    pub offset: u16,
}

impl CsumRange {
    /// Offset of the checksum field from the start of the frame. Cannot overflow: both parts are
    /// 16-bit and `usize` is at least 32 bits on every target vif builds for.
    pub fn field_offset(self) -> usize {
        usize::from(self.start) + usize::from(self.offset)
    }

    /// Checks the range against a frame of `frame_len` bytes: `start` inside the frame (DPDK
    /// CVE-2024-11614) and the 2-byte field inside the frame.
    pub fn check(self, frame_len: usize) -> Result<(), OffloadError> {
        if usize::from(self.start) >= frame_len {
            return Err(OffloadError::CsumStartPastFrame {
                csum_start: self.start,
                frame_len,
            });
        }
        if self.field_offset() + 2 > frame_len {
            return Err(OffloadError::CsumFieldPastFrame {
                csum_start: self.start,
                csum_offset: self.offset,
                frame_len,
            });
        }
        Ok(())
    }
}

/// Completes the partial checksum `csum` in `frame`, in place.
///
/// A result of zero is stored as `0xffff`, as Linux `skb_checksum_help` does (`CSUM_MANGLED_0`):
/// both are zero in one's complement, and for UDP a zero field would mean "no checksum"
/// (RFC 768). Fails only if the range does not fit the frame.
pub fn complete_csum(frame: &mut [u8], csum: CsumRange) -> Result<(), OffloadError> {
    csum.check(frame.len())?;
    let field = csum.field_offset();
    let summed = frame.get(usize::from(csum.start)..).unwrap_or_default();
    let value = match checksum::finish(checksum::data(summed)) {
        0 => 0xffff,
        value => value,
    };
    if let Some(slot) = frame.get_mut(field..field + 2) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testframe::{build, l4_verifies, Spec};
    use crate::offload::validate::IpVersion;
    use proptest::prelude::*;

    /// Completes the partial checksum a guest left and verifies it from scratch.
    fn completes(ip: IpVersion, tcp: bool, vlan: bool) {
        let payload: Vec<u8> = (0..999u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut spec = Spec::new(ip, tcp, payload);
        spec.vlan = vlan;
        let mut built = build(&spec);
        let protocol = if tcp { 6 } else { 17 };
        assert!(!l4_verifies(&built.frame, built.l3, built.l4, ip, protocol));
        let csum = CsumRange {
            start: built.l4 as u16,
            offset: if tcp { 16 } else { 6 },
        };
        complete_csum(&mut built.frame, csum).unwrap();
        assert!(l4_verifies(&built.frame, built.l3, built.l4, ip, protocol));
    }

    #[test]
    fn completes_ipv4_tcp() {
        completes(IpVersion::V4, true, false);
        completes(IpVersion::V4, true, true);
    }

    #[test]
    fn completes_ipv4_udp() {
        completes(IpVersion::V4, false, false);
        completes(IpVersion::V4, false, true);
    }

    #[test]
    fn completes_ipv6_tcp() {
        completes(IpVersion::V6, true, false);
        completes(IpVersion::V6, true, true);
    }

    #[test]
    fn completes_ipv6_udp() {
        completes(IpVersion::V6, false, false);
        completes(IpVersion::V6, false, true);
    }

    #[test]
    fn zero_result_is_stored_as_all_ones() {
        // Sum of the range is 0xffff once the field is zero, so the checksum computes to 0.
        let mut frame = [0xff, 0xff, 0x00, 0x00];
        complete_csum(
            &mut frame,
            CsumRange {
                start: 0,
                offset: 2,
            },
        )
        .unwrap();
        assert_eq!(frame[2..], [0xff, 0xff]);
    }

    #[test]
    fn refuses_ranges_outside_the_frame() {
        let mut frame = [0u8; 40];
        assert_eq!(
            complete_csum(
                &mut frame,
                CsumRange {
                    start: 40,
                    offset: 0
                }
            ),
            Err(OffloadError::CsumStartPastFrame {
                csum_start: 40,
                frame_len: 40
            })
        );
        assert_eq!(
            complete_csum(
                &mut frame,
                CsumRange {
                    start: 34,
                    offset: 5
                }
            ),
            Err(OffloadError::CsumFieldPastFrame {
                csum_start: 34,
                csum_offset: 5,
                frame_len: 40
            })
        );
        // The largest values cannot overflow the bound arithmetic.
        let max = CsumRange {
            start: u16::MAX,
            offset: u16::MAX,
        };
        assert!(complete_csum(&mut frame, max).is_err());
        assert!(complete_csum(
            &mut frame,
            CsumRange {
                start: 38,
                offset: 0
            }
        )
        .is_ok());
    }

    proptest! {
        #[test]
        fn any_range_on_any_frame_never_panics(
            mut frame in proptest::collection::vec(any::<u8>(), 0..256),
            start in any::<u16>(),
            offset in any::<u16>(),
        ) {
            let csum = CsumRange { start, offset };
            let fits = usize::from(start) + usize::from(offset) + 2 <= frame.len();
            prop_assert_eq!(complete_csum(&mut frame, csum).is_ok(), fits);
            if fits {
                // The range now sums to zero (0xffff) in one's complement.
                let summed = &frame[usize::from(start)..];
                if offset % 2 == 0 {
                    prop_assert_eq!(checksum::data(summed), 0xffff);
                }
            }
        }
    }
}
