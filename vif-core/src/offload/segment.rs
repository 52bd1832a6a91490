//! Software segmentation of validated GSO frames, for an uplink or a receiving guest that cannot
//! take large frames: TSO (RFC 9293 segments) and USO (separate UDP datagrams) here, UFO (IP
//! fragments) in `segment/fragment.rs`.
//!
//! Per TCP segment, as Linux `tcp_gso_segment`/`inet_gso_segment` do: the headers are copied,
//! the IPv4 total length, identification (incremented per segment) and header checksum or the
//! IPv6 payload length are rewritten, the sequence number advances by the payload offset, FIN
//! and PSH stay on the last segment only and CWR on the first only (RFC 3168 § 6.1.2). The L4
//! checksum is computed from the addresses, not from the guest's partial sum, so a guest that
//! lied about it only breaks its own packets. USO rewrites the UDP length instead of the TCP
//! fields (Linux `__udp_gso_segment`).
//!
//! [`Segmenter`] owns its output buffer and segment table and reuses them, so segmentation does
//! not allocate once they have grown to the largest frame seen.

mod fragment;
#[cfg(test)]
mod tests;

use core::ops::Range;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::OffloadError;
use super::header::{VirtioNetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM};
use super::validate::{
    Gso, GsoKind, IpVersion, IPPROTO_TCP, IPPROTO_UDP, IPV6_HEADER_LEN, TCP_FLAG_CWR,
};
use crate::checksum;

/// TCP flags that belong to the end of the byte stream (RFC 9293 § 3.1).
const TCP_FLAG_FIN: u8 = 0x01;
const TCP_FLAG_PSH: u8 = 0x08;

/// How segments carry their L4 checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentCsum {
    /// Computed and stored: for uplinks and for guests without `GUEST_CSUM`.
    #[default]
    Full,
    /// The pseudo-header sum is stored and each segment goes out with `NEEDS_CSUM` (Linux
    /// `CHECKSUM_PARTIAL`), for a guest with `GUEST_CSUM`: it skips one pass over the payload.
    /// UFO fragments always get [`SegmentCsum::Full`]: the checksum spans the whole datagram.
    Partial,
}

/// Reusable software segmentation state. One per queue worker.
#[derive(Debug, Default)]
pub struct Segmenter {
    out: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// The next IPv6 fragment identification (RFC 8200 § 4.5). Seed it unpredictably with
    /// [`Segmenter::with_fragment_id_seed`] (RFC 7739).
    next_fragment_id: u32,
}

impl Segmenter {
    pub fn new() -> Segmenter {
        Segmenter::default()
    }

    /// Preallocates for `bytes` of output and `segments` segments, so that even the first
    /// frames do not allocate.
    pub fn with_capacity(bytes: usize, segments: usize) -> Segmenter {
        Segmenter {
            out: Vec::with_capacity(bytes),
            ranges: Vec::with_capacity(segments),
            next_fragment_id: 0,
        }
    }

    /// Starts IPv6 fragment identifications at `seed`.
    pub fn with_fragment_id_seed(mut self, seed: u32) -> Segmenter {
        self.next_fragment_id = seed;
        self
    }

    /// Segments `frame`, which `gso` was validated with. Fails on a frame that does not match
    /// `gso`, and with [`OffloadError::Unsupported`] for the few layouts not implemented.
    pub fn segment(
        &mut self,
        frame: &[u8],
        gso: &Gso,
        csum: SegmentCsum,
    ) -> Result<Segments<'_>, OffloadError> {
        if frame.len() != gso.frame_len() {
            return Err(OffloadError::FrameMismatch {
                need: gso.frame_len(),
                frame_len: frame.len(),
            });
        }
        self.out.clear();
        self.ranges.clear();
        let result = match gso.kind() {
            GsoKind::TcpV4 | GsoKind::TcpV6 | GsoKind::Uso => self.split_l4(frame, gso, csum),
            GsoKind::Ufo => self.fragment(frame, gso),
        };
        if let Err(error) = result {
            self.ranges.clear();
            return Err(error);
        }
        let partial = csum == SegmentCsum::Partial && gso.kind() != GsoKind::Ufo;
        let virtio_hdr = if partial {
            let range = gso.csum();
            VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                hdr_len: gso.headers_len(),
                csum_start: range.start,
                csum_offset: range.offset,
                ..VirtioNetHdr::default()
            }
        } else {
            VirtioNetHdr::default()
        };
        Ok(Segments {
            out: &self.out,
            ranges: &self.ranges,
            virtio_hdr,
        })
    }

    /// TSO and USO: every segment is a complete L4 packet with a copy of all headers.
    fn split_l4(&mut self, frame: &[u8], gso: &Gso, csum: SegmentCsum) -> Result<(), OffloadError> {
        let headers_len = usize::from(gso.headers_len());
        let l3 = usize::from(gso.l3_offset());
        let l4 = usize::from(gso.l4_offset());
        let (headers, payload) = split_at_checked(frame, headers_len)?;
        let addrs = IpAddrs::read(headers, l3, l4, gso.ip())?;
        let tcp = gso.kind().is_tcp();
        let (base_seq, flags) = if tcp {
            (get32(headers, l4 + 4)?, get8(headers, l4 + 13)?)
        } else {
            (0, 0)
        };
        let base_ident = match gso.ip() {
            IpVersion::V4 => get16(headers, l3 + 4)?,
            IpVersion::V6 => 0,
        };
        let gso_size = usize::from(gso.gso_size());
        let count = payload.len().div_ceil(gso_size).max(1);
        self.reserve(count, headers_len, payload.len());
        for index in 0..count {
            let offset = index * gso_size;
            let chunk = payload
                .get(offset..payload.len().min(offset + gso_size))
                .unwrap_or_default();
            let start = self.out.len();
            self.out.extend_from_slice(headers);
            self.out.extend_from_slice(chunk);
            let segment = self.out.get_mut(start..).unwrap_or_default();
            let l4_len = segment.len().saturating_sub(l4);
            // Segments per frame are bounded by max_segments ≤ 65535, so the id wraps at most
            // once, as in Linux.
            let ident = base_ident.wrapping_add(index as u16);
            fix_ip(segment, gso.ip(), l3, l4, ident)?;
            let field = if tcp {
                // Sequence numbers are modulo 2^32 (RFC 9293 § 3.4).
                put32(segment, l4 + 4, base_seq.wrapping_add(offset as u32))?;
                let mut seg_flags = flags;
                if index + 1 < count {
                    seg_flags &= !(TCP_FLAG_FIN | TCP_FLAG_PSH);
                }
                if index > 0 {
                    seg_flags &= !TCP_FLAG_CWR;
                }
                put8(segment, l4 + 13, seg_flags)?;
                l4 + 16
            } else {
                put16(segment, l4 + 4, l4_len as u16)?;
                l4 + 6
            };
            let protocol = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
            let pseudo = addrs.pseudo_header(protocol, l4_len);
            let value = match csum {
                SegmentCsum::Partial => pseudo,
                SegmentCsum::Full => {
                    put16(segment, field, 0)?;
                    let l4_bytes = segment.get(l4..).unwrap_or_default();
                    let sum =
                        checksum::finish(checksum::combine(&[pseudo, checksum::data(l4_bytes)]));
                    // RFC 768: a computed zero is sent as all ones; zero means "no checksum".
                    if sum == 0 && !tcp {
                        0xffff
                    } else {
                        sum
                    }
                }
            };
            put16(segment, field, value)?;
            self.ranges.push(start..self.out.len());
        }
        Ok(())
    }

    fn reserve(&mut self, segments: usize, headers_len: usize, payload_len: usize) {
        let bytes = segments
            .saturating_mul(headers_len)
            .saturating_add(payload_len);
        self.out.reserve(bytes);
        self.ranges.reserve(segments);
    }
}

/// The segments of one frame, borrowed from the [`Segmenter`] until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Segments<'a> {
    out: &'a [u8],
    ranges: &'a [Range<usize>],
    virtio_hdr: VirtioNetHdr,
}

impl<'a> Segments<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The header each segment goes to a guest with: `NEEDS_CSUM` for
    /// [`SegmentCsum::Partial`], otherwise no flags (checksums are complete).
    pub fn virtio_hdr(&self) -> VirtioNetHdr {
        self.virtio_hdr
    }

    /// The segments in order, each a complete frame.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let out = self.out;
        self.ranges
            .iter()
            .map(move |range| out.get(range.clone()).unwrap_or_default())
    }
}

/// Source and destination of the IP header, for the pseudo-header.
#[derive(Debug, Clone, Copy)]
pub(super) enum IpAddrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl IpAddrs {
    /// Reads the addresses of the IP header at `l3`. IPv6 extension headers are refused: a
    /// routing header would change the pseudo-header destination (RFC 8200 § 8.1).
    pub(super) fn read(
        headers: &[u8],
        l3: usize,
        l4: usize,
        ip: IpVersion,
    ) -> Result<IpAddrs, OffloadError> {
        match ip {
            IpVersion::V4 => Ok(IpAddrs::V4(
                Ipv4Addr::from(get32(headers, l3 + 12)?),
                Ipv4Addr::from(get32(headers, l3 + 16)?),
            )),
            IpVersion::V6 => {
                if l4 != l3 + IPV6_HEADER_LEN {
                    return Err(OffloadError::Unsupported {
                        what: "IPv6 extension headers",
                    });
                }
                Ok(IpAddrs::V6(
                    Ipv6Addr::from(get128(headers, l3 + 8)?),
                    Ipv6Addr::from(get128(headers, l3 + 24)?),
                ))
            }
        }
    }

    pub(super) fn pseudo_header(&self, protocol: u8, l4_len: usize) -> u16 {
        match self {
            // validate() proved every segment's IP length fits 16 bits.
            IpAddrs::V4(src, dst) => checksum::pseudo_header_v4(src, dst, protocol, l4_len as u16),
            IpAddrs::V6(src, dst) => checksum::pseudo_header_v6(src, dst, protocol, l4_len as u32),
        }
    }
}

/// Rewrites the IP length (and for IPv4 the identification and header checksum) of a segment
/// whose IP header starts at `l3` and L4 header at `l4`.
fn fix_ip(
    segment: &mut [u8],
    ip: IpVersion,
    l3: usize,
    l4: usize,
    ident: u16,
) -> Result<(), OffloadError> {
    let ip_len = segment.len().saturating_sub(l3);
    match ip {
        IpVersion::V4 => {
            put16(segment, l3 + 2, ip_len as u16)?;
            put16(segment, l3 + 4, ident)?;
            fill_ipv4_checksum(segment, l3, l4)
        }
        IpVersion::V6 => put16(
            segment,
            l3 + 4,
            ip_len.saturating_sub(IPV6_HEADER_LEN) as u16,
        ),
    }
}

/// Recomputes the IPv4 header checksum over `l3..header_end` (RFC 791 § 3.1).
pub(super) fn fill_ipv4_checksum(
    segment: &mut [u8],
    l3: usize,
    header_end: usize,
) -> Result<(), OffloadError> {
    put16(segment, l3 + 10, 0)?;
    let header = segment
        .get(l3..header_end)
        .ok_or(mismatch(header_end, segment.len()))?;
    let sum = checksum::finish(checksum::data(header));
    put16(segment, l3 + 10, sum)
}

pub(super) fn mismatch(need: usize, frame_len: usize) -> OffloadError {
    OffloadError::FrameMismatch { need, frame_len }
}

pub(super) fn split_at_checked(bytes: &[u8], at: usize) -> Result<(&[u8], &[u8]), OffloadError> {
    bytes.split_at_checked(at).ok_or(mismatch(at, bytes.len()))
}

fn get8(bytes: &[u8], at: usize) -> Result<u8, OffloadError> {
    bytes.get(at).copied().ok_or(mismatch(at + 1, bytes.len()))
}

pub(super) fn get16(bytes: &[u8], at: usize) -> Result<u16, OffloadError> {
    let field: [u8; 2] = bytes
        .get(at..at + 2)
        .and_then(|field| field.try_into().ok())
        .ok_or(mismatch(at + 2, bytes.len()))?;
    Ok(u16::from_be_bytes(field))
}

fn get32(bytes: &[u8], at: usize) -> Result<u32, OffloadError> {
    let field: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|field| field.try_into().ok())
        .ok_or(mismatch(at + 4, bytes.len()))?;
    Ok(u32::from_be_bytes(field))
}

fn get128(bytes: &[u8], at: usize) -> Result<u128, OffloadError> {
    let field: [u8; 16] = bytes
        .get(at..at + 16)
        .and_then(|field| field.try_into().ok())
        .ok_or(mismatch(at + 16, bytes.len()))?;
    Ok(u128::from_be_bytes(field))
}

fn put8(bytes: &mut [u8], at: usize, value: u8) -> Result<(), OffloadError> {
    let len = bytes.len();
    *bytes.get_mut(at).ok_or(mismatch(at + 1, len))? = value;
    Ok(())
}

pub(super) fn put16(bytes: &mut [u8], at: usize, value: u16) -> Result<(), OffloadError> {
    put_bytes(bytes, at, &value.to_be_bytes())
}

fn put32(bytes: &mut [u8], at: usize, value: u32) -> Result<(), OffloadError> {
    put_bytes(bytes, at, &value.to_be_bytes())
}

pub(super) fn put_bytes(bytes: &mut [u8], at: usize, value: &[u8]) -> Result<(), OffloadError> {
    let len = bytes.len();
    bytes
        .get_mut(at..at + value.len())
        .ok_or(mismatch(at + value.len(), len))?
        .copy_from_slice(value);
    Ok(())
}
