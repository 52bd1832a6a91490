//! The virtio-net per-packet header, `struct virtio_net_hdr_v1` (VIRTIO 1.2 § 5.1.6).
//!
//! With `VIRTIO_F_VERSION_1` the header is always 12 bytes, little-endian, and carries
//! `num_buffers` (used on receive with `MRG_RXBUF`; ignored on transmit). This file only converts
//! between bytes and fields; what the values mean for a given frame is checked elsewhere.

/// Length of `virtio_net_hdr_v1` (VIRTIO 1.2 § 5.1.6: 12 bytes with VERSION_1 or MRG_RXBUF).
pub const VIRTIO_NET_HDR_LEN: usize = 12;

/// `flags`: the checksum from `csum_start` to the end still has to be computed and stored at
/// `csum_start + csum_offset` (VIRTIO 1.2 § 5.1.6.2).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the device already validated the checksums (receive direction, § 5.1.6.4).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `flags`: `csum_start`/`csum_offset` carry coalescing info (RSC_EXT; not offered by vif).
pub const VIRTIO_NET_HDR_F_RSC_INFO: u8 = 4;

/// `gso_type` values (VIRTIO 1.2 § 5.1.6), without the ECN bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoType {
    None,
    TcpV4,
    /// UFO: the datagram is split into IP fragments.
    Udp,
    TcpV6,
    /// USO: the datagram is split into separate UDP datagrams of `gso_size` payload each.
    UdpL4,
}

impl GsoType {
    pub const NONE: u8 = 0;
    pub const TCPV4: u8 = 1;
    pub const UDP: u8 = 3;
    pub const TCPV6: u8 = 4;
    pub const UDP_L4: u8 = 5;
    /// Set together with TCPV4/TCPV6 when the TCP ECN bit must be honoured (`HOST_ECN`).
    pub const ECN: u8 = 0x80;

    /// The GSO kind in `gso_type` with the ECN bit masked off; `None` for an undefined value.
    pub fn from_raw(gso_type: u8) -> Option<GsoType> {
        match gso_type & !Self::ECN {
            Self::NONE => Some(GsoType::None),
            Self::TCPV4 => Some(GsoType::TcpV4),
            Self::UDP => Some(GsoType::Udp),
            Self::TCPV6 => Some(GsoType::TcpV6),
            Self::UDP_L4 => Some(GsoType::UdpL4),
            _ => None,
        }
    }

    pub fn to_raw(self) -> u8 {
        match self {
            GsoType::None => Self::NONE,
            GsoType::TcpV4 => Self::TCPV4,
            GsoType::Udp => Self::UDP,
            GsoType::TcpV6 => Self::TCPV6,
            GsoType::UdpL4 => Self::UDP_L4,
        }
    }
}

/// `struct virtio_net_hdr_v1`, fields as on the wire (host byte order after parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct VirtioNetHdr {
    pub flags: u8,
    /// Raw `gso_type`, ECN bit included; see [`GsoType::from_raw`].
    pub gso_type: u8,
    /// Length of the headers to replicate in each segment (a hint: guests may get it wrong).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// Receive only, with `MRG_RXBUF`: how many buffers this packet spans.
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// Parses the 12 header bytes. Any bit pattern is a header; meaning is checked later.
    pub fn from_bytes(bytes: &[u8; VIRTIO_NET_HDR_LEN]) -> VirtioNetHdr {
        let le16 = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        VirtioNetHdr {
            flags: bytes[0],
            gso_type: bytes[1],
            hdr_len: le16(2),
            gso_size: le16(4),
            csum_start: le16(6),
            csum_offset: le16(8),
            num_buffers: le16(10),
        }
    }

    /// Parses the header at the start of `bytes`; `None` if there are fewer than 12 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<VirtioNetHdr> {
        let header: &[u8; VIRTIO_NET_HDR_LEN] = bytes.get(..VIRTIO_NET_HDR_LEN)?.try_into().ok()?;
        Some(Self::from_bytes(header))
    }

    pub fn to_bytes(&self) -> [u8; VIRTIO_NET_HDR_LEN] {
        let mut out = [0u8; VIRTIO_NET_HDR_LEN];
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        out[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        out
    }

    pub fn needs_csum(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    pub fn data_valid(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0
    }

    pub fn ecn(&self) -> bool {
        self.gso_type & GsoType::ECN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_little_endian() {
        // Built by hand from VIRTIO 1.2 § 5.1.6: NEEDS_CSUM, TCPV4, hdr_len 54, gso_size 1448,
        // csum_start 34, csum_offset 16, num_buffers 1.
        let bytes = [1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 1, 0];
        let header = VirtioNetHdr::from_bytes(&bytes);
        assert!(header.needs_csum() && !header.data_valid());
        assert_eq!(GsoType::from_raw(header.gso_type), Some(GsoType::TcpV4));
        assert_eq!((header.hdr_len, header.gso_size), (54, 1448));
        assert_eq!(
            (header.csum_start, header.csum_offset, header.num_buffers),
            (34, 16, 1)
        );
        assert_eq!(header.to_bytes(), bytes);
    }

    #[test]
    fn gso_type_masks_ecn_and_rejects_undefined() {
        assert_eq!(GsoType::from_raw(0x84), Some(GsoType::TcpV6));
        assert_eq!(GsoType::from_raw(2), None);
        assert_eq!(GsoType::from_raw(0x7f), None);
        assert!(VirtioNetHdr {
            gso_type: 0x81,
            ..Default::default()
        }
        .ecn());
    }

    #[test]
    fn short_slice_is_none() {
        assert_eq!(VirtioNetHdr::from_slice(&[0; 11]), None);
        assert!(VirtioNetHdr::from_slice(&[0; 13]).is_some());
    }

    proptest! {
        #[test]
        fn bytes_round_trip(bytes in any::<[u8; VIRTIO_NET_HDR_LEN]>()) {
            prop_assert_eq!(VirtioNetHdr::from_bytes(&bytes).to_bytes(), bytes);
        }
    }
}
