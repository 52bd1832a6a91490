//! Why a guest's virtio-net header cannot be trusted with its frame, or why a validated frame
//! cannot be segmented in software.
//!
//! Every variant names the header field and the bound it broke, so that the datapath can turn it
//! into a `DropReason` and a counter without logging per packet (STYLE § 4).

use super::header::GsoType;
use crate::wire::frame::IpFrag;
use crate::wire::WireError;

/// An offload request that vif refuses. Returned, never panicked: every field is guest-controlled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// VIRTIO 1.2 § 5.1.6.2.1: without `VIRTIO_NET_F_CSUM` the driver must leave `flags` zero.
    #[error("flags has NEEDS_CSUM but VIRTIO_NET_F_CSUM was not negotiated")]
    NeedsCsumNotNegotiated,
    /// DPDK CVE-2024-11614: a `csum_start` past the frame made the checksum loop read beyond it.
    #[error("csum_start {csum_start} is not below the frame length {frame_len}")]
    CsumStartPastFrame { csum_start: u16, frame_len: usize },
    /// The 2-byte checksum field at `csum_start + csum_offset` must lie inside the frame.
    #[error(
        "checksum field at csum_start {csum_start} + csum_offset {csum_offset} needs 2 bytes, \
         frame has {frame_len}"
    )]
    CsumFieldPastFrame {
        csum_start: u16,
        csum_offset: u16,
        frame_len: usize,
    },
    /// `gso_type` (ECN bit masked) is none of the values VIRTIO 1.2 § 5.1.6 defines.
    #[error("gso_type {gso_type:#04x} is not defined by VIRTIO 1.2 § 5.1.6")]
    GsoTypeUndefined { gso_type: u8 },
    /// VIRTIO 1.2 § 5.1.6.2.1: the driver must not use a GSO type whose feature it did not ack.
    #[error("gso_type {gso_type:?} needs feature {feature}, which was not negotiated")]
    GsoTypeNotNegotiated {
        gso_type: GsoType,
        feature: &'static str,
    },
    /// VIRTIO 1.2 § 5.1.6.2.1: `VIRTIO_NET_HDR_GSO_ECN` only with `VIRTIO_NET_F_HOST_ECN`.
    #[error("gso_type has the ECN bit but VIRTIO_NET_F_HOST_ECN was not negotiated")]
    EcnNotNegotiated,
    /// The ECN bit says "TCP CWR is set"; it means nothing without TCP segmentation.
    #[error("gso_type {gso_type:?} has the ECN bit, which applies to TCPV4/TCPV6 only")]
    EcnWithoutTcp { gso_type: GsoType },
    /// VIRTIO 1.2 § 5.1.6.2.1: a GSO frame must also set NEEDS_CSUM (Linux requires it too).
    #[error("gso_type {gso_type:?} without NEEDS_CSUM in flags")]
    GsoWithoutNeedsCsum { gso_type: GsoType },
    /// DPDK `7023f3e532`: a zero `gso_size` divides by zero or loops forever.
    #[error("gso_size is 0 for gso_type {gso_type:?}")]
    GsoSizeZero { gso_type: GsoType },
    /// UFO cuts the datagram at multiples of 8 bytes (RFC 791 fragment offset unit).
    #[error("gso_size {gso_size} is below the fragment unit {min} for UFO")]
    UfoGsoSizeBelowUnit { gso_size: u16, min: u16 },
    /// `hdr_len` is only a hint (VIRTIO 1.2 § 5.1.6.2.2), but one past the frame is a lie.
    #[error("hdr_len {hdr_len} exceeds the frame length {frame_len}")]
    HdrLenPastFrame { hdr_len: u16, frame_len: usize },
    /// The GSO type does not describe the frame (e.g. TCPV4 on an IPv6 or a UDP frame).
    #[error(
        "gso_type {gso_type:?} does not match the frame: EtherType {ethertype:#06x}, \
         IP protocol {ip_protocol:?}"
    )]
    GsoProtocolMismatch {
        gso_type: GsoType,
        ethertype: u16,
        ip_protocol: Option<u8>,
    },
    /// A GSO frame must be one whole IP datagram, not a fragment of one.
    #[error("GSO on an IP fragment ({frag:?})")]
    GsoOnFragment { frag: IpFrag },
    /// The IP length field must cover the frame exactly: segmentation rewrites it per segment and
    /// trailing bytes would otherwise become payload.
    #[error("IP header says the packet ends at byte {ip_end}, frame has {frame_len}")]
    GsoLengthMismatch { ip_end: usize, frame_len: usize },
    /// VIRTIO 1.2 § 5.1.6.2.1 / Linux `virtio_net_hdr_to_skb`: for GSO the partial checksum is
    /// the transport checksum, at `l4_offset + l4_csum_offset`.
    #[error(
        "csum_start {csum_start} / csum_offset {csum_offset} must be the L4 checksum at \
         {l4_offset} / {l4_csum_offset}"
    )]
    GsoCsumNotL4 {
        csum_start: u16,
        csum_offset: u16,
        l4_offset: usize,
        l4_csum_offset: u16,
    },
    /// The headers replicated into each segment must fit the 16-bit virtio `hdr_len`.
    #[error("headers span {headers_len} bytes, more than {max}")]
    HeadersTooLong { headers_len: usize, max: u16 },
    /// A segment's IP packet would not fit the 16-bit IPv4 total length / IPv6 payload length.
    #[error("a segment's IP length field would be {ip_len}, more than {max}")]
    SegmentTooLong { ip_len: usize, max: u16 },
    /// Bounds the work one frame can cause (gso_size 1 on 64 KiB would make 65535 segments).
    #[error("{segments} segments exceed the limit of {max}")]
    TooManySegments { segments: usize, max: u16 },
    /// The frame's headers do not parse.
    #[error("frame headers: {0}")]
    Frame(#[from] WireError),
    /// The frame handed to completion or segmentation is not the one that was validated.
    #[error("frame has {frame_len} bytes, the validated offload needs {need}")]
    FrameMismatch { need: usize, frame_len: usize },
    /// A valid request that the software path does not implement.
    #[error("software segmentation of {what} is not supported")]
    Unsupported { what: &'static str },
}
