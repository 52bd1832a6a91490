//! IPv6 extension headers (RFC 8200 § 4): a bounded walk from the fixed header to the upper
//! layer, and a view of the fragment header (§ 4.5).
//!
//! The walk is what ACLs and offloads need: the upper-layer protocol, where its header starts,
//! and whether this is a fragment. It reads two bytes per header (eight for a fragment header),
//! never looks inside options, and stops with an error after [`MAX_EXT_HEADERS`] headers: a
//! chain of hundreds of empty headers is a cheap way to burn a parser's time (RFC 7045 § 2.1
//! notes that middleboxes bound the chain; RFC 7112 requires the whole chain in the first
//! fragment). Lengths use the unit of each header: 8 octets past the first 8 for most (§ 4.3),
//! 4 octets minus 2 for AH (RFC 4302 § 2.2), a fixed 8 for the fragment header.

use crate::wire::ipv4::IpProtocol;
use crate::wire::{ensure_len, Result, WireError};

/// The longest extension-header chain the walk accepts. RFC 8200 § 4.1 recommends an order in
/// which each header appears at most once (destination options twice): 8 covers it.
pub const MAX_EXT_HEADERS: usize = 8;

const HEADER: &str = "ipv6 extension";

/// What a fragment header says (RFC 8200 § 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Fragment {
    /// Offset of this fragment's data in the original packet, in bytes (a multiple of 8).
    pub offset: u16,
    pub more_frags: bool,
    pub ident: u32,
}

impl Ipv6Fragment {
    /// Offset 0: this fragment holds the upper-layer header.
    pub const fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// Where the extension-header chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Upper {
    /// The upper-layer protocol; for a non-first fragment, the fragment header's next header.
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the end of the fixed header.
    pub offset: usize,
    /// Present when the chain holds a fragment header.
    pub fragment: Option<Ipv6Fragment>,
}

impl Ipv6Upper {
    /// True when an upper-layer header starts at `offset`: not a non-first fragment, and not the
    /// end of a chain that has nothing (no next header) or something opaque (ESP) after it.
    pub fn has_upper_header(&self) -> bool {
        self.fragment.is_none_or(|fragment| fragment.is_first())
            && self.protocol != IpProtocol::IPV6_NONXT
            && self.protocol != IpProtocol::ESP
    }
}

/// Walks the chain that starts with `first` over `payload` (the bytes after the fixed header, up
/// to the payload length). Errors: a header past the payload, more than [`MAX_EXT_HEADERS`], a
/// hop-by-hop header anywhere but first (RFC 8200 § 4.3), or a second fragment header.
pub fn walk(first: IpProtocol, payload: &[u8]) -> Result<Ipv6Upper> {
    let mut protocol = first;
    let mut offset = 0usize;
    let mut fragment: Option<Ipv6Fragment> = None;
    let mut count = 0usize;
    while protocol.is_ipv6_extension() {
        if count == MAX_EXT_HEADERS {
            return Err(bad("header count", count as u32 + 1, "<= 8"));
        }
        if protocol == IpProtocol::HOPOPT && count != 0 {
            return Err(bad("hop-by-hop position", count as u32, "0 (first)"));
        }
        let header = payload.get(offset..).unwrap_or_default();
        let truncated = |need: usize| WireError::Truncated {
            header: HEADER,
            need: offset.saturating_add(need),
            len: payload.len(),
        };
        let (next, len_field) = match header {
            [next, len_field, ..] => (IpProtocol(*next), usize::from(*len_field)),
            _ => return Err(truncated(2)),
        };
        let len = match protocol {
            IpProtocol::IPV6_FRAG => {
                if fragment.is_some() {
                    return Err(bad("fragment headers", 2, "<= 1"));
                }
                let view = Ipv6FragmentHeader::new_checked(header).map_err(|_| truncated(8))?;
                let this = view.fragment();
                fragment = Some(this);
                if !this.is_first() {
                    // The rest is the middle of someone else's payload: nothing more to walk.
                    return Ok(Ipv6Upper {
                        protocol: next,
                        offset: offset + Ipv6FragmentHeader::<&[u8]>::HEADER_LEN,
                        fragment,
                    });
                }
                Ipv6FragmentHeader::<&[u8]>::HEADER_LEN
            }
            IpProtocol::AH => (len_field + 2) * 4,
            _ => (len_field + 1) * 8,
        };
        if header.len() < len {
            return Err(truncated(len));
        }
        offset += len;
        protocol = next;
        count += 1;
    }
    Ok(Ipv6Upper {
        protocol,
        offset,
        fragment,
    })
}

fn bad(field: &'static str, value: u32, bound: &'static str) -> WireError {
    WireError::BadField {
        header: HEADER,
        field,
        value,
        bound,
    }
}

mod field {
    use crate::wire::field::*;
    pub const NXT_HDR: usize = 0;
    pub const RESERVED: usize = 1;
    /// Offset (13 bits, 8-octet units), 2 reserved bits, M flag.
    pub const FRAG_OFF_M: Field = 2..4;
    pub const IDENT: Field = 4..8;
}

const FRAGMENT_HEADER: &str = "ipv6 fragment";

/// A view of the IPv6 fragment header (RFC 8200 § 4.5).
#[derive(Debug, Clone)]
pub struct Ipv6FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragmentHeader<T> {
    pub const HEADER_LEN: usize = field::IDENT.end;

    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6FragmentHeader { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// The header is fixed-size: 8 bytes make every accessor safe.
    pub fn check_len(&self) -> Result<()> {
        ensure_len(FRAGMENT_HEADER, self.buffer.as_ref(), Self::HEADER_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }

    fn off_m(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FRAG_OFF_M];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        self.off_m() & !0x7
    }

    pub fn more_frags(&self) -> bool {
        self.off_m() & 0x1 != 0
    }

    pub fn ident(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::IDENT];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn fragment(&self) -> Ipv6Fragment {
        Ipv6Fragment {
            offset: self.frag_offset(),
            more_frags: self.more_frags(),
            ident: self.ident(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6FragmentHeader<T> {
    pub fn set_next_header(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = protocol.0;
    }

    /// Zeroes the reserved octet and the two reserved bits (RFC 8200 § 4.5: sent as zero).
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED] = 0;
        let off_m = self.off_m() & !0x6;
        self.buffer.as_mut()[field::FRAG_OFF_M].copy_from_slice(&off_m.to_be_bytes());
    }

    /// Sets the offset from bytes; the low 3 bits are dropped (8-octet units).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let off_m = (self.off_m() & 0x7) | (offset & !0x7);
        self.buffer.as_mut()[field::FRAG_OFF_M].copy_from_slice(&off_m.to_be_bytes());
    }

    pub fn set_more_frags(&mut self, more: bool) {
        let off_m = (self.off_m() & !0x1) | u16::from(more);
        self.buffer.as_mut()[field::FRAG_OFF_M].copy_from_slice(&off_m.to_be_bytes());
    }

    pub fn set_ident(&mut self, ident: u32) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }
}

/// A typed fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6FragmentRepr {
    pub next_header: IpProtocol,
    pub fragment: Ipv6Fragment,
}

impl Ipv6FragmentRepr {
    pub fn parse<T: AsRef<[u8]>>(header: &Ipv6FragmentHeader<T>) -> Result<Self> {
        header.check_len()?;
        Ok(Ipv6FragmentRepr {
            next_header: header.next_header(),
            fragment: header.fragment(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        Ipv6FragmentHeader::<&[u8]>::HEADER_LEN
    }

    /// Fails, writing nothing, on a short buffer or an offset that is not a multiple of 8.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        header: &mut Ipv6FragmentHeader<T>,
    ) -> Result<()> {
        header.check_len()?;
        if self.fragment.offset & 0x7 != 0 {
            return Err(WireError::BadField {
                header: FRAGMENT_HEADER,
                field: "offset",
                value: self.fragment.offset.into(),
                bound: "a multiple of 8",
            });
        }
        header.set_next_header(self.next_header);
        header.clear_reserved();
        header.set_frag_offset(self.fragment.offset);
        header.set_more_frags(self.fragment.more_frags);
        header.set_ident(self.fragment.ident);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hand-built per RFC 8200 § 4: hop-by-hop (8 bytes: PadN), destination options (16 bytes,
    /// length field 1), AH (RFC 4302, length field 4: 24 bytes), then TCP.
    fn chain() -> Vec<u8> {
        let mut bytes = vec![60, 0, 1, 4, 0, 0, 0, 0];
        bytes.extend_from_slice(&[51, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[6, 4]);
        bytes.extend_from_slice(&[0; 22]);
        bytes.extend_from_slice(&[0xaa; 20]); // the TCP header
        bytes
    }

    #[test]
    fn walks_to_upper_layer() {
        let bytes = chain();
        let upper = walk(IpProtocol::HOPOPT, &bytes).unwrap();
        assert_eq!(upper.protocol, IpProtocol::TCP);
        assert_eq!(upper.offset, 8 + 16 + 24);
        assert!(upper.fragment.is_none() && upper.has_upper_header());
    }

    #[test]
    fn truncated_chain_is_an_error() {
        let bytes = chain();
        for cut in [1, 7, 8, 9, 23, 47] {
            assert!(
                matches!(
                    walk(IpProtocol::HOPOPT, &bytes[..cut]),
                    Err(WireError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn fragments() {
        // Fragment header (offset 0, M) then UDP: the first fragment has the upper header.
        let first = [17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
        let upper = walk(IpProtocol::IPV6_FRAG, &first).unwrap();
        assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 8));
        let expected = Ipv6Fragment {
            offset: 0,
            more_frags: true,
            ident: 0xdeadbeef,
        };
        assert_eq!(upper.fragment, Some(expected));
        assert!(upper.has_upper_header());
        // Offset 1448 (181 units << 3 = 0x05a8), no M; what follows is not walked, even if it
        // looks like an extension header.
        let later = [0, 0, 0x05, 0xa8, 0, 0, 0, 1, 0xff];
        let upper = walk(IpProtocol::IPV6_FRAG, &later).unwrap();
        assert_eq!(upper.protocol, IpProtocol::HOPOPT);
        assert_eq!(
            upper.fragment.map(|f| (f.offset, f.more_frags)),
            Some((1448, false))
        );
        assert!(!upper.has_upper_header());
        // Two fragment headers.
        let twice = [44, 0, 0, 1, 0, 0, 0, 1, 17, 0, 0, 1, 0, 0, 0, 1];
        assert!(walk(IpProtocol::IPV6_FRAG, &twice).is_err());
    }

    #[test]
    fn hop_by_hop_must_come_first() {
        let bytes = [0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0];
        assert!(walk(IpProtocol::IPV6_OPTS, &bytes).is_err());
    }

    #[test]
    fn chain_length_is_bounded() {
        // Eight empty destination-options headers then TCP walk; nine do not.
        let mut bytes: Vec<u8> = (0..9).flat_map(|_| [60, 0, 1, 4, 0, 0, 0, 0]).collect();
        bytes[7 * 8] = 6;
        assert_eq!(walk(IpProtocol::IPV6_OPTS, &bytes).unwrap().offset, 64);
        bytes[7 * 8] = 60;
        bytes[8 * 8] = 6;
        assert_eq!(
            walk(IpProtocol::IPV6_OPTS, &bytes),
            Err(bad("header count", 9, "<= 8"))
        );
    }

    #[test]
    fn esp_and_no_next_header_end_the_chain() {
        let upper = walk(IpProtocol::ESP, &[1, 2, 3]).unwrap();
        assert!(!upper.has_upper_header());
        let upper = walk(IpProtocol::IPV6_NONXT, &[]).unwrap();
        assert!(!upper.has_upper_header());
    }

    proptest! {
        #[test]
        fn fragment_round_trip(nh in any::<u8>(), off in 0u16..8192, more in any::<bool>(), ident in any::<u32>()) {
            let repr = Ipv6FragmentRepr {
                next_header: IpProtocol(nh),
                fragment: Ipv6Fragment { offset: off << 3, more_frags: more, ident },
            };
            let mut buf = [0xffu8; 8];
            repr.emit(&mut Ipv6FragmentHeader::new_unchecked(&mut buf[..])).unwrap();
            prop_assert_eq!(buf[1], 0);
            let header = Ipv6FragmentHeader::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv6FragmentRepr::parse(&header), Ok(repr));
        }

        #[test]
        fn walk_never_panics_and_stays_inside(
            first in prop_oneof![Just(0u8), Just(43), Just(44), Just(51), Just(60), any::<u8>()],
            bytes in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(43), Just(44), Just(51), Just(60), any::<u8>()], 0..160),
        ) {
            if let Ok(upper) = walk(IpProtocol(first), &bytes) {
                prop_assert!(upper.offset <= bytes.len());
            }
        }
    }
}
