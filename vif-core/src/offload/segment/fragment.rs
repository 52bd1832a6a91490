//! UFO (`VIRTIO_NET_HDR_GSO_UDP`): one UDP datagram cut into IP fragments, as Linux
//! `udp4_ufo_fragment`/`udp6_ufo_fragment` did before UFO left the kernel in 4.14.
//!
//! The UDP checksum covers the whole datagram, so it is completed first (from the addresses,
//! as for TSO) and travels in the first fragment. The UDP header plus payload is then cut into
//! pieces of `gso_size` rounded down to 8 bytes (RFC 791 § 3.1 / RFC 8200 § 4.5 offsets count
//! 8-byte units); every piece but the last has More Fragments set.
//!
//! - IPv4: the header is copied with the datagram's identification; the flags/offset word is
//!   rewritten whole, clearing DF as `inet_gso_segment` does; IPv4 options are refused, since
//!   RFC 791 copies only some of them into later fragments.
//! - IPv6: an 8-byte fragment header is inserted after the fixed header, with an identification
//!   from the [`Segmenter`]'s counter; extension headers are refused (the unfragmentable part
//!   would have to be split out of the chain).

use super::{fill_ipv4_checksum, get16, put16, put_bytes, split_at_checked, IpAddrs, Segmenter};
use crate::checksum;
use crate::offload::error::OffloadError;
use crate::offload::validate::{
    Gso, IpVersion, FRAGMENT_UNIT, IPPROTO_UDP, IPV6_FRAGMENT_HEADER_LEN, IPV6_HEADER_LEN,
    UDP_CSUM_OFFSET,
};

/// IPv4 flags/fragment-offset word: More Fragments (RFC 791 § 3.1).
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
/// RFC 8200 § 4.5: Next Header value of the fragment header.
const IPPROTO_FRAGMENT: u8 = 44;
/// The IPv4 header without options.
const IPV4_HEADER_LEN: usize = 20;

impl Segmenter {
    pub(super) fn fragment(&mut self, frame: &[u8], gso: &Gso) -> Result<(), OffloadError> {
        let l3 = usize::from(gso.l3_offset());
        let l4 = usize::from(gso.l4_offset());
        let (headers, datagram) = split_at_checked(frame, l4)?;
        let addrs = IpAddrs::read(headers, l3, l4, gso.ip())?;
        if gso.ip() == IpVersion::V4 && l4 != l3 + IPV4_HEADER_LEN {
            return Err(OffloadError::Unsupported {
                what: "IPv4 options in UFO fragments",
            });
        }
        let udp_csum = complete_udp_checksum(&addrs, datagram)?;
        let udp_csum_at = l4 + usize::from(UDP_CSUM_OFFSET);
        if datagram.len() <= usize::from(gso.gso_size()) {
            // It fits: one datagram, not fragmented, its IP header untouched.
            let start = self.out.len();
            self.out.extend_from_slice(frame);
            let whole = self.out.get_mut(start..).unwrap_or_default();
            put16(whole, udp_csum_at, udp_csum)?;
            self.ranges.push(start..self.out.len());
            return Ok(());
        }
        // validate() refused gso_size < 8, so the unit is at least 8.
        let unit = gso.fragment_size().max(usize::from(FRAGMENT_UNIT));
        let count = datagram.len().div_ceil(unit);
        let fragment_id = self.next_fragment_id;
        self.next_fragment_id = self.next_fragment_id.wrapping_add(1);
        let fragment_header_len = match gso.ip() {
            IpVersion::V4 => 0,
            IpVersion::V6 => IPV6_FRAGMENT_HEADER_LEN,
        };
        self.reserve(count, l4 + fragment_header_len, datagram.len());
        for index in 0..count {
            let offset = index * unit;
            let piece = datagram
                .get(offset..datagram.len().min(offset + unit))
                .unwrap_or_default();
            let more = index + 1 < count;
            let start = self.out.len();
            // For IPv6, `headers` is the fixed header alone: IpAddrs::read refused extensions.
            self.out.extend_from_slice(headers);
            if gso.ip() == IpVersion::V6 {
                // RFC 8200 § 4.5: next header, reserved, offset (bytes, a multiple of 8) | M,
                // identification.
                let offset_word = (offset as u16) | u16::from(more);
                let [off_hi, off_lo] = offset_word.to_be_bytes();
                let [id0, id1, id2, id3] = fragment_id.to_be_bytes();
                self.out
                    .extend_from_slice(&[IPPROTO_UDP, 0, off_hi, off_lo, id0, id1, id2, id3]);
            }
            self.out.extend_from_slice(piece);
            let segment = self.out.get_mut(start..).unwrap_or_default();
            if index == 0 {
                put16(segment, udp_csum_at + fragment_header_len, udp_csum)?;
            }
            let ip_len = segment.len().saturating_sub(l3);
            match gso.ip() {
                IpVersion::V4 => {
                    put16(segment, l3 + 2, ip_len as u16)?;
                    // The whole word is rewritten: DF cleared, as `inet_gso_segment` does.
                    // offset ≤ 65535, so offset / 8 fits the 13-bit field.
                    let units = (offset / usize::from(FRAGMENT_UNIT)) as u16;
                    let flags = if more { IPV4_MORE_FRAGMENTS } else { 0 };
                    put16(segment, l3 + 6, units | flags)?;
                    fill_ipv4_checksum(segment, l3, l4)?;
                }
                IpVersion::V6 => {
                    put16(
                        segment,
                        l3 + 4,
                        ip_len.saturating_sub(IPV6_HEADER_LEN) as u16,
                    )?;
                    put_bytes(segment, l3 + 6, &[IPPROTO_FRAGMENT])?;
                }
            }
            self.ranges.push(start..self.out.len());
        }
        Ok(())
    }
}

/// The UDP checksum of the whole datagram (RFC 768), computed from the addresses: the sum of
/// the datagram with its checksum field taken out, plus the pseudo-header.
fn complete_udp_checksum(addrs: &IpAddrs, datagram: &[u8]) -> Result<u16, OffloadError> {
    let field = get16(datagram, usize::from(UDP_CSUM_OFFSET))?;
    // One's-complement subtraction of the field: x + !x is zero in one's complement.
    let sum = checksum::combine(&[
        addrs.pseudo_header(IPPROTO_UDP, datagram.len()),
        checksum::data(datagram),
        !field,
    ]);
    Ok(match checksum::finish(sum) {
        0 => 0xffff,
        value => value,
    })
}
