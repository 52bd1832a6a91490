//! The Internet checksum (RFC 1071), pseudo-headers and incremental update (RFC 1624).
//!
//! Sums are kept as the folded 16-bit one's-complement sum of big-endian words, *not* complemented:
//! combine partial sums with [`combine`], then write `!sum` into the header (see [`finish`]).
//! The hot loop adds native-endian 64-bit words with end-around carry and swaps bytes once at the
//! end: the one's-complement sum does not depend on byte order (RFC 1071 § 2(B)).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `bytes` to a running accumulator of native-endian 32-bit words. Each step adds two
/// 32-bit halves of a 64-bit load into a 64-bit sum, so no carry is lost for any frame shorter
/// than 2^34 bytes; folding to 16 bits happens once, in [`fold`].
#[inline]
fn accumulate(acc: u64, bytes: &[u8]) -> u64 {
    // Two accumulators over 16-byte steps give the CPU independent add chains.
    let (mut a, mut b) = (acc, 0u64);
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        let (lo, hi) = chunk.split_at(8);
        let w0 = u64::from_ne_bytes(lo.try_into().unwrap_or_default());
        let w1 = u64::from_ne_bytes(hi.try_into().unwrap_or_default());
        a += (w0 >> 32) + (w0 & 0xffff_ffff);
        b += (w1 >> 32) + (w1 & 0xffff_ffff);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // Zero-pad to 16 bytes; the pad sits at the end in memory order, as RFC 1071 pads.
        let mut last = [0u8; 16];
        last[..tail.len()].copy_from_slice(tail);
        let (lo, hi) = last.split_at(8);
        let w0 = u64::from_ne_bytes(lo.try_into().unwrap_or_default());
        let w1 = u64::from_ne_bytes(hi.try_into().unwrap_or_default());
        a += (w0 >> 32) + (w0 & 0xffff_ffff);
        b += (w1 >> 32) + (w1 & 0xffff_ffff);
    }
    let (sum, carry) = a.overflowing_add(b);
    sum + carry as u64
}

/// Folds the accumulator of native-endian words to a big-endian 16-bit sum.
#[inline]
fn fold(acc: u64) -> u16 {
    let mut sum = (acc >> 32) + (acc & 0xffff_ffff);
    sum = (sum >> 16) + (sum & 0xffff);
    sum = (sum >> 16) + (sum & 0xffff);
    sum = (sum >> 16) + (sum & 0xffff);
    let native = sum as u16;
    // The accumulator held native-endian words; the sum of big-endian words is its byte swap.
    u16::from_be_bytes(native.to_ne_bytes())
}

/// The one's-complement sum of `bytes` taken as big-endian 16-bit words, an odd tail padded with
/// a zero byte. Not complemented.
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    fold(accumulate(0, bytes))
}

/// One's-complement sum of already folded sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u32 = sums.iter().map(|&s| s as u32).sum();
    acc = (acc >> 16) + (acc & 0xffff);
    acc = (acc >> 16) + (acc & 0xffff);
    acc as u16
}

/// The value to store in a checksum field for a data sum: its complement.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// The sum of the IPv4 pseudo-header (RFC 793 § 3.1, RFC 768) for an upper-layer packet of
/// `length` bytes.
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let mut header = [0u8; 12];
    header[0..4].copy_from_slice(&src.octets());
    header[4..8].copy_from_slice(&dst.octets());
    header[9] = protocol;
    header[10..12].copy_from_slice(&length.to_be_bytes());
    data(&header)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 § 8.1) for an upper-layer packet of `length` bytes.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut header = [0u8; 40];
    header[0..16].copy_from_slice(&src.octets());
    header[16..32].copy_from_slice(&dst.octets());
    header[32..36].copy_from_slice(&length.to_be_bytes());
    header[39] = next_header;
    data(&header)
}

/// Incremental update of a stored checksum when one 16-bit word changes from `old` to `new`
/// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline]
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !combine(&[!checksum, !old, new])
}

/// Incremental update for a field of even length (addresses, ports, lengths) changing from `old`
/// to `new`. Fields of different or odd length cannot be updated this way and return `None`.
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> Option<u16> {
    if old.len() != new.len() || !old.len().is_multiple_of(2) {
        return None;
    }
    Some(!combine(&[!checksum, !data(old), data(new)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 § 3: the straightforward 16-bit big-endian reference.
    fn naive(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += word as u32;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 § 3 worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        // An IPv4 header captured from `ping 192.168.0.1` (checksum 0xb861 in place).
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(data(&header)), 0);
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(finish(data(&zeroed)), 0xb861);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn update_bytes_refuses_mismatched_lengths() {
        assert_eq!(update_bytes(0, &[1, 2], &[1, 2, 3, 4]), None);
        assert_eq!(update_bytes(0, &[1], &[2]), None);
    }

    proptest! {
        #[test]
        fn matches_naive_sum(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            // 0x0000 and 0xffff are the same one's-complement value: compare complemented-free
            // canonical forms.
            let canon = |s: u16| if s == 0xffff { 0 } else { s };
            prop_assert_eq!(canon(data(&bytes)), canon(naive(&bytes)));
        }

        #[test]
        fn split_sums_combine(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..256) {
            // Splitting at an even offset and combining gives the whole sum.
            let cut = (cut * 2).min(bytes.len() & !1);
            let canon = |s: u16| if s == 0xffff { 0 } else { s };
            prop_assert_eq!(
                canon(combine(&[data(&bytes[..cut]), data(&bytes[cut..])])),
                canon(data(&bytes))
            );
        }

        #[test]
        fn incremental_update_matches_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 2..256),
            index in 0usize..128,
            new in any::<u16>(),
        ) {
            let len = bytes.len() & !1;
            bytes.truncate(len);
            let at = (index * 2) % len;
            let before = finish(data(&bytes));
            let old = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            bytes[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let after = finish(data(&bytes));
            let canon = |s: u16| if s == 0xffff { 0 } else { s };
            prop_assert_eq!(canon(update(before, old, new)), canon(after));
            prop_assert_eq!(
                update_bytes(before, &old.to_be_bytes(), &new.to_be_bytes()).map(canon),
                Some(canon(after))
            );
        }
    }
}
