//! Validation of a guest's transmit `virtio_net_hdr` against the negotiated features and the
//! frame it came with (VIRTIO 1.2 § 5.1.6.2), producing a [`TxOffload`] that the rest of the
//! datapath can trust.
//!
//! Every header field is guest-controlled. The checks follow the driver requirements of
//! § 5.1.6.2.1, the defences of anchors.md § 8.A item 8 (DPDK CVE-2024-11614 `csum_start` past
//! the frame, `7023f3e532` `gso_size` 0) and what Linux `virtio_net_hdr_to_skb` enforces. For
//! GSO the headers are located in the frame itself by [`parse_frame`]; the guest's `hdr_len` is
//! a hint that may be smaller than the real headers (Linux accepts that) and is never used as a
//! bound. A plain `NEEDS_CSUM` frame is only bounds-checked: the spec lets the driver point the
//! checksum anywhere, and parsing it would cost every small packet a header walk.
//! Completing the checksum and segmenting are in [`super::csum`] and [`super::segment`].

use super::csum::CsumRange;
use super::error::OffloadError;
use super::header::{GsoType, VirtioNetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM};
use crate::wire::frame::{parse_frame, FrameLayout, IpFrag, L3Kind, L4};
use crate::wire::ipv4::IpProtocol;

#[cfg(test)]
mod tests;

/// True when feature bit `bit` (VIRTIO 1.2 § 5.1.3, numbers in
/// [`crate::model::offloads::feature`]) is set in `features`.
pub(crate) fn has_feature(features: u64, bit: u32) -> bool {
    bit < u64::BITS && features & (1u64 << bit) != 0
}

/// Offsets of the transport checksum field in its header (RFC 9293 § 3.1, RFC 768).
pub(crate) const TCP_CSUM_OFFSET: u16 = 16;
pub(crate) const UDP_CSUM_OFFSET: u16 = 6;
/// IANA protocol numbers.
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
/// Offset of the TCP flags byte (RFC 9293 § 3.1).
pub(crate) const TCP_FLAGS_OFFSET: usize = 13;
/// TCP flag CWR (RFC 3168 § 6.1): what `VIRTIO_NET_HDR_GSO_ECN` announces.
pub(crate) const TCP_FLAG_CWR: u8 = 0x80;
/// RFC 791 § 3.1: fragment offsets count 8-byte units.
pub(crate) const FRAGMENT_UNIT: u16 = 8;
/// RFC 8200 § 4.5: the fragment extension header.
pub(crate) const IPV6_FRAGMENT_HEADER_LEN: usize = 8;
/// The IPv6 fixed header (RFC 8200 § 3).
pub(crate) const IPV6_HEADER_LEN: usize = 40;

/// What the device negotiated for the guest's transmit direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOffloadCaps {
    /// `VIRTIO_NET_F_CSUM`: the guest may send partial checksums.
    pub csum: bool,
    pub host_tso4: bool,
    pub host_tso6: bool,
    pub host_ecn: bool,
    pub host_ufo: bool,
    pub host_uso: bool,
    /// Most segments one GSO frame may expand to. Linux caps at 65535 (`GSO_MAX_SEGS`); a lower
    /// value bounds how much work one descriptor can cause.
    pub max_segments: u16,
}

impl TxOffloadCaps {
    /// Nothing negotiated: every offload request is refused.
    pub const NONE: TxOffloadCaps = TxOffloadCaps {
        csum: false,
        host_tso4: false,
        host_tso6: false,
        host_ecn: false,
        host_ufo: false,
        host_uso: false,
        max_segments: u16::MAX,
    };

    /// Every transmit offload: for re-validating a header that was validated once already (the
    /// receive side of a port), where only consistency with the frame matters.
    pub const ALL: TxOffloadCaps = TxOffloadCaps {
        csum: true,
        host_tso4: true,
        host_tso6: true,
        host_ecn: true,
        host_ufo: true,
        host_uso: true,
        max_segments: u16::MAX,
    };

    /// The caps from the feature bits the driver acked (`VHOST_USER_SET_FEATURES`).
    pub fn from_features(acked: u64) -> TxOffloadCaps {
        use crate::model::offloads::feature::*;
        let has = |bit| has_feature(acked, bit);
        TxOffloadCaps {
            csum: has(CSUM),
            host_tso4: has(HOST_TSO4),
            host_tso6: has(HOST_TSO6),
            host_ecn: has(HOST_ECN),
            host_ufo: has(HOST_UFO),
            host_uso: has(HOST_USO),
            max_segments: u16::MAX,
        }
    }
}

impl Default for TxOffloadCaps {
    fn default() -> Self {
        Self::NONE
    }
}

/// Which segmentation a GSO frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// `VIRTIO_NET_HDR_GSO_TCPV4`: TSO over IPv4.
    TcpV4,
    /// `VIRTIO_NET_HDR_GSO_TCPV6`: TSO over IPv6.
    TcpV6,
    /// `VIRTIO_NET_HDR_GSO_UDP`: UFO, the datagram is cut into IP fragments.
    Ufo,
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`: USO, separate datagrams of `gso_size` payload each.
    Uso,
}

impl GsoKind {
    /// The `gso_type` value, without the ECN bit.
    pub fn gso_type(self) -> GsoType {
        match self {
            GsoKind::TcpV4 => GsoType::TcpV4,
            GsoKind::TcpV6 => GsoType::TcpV6,
            GsoKind::Ufo => GsoType::Udp,
            GsoKind::Uso => GsoType::UdpL4,
        }
    }

    pub fn is_tcp(self) -> bool {
        matches!(self, GsoKind::TcpV4 | GsoKind::TcpV6)
    }
}

/// The IP version of a GSO frame (USO and UFO exist over both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    V4,
    V6,
}

/// A validated GSO request. Only [`validate`] builds one, so its offsets describe real headers
/// of the frame it was validated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    kind: GsoKind,
    ip: IpVersion,
    gso_size: u16,
    l3_offset: u16,
    l4_offset: u16,
    headers_len: u16,
    ecn: bool,
    segments: u16,
    frame_len: usize,
}

impl Gso {
    pub fn kind(&self) -> GsoKind {
        self.kind
    }

    pub fn ip(&self) -> IpVersion {
        self.ip
    }

    /// Payload bytes per segment as the guest asked (for UFO, fragments use it rounded down to 8).
    pub fn gso_size(&self) -> u16 {
        self.gso_size
    }

    pub fn l3_offset(&self) -> u16 {
        self.l3_offset
    }

    pub fn l4_offset(&self) -> u16 {
        self.l4_offset
    }

    /// L2 + L3 + L4 header bytes, computed from the frame (not the guest's `hdr_len`).
    pub fn headers_len(&self) -> u16 {
        self.headers_len
    }

    /// The partial L4 checksum: `l4_offset` and the checksum field of TCP or UDP.
    pub fn csum(&self) -> CsumRange {
        CsumRange {
            start: self.l4_offset,
            offset: if self.kind.is_tcp() {
                TCP_CSUM_OFFSET
            } else {
                UDP_CSUM_OFFSET
            },
        }
    }

    /// The frame carries TCP CWR (`VIRTIO_NET_HDR_GSO_ECN`, or CWR in the TCP header): a
    /// receiver without `GUEST_ECN` must get segments, with CWR on the first one only.
    pub fn ecn(&self) -> bool {
        self.ecn
    }

    /// How many frames software segmentation produces (1 when the payload fits one segment).
    pub fn segments(&self) -> u16 {
        self.segments
    }

    /// Length of the validated frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// The fragment payload size for UFO: `gso_size` rounded down to the 8-byte unit.
    pub(crate) fn fragment_size(&self) -> usize {
        usize::from(self.gso_size & !(FRAGMENT_UNIT - 1))
    }
}

/// What a validated header asks the device to do with its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOffload {
    /// A plain, fully formed frame. Its checksums are the guest's business (§ 5.1.6.2.2: without
    /// NEEDS_CSUM the device must not rely on the checksum being correct, nor fix it).
    None,
    /// A partial checksum to complete at `start + offset`; the range lies inside the frame.
    Csum(CsumRange),
    /// A large frame to segment (or hand on as GSO), with a partial L4 checksum.
    Gso(Gso),
}

impl TxOffload {
    /// The normalised virtio-net header for this offload: what a guest or tap that accepts it
    /// would be handed, with `hdr_len` from the real headers. `validate(&offload.virtio_hdr(),
    /// frame, &TxOffloadCaps::ALL)` gives the same offload back.
    pub fn virtio_hdr(&self) -> VirtioNetHdr {
        match self {
            TxOffload::None => VirtioNetHdr::default(),
            TxOffload::Csum(csum) => VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                csum_start: csum.start,
                csum_offset: csum.offset,
                ..VirtioNetHdr::default()
            },
            TxOffload::Gso(gso) => {
                let ecn = if gso.ecn { GsoType::ECN } else { 0 };
                let csum = gso.csum();
                VirtioNetHdr {
                    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                    gso_type: gso.kind.gso_type().to_raw() | ecn,
                    hdr_len: gso.headers_len,
                    gso_size: gso.gso_size,
                    csum_start: csum.start,
                    csum_offset: csum.offset,
                    num_buffers: 0,
                }
            }
        }
    }
}

/// Checks the guest's `hdr` against the negotiated `caps` and the `frame` it describes (the bytes
/// after the virtio header). Never panics; every refusal names the field and the bound.
pub fn validate(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    caps: &TxOffloadCaps,
) -> Result<TxOffload, OffloadError> {
    let gso_type = GsoType::from_raw(hdr.gso_type).ok_or(OffloadError::GsoTypeUndefined {
        gso_type: hdr.gso_type,
    })?;
    // § 5.1.6.2.2: the device must ignore flag bits it does not know (DATA_VALID and RSC_INFO
    // are receive-only), so only NEEDS_CSUM is looked at.
    if hdr.needs_csum() && !caps.csum {
        return Err(OffloadError::NeedsCsumNotNegotiated);
    }
    if hdr.ecn() {
        if !caps.host_ecn {
            return Err(OffloadError::EcnNotNegotiated);
        }
        if !matches!(gso_type, GsoType::TcpV4 | GsoType::TcpV6) {
            return Err(OffloadError::EcnWithoutTcp { gso_type });
        }
    }
    let csum = CsumRange {
        start: hdr.csum_start,
        offset: hdr.csum_offset,
    };
    let kind = match gso_type {
        GsoType::None if hdr.needs_csum() => {
            csum.check(frame.len())?;
            return Ok(TxOffload::Csum(csum));
        }
        // § 5.1.6.2.2: without NEEDS_CSUM the device must not use csum_start/csum_offset, and
        // nothing reads hdr_len of a frame that is not segmented.
        GsoType::None => return Ok(TxOffload::None),
        GsoType::TcpV4 => negotiated(caps.host_tso4, gso_type, "HOST_TSO4", GsoKind::TcpV4)?,
        GsoType::TcpV6 => negotiated(caps.host_tso6, gso_type, "HOST_TSO6", GsoKind::TcpV6)?,
        GsoType::Udp => negotiated(caps.host_ufo, gso_type, "HOST_UFO", GsoKind::Ufo)?,
        GsoType::UdpL4 => negotiated(caps.host_uso, gso_type, "HOST_USO", GsoKind::Uso)?,
    };
    if !hdr.needs_csum() {
        return Err(OffloadError::GsoWithoutNeedsCsum { gso_type });
    }
    if hdr.gso_size == 0 {
        return Err(OffloadError::GsoSizeZero { gso_type });
    }
    if kind == GsoKind::Ufo && hdr.gso_size < FRAGMENT_UNIT {
        return Err(OffloadError::UfoGsoSizeBelowUnit {
            gso_size: hdr.gso_size,
            min: FRAGMENT_UNIT,
        });
    }
    if usize::from(hdr.hdr_len) > frame.len() {
        return Err(OffloadError::HdrLenPastFrame {
            hdr_len: hdr.hdr_len,
            frame_len: frame.len(),
        });
    }
    // Bounds first, so that a CVE-2024-11614 header is reported as such.
    csum.check(frame.len())?;
    let layout = parse_frame(frame)?;
    if layout.l3.frag != IpFrag::No {
        return Err(OffloadError::GsoOnFragment {
            frag: layout.l3.frag,
        });
    }
    let (ip, l4) = check_protocols(kind, gso_type, &layout)?;
    // Segmentation rewrites the IP length per segment: bytes past it would become payload.
    if layout.l3.end != frame.len() {
        return Err(OffloadError::GsoLengthMismatch {
            ip_end: layout.l3.end,
            frame_len: frame.len(),
        });
    }
    let l4_csum_offset = if kind.is_tcp() {
        TCP_CSUM_OFFSET
    } else {
        UDP_CSUM_OFFSET
    };
    if usize::from(csum.start) != l4.offset || csum.offset != l4_csum_offset {
        return Err(OffloadError::GsoCsumNotL4 {
            csum_start: csum.start,
            csum_offset: csum.offset,
            l4_offset: l4.offset,
            l4_csum_offset,
        });
    }
    // parse_frame proved the L4 header inside the IP packet, hence inside the frame.
    let headers_len = l4.offset.saturating_add(l4.header_len);
    let too_long = OffloadError::HeadersTooLong {
        headers_len,
        max: u16::MAX,
    };
    // l3.offset < l4.offset <= headers_len, so all three fit when headers_len does.
    let headers_len = u16::try_from(headers_len).map_err(|_| too_long)?;
    let l3_offset = u16::try_from(layout.l3.offset).map_err(|_| too_long)?;
    let l4_offset = u16::try_from(l4.offset).map_err(|_| too_long)?;
    let tcp_flags = frame.get(l4.offset + TCP_FLAGS_OFFSET).copied();
    let mut gso = Gso {
        kind,
        ip,
        gso_size: hdr.gso_size,
        l3_offset,
        l4_offset,
        headers_len,
        ecn: hdr.ecn() || (kind.is_tcp() && tcp_flags.unwrap_or(0) & TCP_FLAG_CWR != 0),
        segments: 1,
        frame_len: frame.len(),
    };
    let segments = plan_segments(&gso, layout.l3.header_len)?;
    gso.segments = u16::try_from(segments)
        .ok()
        .filter(|&count| count <= caps.max_segments)
        .ok_or(OffloadError::TooManySegments {
            segments,
            max: caps.max_segments,
        })?;
    Ok(TxOffload::Gso(gso))
}

fn negotiated(
    on: bool,
    gso_type: GsoType,
    feature: &'static str,
    kind: GsoKind,
) -> Result<GsoKind, OffloadError> {
    if on {
        Ok(kind)
    } else {
        Err(OffloadError::GsoTypeNotNegotiated { gso_type, feature })
    }
}

/// TCPV4 needs IPv4/TCP, TCPV6 IPv6/TCP, UDP and UDP_L4 UDP over either (Linux
/// `virtio_net_hdr_to_skb` and § 5.1.6.2.1).
fn check_protocols(
    kind: GsoKind,
    gso_type: GsoType,
    layout: &FrameLayout,
) -> Result<(IpVersion, L4), OffloadError> {
    let ip = match layout.l3.kind {
        L3Kind::Ipv4 => Some(IpVersion::V4),
        L3Kind::Ipv6 => Some(IpVersion::V6),
        L3Kind::Arp | L3Kind::Other => None,
    };
    let proto = layout.l4.map(|l4| l4.proto);
    let fits = matches!(
        (kind, ip, proto),
        (GsoKind::TcpV4, Some(IpVersion::V4), Some(IpProtocol::TCP))
            | (GsoKind::TcpV6, Some(IpVersion::V6), Some(IpProtocol::TCP))
            | (GsoKind::Ufo | GsoKind::Uso, Some(_), Some(IpProtocol::UDP))
    );
    match (ip, layout.l4) {
        (Some(ip), Some(l4)) if fits => Ok((ip, l4)),
        _ => Err(OffloadError::GsoProtocolMismatch {
            gso_type,
            ethertype: layout.ethertype.0,
            ip_protocol: layout.l3.protocol.map(|protocol| protocol.0),
        }),
    }
}

/// Counts the segments and checks that the largest one still fits the IP length field.
/// `l3_header_len` is IHL × 4 for IPv4, 40 plus extension headers for IPv6.
fn plan_segments(gso: &Gso, l3_header_len: usize) -> Result<usize, OffloadError> {
    let frame_len = gso.frame_len;
    let l3_offset = usize::from(gso.l3_offset);
    // Bytes of the IP length field that every segment repeats (the replicated headers after
    // the field's origin), and the bytes that are cut.
    let (repeated, cut_len, unit) = match gso.kind {
        GsoKind::Ufo => {
            // UFO cuts the UDP header + payload; only L2 + L3 are replicated.
            let l4_len = frame_len.saturating_sub(usize::from(gso.l4_offset));
            if l4_len <= usize::from(gso.gso_size) {
                return Ok(1);
            }
            let ip_header = match gso.ip {
                IpVersion::V4 => l3_header_len,
                // The payload length counts the extension headers and the added fragment
                // header, not the fixed header.
                IpVersion::V6 => l3_header_len
                    .saturating_sub(IPV6_HEADER_LEN)
                    .saturating_add(IPV6_FRAGMENT_HEADER_LEN),
            };
            (ip_header, l4_len, gso.fragment_size())
        }
        _ => {
            let payload = frame_len.saturating_sub(usize::from(gso.headers_len));
            let headers = usize::from(gso.headers_len).saturating_sub(l3_offset);
            let repeated = match gso.ip {
                IpVersion::V4 => headers,
                IpVersion::V6 => headers.saturating_sub(IPV6_HEADER_LEN),
            };
            (repeated, payload, usize::from(gso.gso_size))
        }
    };
    if unit == 0 {
        // Unreachable after the gso_size checks; refuse rather than divide by zero.
        return Err(OffloadError::GsoSizeZero {
            gso_type: gso.kind.gso_type(),
        });
    }
    let largest = repeated.saturating_add(cut_len.min(unit));
    if largest > usize::from(u16::MAX) {
        return Err(OffloadError::SegmentTooLong {
            ip_len: largest,
            max: u16::MAX,
        });
    }
    Ok(cut_len.div_ceil(unit).max(1))
}
