//! TCP (RFC 9293 § 3.1): the segment header, its options and its checksum.
//!
//! TCP has no length field: a [`TcpPacket`] spans exactly the segment, so the caller slices the
//! buffer to the IP payload length first. [`TcpPacket::check_len`] proves the data offset is at
//! least 5 words and fits the buffer; options are walked by [`TcpOptionIter`], which consumes at
//! least one byte per step and stops at the first malformed option, so it always terminates.
//! The checksum helpers take the pseudo-header sum from the caller (protocol 6, segment length)
//! and so work over IPv4 and IPv6 alike. Connection state, sequence-number arithmetic and
//! segmentation (TSO, in `offload`) are out of scope.

use super::{ensure_len, Csum, Result, WireError};
use crate::checksum;

mod flags;
mod option;
pub use flags::TcpFlags;
pub use option::{option_kind, TcpOption, TcpOptionIter};

/// Length of the header without options.
pub const HEADER_LEN: usize = field::OPTIONS;

/// Length of the header with the most options the 4-bit data offset allows.
pub const MAX_HEADER_LEN: usize = 60;

const HEADER: &str = "tcp";

mod field {
    use crate::wire::field::*;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (high nibble) and reserved bits (low nibble).
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS: usize = 20;
}

/// A view over a TCP segment: header, options and payload, ending at the end of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than the data offset
    /// says.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len): use this on anything received.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Proves that no accessor can panic: the fixed header fits, the data offset is at least 5
    /// words (RFC 9293 § 3.1) and the header it describes fits the buffer.
    pub fn check_len(&self) -> Result<()> {
        let buffer = self.buffer.as_ref();
        ensure_len(HEADER, buffer, HEADER_LEN)?;
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::BadField {
                header: HEADER,
                field: "data offset",
                value: u32::from(self.data_offset()),
                bound: ">= 5",
            });
        }
        ensure_len(HEADER, buffer, header_len)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    pub fn seq_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    pub fn ack_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// The data offset field: header length in 32-bit words.
    pub fn data_offset(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFFSET] >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// The four reserved bits after the data offset (RFC 9293 § 3.1; AccECN uses one of them).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFFSET] & 0x0f
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags::from_bits(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn window_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::WINDOW])
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn urgent_at(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::URGENT])
    }

    /// The option bytes, between the fixed header and the data offset.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// Walks the options; see [`TcpOptionIter`].
    pub fn option_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum verifies against `pseudo_sum` (the pseudo-header sum for protocol
    /// 6 and this segment's length).
    pub fn verify_checksum(&self, pseudo_sum: u16) -> bool {
        checksum::combine(&[pseudo_sum, checksum::data(self.buffer.as_ref())]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_seq_number(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_ack_number(&mut self, ack: u32) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&ack.to_be_bytes());
    }

    /// Sets the data offset from the low 4 bits of `words`, keeping the reserved bits.
    /// Call [`check_len`](TcpPacket::check_len) again if it may exceed the buffer.
    pub fn set_data_offset(&mut self, words: u8) {
        let byte = &mut self.buffer.as_mut()[field::DATA_OFFSET];
        *byte = (*byte & 0x0f) | (words << 4);
    }

    /// Sets the header length in bytes (a multiple of 4 in 20..=60; other values are rounded
    /// down to a word by the encoding).
    pub fn set_header_len(&mut self, len: usize) {
        self.set_data_offset(u8::try_from(len / 4).unwrap_or(0x0f) & 0x0f);
    }

    pub fn set_reserved(&mut self, bits: u8) {
        let byte = &mut self.buffer.as_mut()[field::DATA_OFFSET];
        *byte = (*byte & 0xf0) | (bits & 0x0f);
    }

    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.bits();
    }

    pub fn set_window_len(&mut self, window: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&window.to_be_bytes());
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    pub fn set_urgent_at(&mut self, urgent: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&urgent.to_be_bytes());
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and writes the checksum over the whole segment and `pseudo_sum`.
    pub fn fill_checksum(&mut self, pseudo_sum: u16) {
        self.set_checksum(0);
        let sum = checksum::combine(&[pseudo_sum, checksum::data(self.buffer.as_ref())]);
        self.set_checksum(checksum::finish(sum));
    }

    /// Writes `pseudo_sum` uncomplemented, as a device expects for a partial checksum (virtio
    /// `NEEDS_CSUM` with `csum_offset` 16).
    pub fn fill_partial_checksum(&mut self, pseudo_sum: u16) {
        self.set_checksum(pseudo_sum);
    }
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The timestamps option values (RFC 7323 § 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpTimestamps {
    pub tsval: u32,
    pub tsecr: u32,
}

/// The typed content of a TCP header and the options vif understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: TcpFlags,
    pub window_len: u16,
    pub urgent_at: u16,
    pub max_seg_size: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: Option<TcpTimestamps>,
    pub payload_len: usize,
}

impl TcpRepr {
    /// Reads a received segment. With [`Csum::Verify`] the checksum must verify against
    /// `pseudo_sum`; [`Csum::Partial`] and [`Csum::Ignore`] accept any. A malformed option is an
    /// error; unknown options are skipped; a repeated option keeps its last value.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &TcpPacket<T>,
        pseudo_sum: u16,
        csum: Csum,
    ) -> Result<TcpRepr> {
        packet.check_len()?;
        if csum == Csum::Verify && !packet.verify_checksum(pseudo_sum) {
            return Err(WireError::BadChecksum { header: HEADER });
        }
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            payload_len: packet.payload().len(),
        };
        for option in packet.option_iter() {
            match option? {
                TcpOption::MaxSegmentSize(mss) => repr.max_seg_size = Some(mss),
                TcpOption::WindowScale(shift) => repr.window_scale = Some(shift),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::Timestamps { tsval, tsecr } => {
                    repr.timestamps = Some(TcpTimestamps { tsval, tsecr })
                }
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(repr)
    }

    /// The options this repr emits, laid out as Linux's `tcp_options_write` does: each option
    /// word-aligned with NOPs, SACK-permitted sharing a word run with the timestamps.
    fn options(&self) -> impl Iterator<Item = TcpOption<'static>> {
        use TcpOption::{NoOperation as Nop, SackPermitted};
        let ts = self.timestamps.map(|ts| TcpOption::Timestamps {
            tsval: ts.tsval,
            tsecr: ts.tsecr,
        });
        let (sack_with_ts, sack_alone) = match (self.sack_permitted, ts.is_some()) {
            (true, true) => (Some(SackPermitted), false),
            (sack, _) => (None, sack),
        };
        let ts_pad = ts.is_some() && sack_with_ts.is_none();
        let ws = self.window_scale.is_some();
        [
            self.max_seg_size.map(TcpOption::MaxSegmentSize),
            sack_with_ts,
            ts_pad.then_some(Nop),
            ts_pad.then_some(Nop),
            ts,
            ws.then_some(Nop),
            self.window_scale.map(TcpOption::WindowScale),
            sack_alone.then_some(Nop),
            sack_alone.then_some(Nop),
            sack_alone.then_some(SackPermitted),
        ]
        .into_iter()
        .flatten()
    }

    /// Header length: the fixed part and the options, which the layout above keeps a multiple
    /// of 4 and at most 20 bytes (MSS 4, SACK-permitted and timestamps 12, window scale 4).
    pub fn header_len(&self) -> usize {
        let options: usize = self.options().map(|o| o.buffer_len()).sum();
        HEADER_LEN + options.next_multiple_of(4)
    }

    pub fn buffer_len(&self) -> usize {
        self.header_len().saturating_add(self.payload_len)
    }

    /// Writes the header into a buffer that spans exactly the segment, with the payload already
    /// at [`header_len`](Self::header_len) (the checksum covers the whole buffer). Options are laid
    /// out as Linux does (NOP-aligned words). [`Csum::Verify`] computes the checksum,
    /// [`Csum::Partial`] writes `pseudo_sum` for a device to complete, [`Csum::Ignore`] leaves
    /// the field as it is.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        pseudo_sum: u16,
        csum: Csum,
    ) -> Result<()> {
        let header_len = self.header_len();
        ensure_len(HEADER, packet.buffer.as_ref(), self.buffer_len())?;
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_reserved(0);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_at);
        let options = packet.options_mut();
        options.fill(option_kind::END_OF_LIST);
        let mut at = 0;
        for option in self.options() {
            at += option.emit(options.get_mut(at..).unwrap_or_default())?;
        }
        match csum {
            Csum::Verify => packet.fill_checksum(pseudo_sum),
            Csum::Partial => packet.fill_partial_checksum(pseudo_sum),
            Csum::Ignore => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::pseudo_header_v4;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A SYN 10.0.0.1:40000 → 10.0.0.2:80 with a Linux option layout (MSS 1460, SACK-permitted,
    /// timestamps 123456/0, NOP, window scale 7), built by hand from RFC 9293 § 3.1; checksum
    /// 0x518e computed with a separate 16-bit-word Python reference over the IPv4 pseudo-header.
    const SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x51, 0x8e, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
        0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn pseudo(len: usize) -> u16 {
        pseudo_header_v4(&SRC, &DST, 6, len as u16)
    }

    fn syn_repr() -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 0x1234_5678,
            ack_number: 0,
            flags: TcpFlags::SYN,
            window_len: 64240,
            urgent_at: 0,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some(TcpTimestamps {
                tsval: 123_456,
                tsecr: 0,
            }),
            payload_len: 0,
        }
    }

    #[test]
    fn parses_fixture() {
        let packet = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((packet.data_offset(), packet.header_len()), (10, 40));
        assert_eq!(packet.flags(), TcpFlags::SYN);
        assert_eq!(packet.options().len(), 20);
        assert!(packet.payload().is_empty());
        assert!(packet.verify_checksum(pseudo(40)));
        assert_eq!(
            TcpRepr::parse(&packet, pseudo(40), Csum::Verify),
            Ok(syn_repr())
        );
    }

    #[test]
    fn emits_fixture() {
        let repr = syn_repr();
        assert_eq!(repr.header_len(), 40);
        let mut bytes = [0xffu8; 40];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut bytes[..]),
            pseudo(40),
            Csum::Verify,
        )
        .unwrap();
        assert_eq!(bytes, SYN);
        assert!(repr
            .emit(
                &mut TcpPacket::new_unchecked(&mut bytes[..39]),
                0,
                Csum::Verify
            )
            .is_err());
    }

    #[test]
    fn checks_data_offset() {
        let mut bytes = SYN;
        bytes[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]),
            Err(WireError::BadField {
                header: "tcp",
                field: "data offset",
                value: 4,
                bound: ">= 5"
            })
        );
        bytes[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]),
            Err(WireError::Truncated {
                header: "tcp",
                need: 60,
                len: 40
            })
        );
        assert!(TcpPacket::new_checked(&SYN[..19]).is_err());
    }

    #[test]
    fn rejects_bad_checksum_and_bad_options() {
        let mut bytes = SYN;
        bytes[17] ^= 1;
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&packet, pseudo(40), Csum::Verify),
            Err(WireError::BadChecksum { header: "tcp" })
        );
        assert!(TcpRepr::parse(&packet, pseudo(40), Csum::Partial).is_ok());
        // MSS option claiming length 5.
        let mut bytes = SYN;
        bytes[21] = 5;
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert!(matches!(
            TcpRepr::parse(&packet, 0, Csum::Ignore),
            Err(WireError::BadField {
                field: "MSS option length",
                ..
            })
        ));
    }

    #[test]
    fn setters_keep_neighbouring_bits() {
        let mut bytes = SYN;
        let mut packet = TcpPacket::new_unchecked(&mut bytes[..]);
        packet.set_reserved(0x0f);
        assert_eq!(packet.data_offset(), 10);
        packet.set_header_len(20);
        assert_eq!((packet.data_offset(), packet.reserved()), (5, 0x0f));
        assert_eq!(packet.payload().len(), 20);
    }

    #[test]
    fn partial_checksum_completes_to_full() {
        let mut bytes = SYN;
        let mut packet = TcpPacket::new_unchecked(&mut bytes[..]);
        packet.fill_partial_checksum(pseudo(40));
        let completed = checksum::finish(checksum::data(packet.into_inner()));
        assert_eq!(completed, 0x518e);
    }

    fn any_repr() -> impl Strategy<Value = TcpRepr> {
        (
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()),
            (any::<u8>(), any::<u16>(), any::<u16>()),
            (
                proptest::option::of(any::<u16>()),
                proptest::option::of(0u8..15),
                any::<bool>(),
                proptest::option::of(any::<(u32, u32)>()),
            ),
            0usize..100,
        )
            .prop_map(
                |(
                    (src_port, dst_port, seq_number, ack_number),
                    (flags, window_len, urgent_at),
                    (mss, ws, sack, ts),
                    payload_len,
                )| TcpRepr {
                    src_port,
                    dst_port,
                    seq_number,
                    ack_number,
                    flags: TcpFlags::from_bits(flags),
                    window_len,
                    urgent_at,
                    max_seg_size: mss,
                    window_scale: ws,
                    sack_permitted: sack,
                    timestamps: ts.map(|(tsval, tsecr)| TcpTimestamps { tsval, tsecr }),
                    payload_len,
                },
            )
    }

    /// RFC 1071 reference: add 16-bit words one by one with end-around carry.
    fn naive_sum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    proptest! {
        #[test]
        fn round_trip(repr in any_repr(), fill in any::<u8>()) {
            let len = repr.buffer_len();
            prop_assert!(repr.header_len() <= MAX_HEADER_LEN && repr.header_len() % 4 == 0);
            let mut bytes = vec![fill; len];
            repr.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), pseudo(len), Csum::Verify).unwrap();
            let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(TcpRepr::parse(&packet, pseudo(len), Csum::Verify), Ok(repr));
            prop_assert!(packet.payload().iter().all(|&b| b == fill));
            // Differential: the naive sum over pseudo-header and segment is all ones.
            let mut whole = Vec::new();
            whole.extend_from_slice(&SRC.octets());
            whole.extend_from_slice(&DST.octets());
            whole.extend_from_slice(&[0, 6]);
            whole.extend_from_slice(&(len as u16).to_be_bytes());
            whole.extend_from_slice(&bytes);
            prop_assert_eq!(naive_sum(&whole), 0xffff);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (
                    packet.src_port(), packet.dst_port(), packet.seq_number(), packet.ack_number(),
                    packet.flags(), packet.window_len(), packet.checksum(), packet.urgent_at(),
                    packet.options(), packet.payload(), packet.verify_checksum(0),
                );
                prop_assert!(packet.header_len() <= bytes.len());
                let _ = TcpRepr::parse(&packet, 0, Csum::Ignore);
            }
        }
    }
}
