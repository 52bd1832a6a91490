//! IEEE 802.1Q VLAN tags and 802.1ad (QinQ) tag stacks: reading, and in-place push and pop.
//!
//! A tag is a TPID (0x8100 for a C-tag, 0x88a8 for an S-tag) followed by a TCI: PCP (3 bits),
//! DEI (1 bit), VID (12 bits) (IEEE 802.1Q-2018 § 9.6). It sits where the EtherType of an
//! untagged frame would be, so the TPID is read through [`EthernetFrame::ethertype`] and the
//! [`VlanPacket`] view covers what follows it: the TCI, then the inner EtherType, then the
//! payload (the way Wireshark dissects it).
//!
//! vif accepts at most two tags, in the 802.1ad order: an S-tag, then a C-tag. Any other order or
//! a deeper stack is an error, which bounds the walk and keeps a guest from hiding an L3 header
//! behind an unbounded tag chain.
//!
//! [`push_tag`] and [`pop_tag`] rewrite a frame inside a backend-owned buffer without allocating:
//! the 12 MAC bytes move by [`TAG_LEN`] into headroom (push) or over the tag (pop). They serve the
//! 802.1Q uplink, which pushes VID and PCP on transmit and filters by VID then pops on receive.
//!
//! [`EthernetFrame::ethertype`]: super::ethernet::EthernetFrame::ethertype

use core::ops::Range;

use super::ethernet::{self, EtherType};
use super::{ensure_len, Result, VlanId, WireError};

/// Length of the [`VlanPacket`] header: TCI and inner EtherType.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Bytes a tag adds to a frame: TPID and TCI.
pub const TAG_LEN: usize = 4;

/// The deepest tag stack vif accepts: S-tag then C-tag (IEEE 802.1ad).
pub const MAX_TAGS: usize = 2;

/// The VID that is reserved and must not appear in a tag (IEEE 802.1Q-2018 table 9-2).
pub const VID_RESERVED: u16 = 0xfff;

/// Offset of the first TPID (the untagged EtherType) in a frame: after the two MAC addresses.
const TPID_OFFSET: usize = 12;

const HEADER: &str = "vlan";

/// `bound` of the error returned for a tag stack vif does not accept.
const STACK_BOUND: &str = "at most an S-tag (0x88a8) then a C-tag (0x8100)";

mod field {
    use crate::wire::field::*;
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
}

/// A view over the bytes after a TPID: TCI, inner EtherType, payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len): use this on anything received.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Proves that no accessor can panic: the header is fixed-size and has no length field.
    pub fn check_len(&self) -> Result<()> {
        ensure_len(HEADER, self.buffer.as_ref(), HEADER_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole tag control information word.
    pub fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Priority code point (IEEE 802.1Q-2018 § 6.9.3): the top 3 bits of the TCI.
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator (formerly CFI).
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// The 12-bit VID as on the wire: 0 is a priority tag, 0xfff is reserved.
    pub fn vid_raw(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The VID when it names a VLAN; `None` for a priority tag (0) or the reserved 0xfff.
    pub fn vid(&self) -> Option<VlanId> {
        VlanId::new(self.vid_raw()).ok()
    }

    /// The EtherType after this tag: the next TPID or the L3 protocol.
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanPacket<T> {
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    /// Sets the PCP from the low 3 bits of `pcp`.
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 0x7) << 13);
        self.set_tci(tci);
    }

    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the VID from the low 12 bits of `vid`.
    pub fn set_vid_raw(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// One tag: its TPID and the fields of its TCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanRepr {
    /// [`EtherType::VLAN`] (C-tag) or [`EtherType::QINQ`] (S-tag).
    pub tpid: EtherType,
    /// Priority code point, 0..=7; higher bits are dropped on emit.
    pub pcp: u8,
    pub dei: bool,
    /// `None` is a priority tag (VID 0): it carries a PCP but no VLAN.
    pub vid: Option<VlanId>,
}

impl VlanRepr {
    /// An 802.1Q C-tag.
    pub const fn c_tag(vid: Option<VlanId>, pcp: u8) -> VlanRepr {
        VlanRepr {
            tpid: EtherType::VLAN,
            pcp,
            dei: false,
            vid,
        }
    }

    /// An 802.1ad S-tag.
    pub const fn s_tag(vid: Option<VlanId>, pcp: u8) -> VlanRepr {
        VlanRepr {
            tpid: EtherType::QINQ,
            pcp,
            dei: false,
            vid,
        }
    }

    /// Builds a tag from a TPID and a TCI read off the wire. Rejects a TPID vif does not walk
    /// and the reserved VID 0xfff.
    pub fn from_tci(tpid: EtherType, tci: u16) -> Result<VlanRepr> {
        if !tpid.is_vlan_tpid() {
            return Err(WireError::BadField {
                header: HEADER,
                field: "tpid",
                value: tpid.0.into(),
                bound: "0x8100 or 0x88a8",
            });
        }
        let vid = tci & 0x0fff;
        if vid == VID_RESERVED {
            return Err(WireError::BadField {
                header: HEADER,
                field: "vid",
                value: vid.into(),
                bound: "0..=4094",
            });
        }
        Ok(VlanRepr {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: VlanId::new(vid).ok(),
        })
    }

    /// Reads the tag whose TPID (read from the enclosing header) is `tpid`.
    pub fn parse<T: AsRef<[u8]>>(tpid: EtherType, packet: &VlanPacket<T>) -> Result<VlanRepr> {
        packet.check_len()?;
        Self::from_tci(tpid, packet.tci())
    }

    /// The TCI word: PCP (masked to 3 bits), DEI, VID (0 for a priority tag).
    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 0x7) << 13)
            | if self.dei { 0x1000 } else { 0 }
            | self.vid.map_or(0, VlanId::get)
    }

    /// The TPID and TCI as they appear in a frame.
    pub fn to_bytes(&self) -> [u8; TAG_LEN] {
        let tpid = self.tpid.0.to_be_bytes();
        let tci = self.tci().to_be_bytes();
        [tpid[0], tpid[1], tci[0], tci[1]]
    }

    /// [`HEADER_LEN`]: the TCI and the inner EtherType that `emit` leaves for the caller.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the TCI; the TPID belongs to the enclosing header and the inner EtherType to the
    /// caller.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VlanPacket<T>) -> Result<()> {
        packet.check_len()?;
        packet.set_tci(self.tci());
        Ok(())
    }
}

/// The result of walking the tags of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagStack {
    /// The outer 802.1ad tag, if any.
    pub s_tag: Option<VlanRepr>,
    /// The 802.1Q tag: the only tag, or the one inside the S-tag.
    pub c_tag: Option<VlanRepr>,
    /// The EtherType after the last tag: the L3 protocol.
    pub ethertype: EtherType,
    /// Offset of the L3 header from the start of the frame: 14, 18 or 22.
    pub payload_offset: usize,
}

impl TagStack {
    /// How many tags the frame carries, 0..=[`MAX_TAGS`].
    pub fn depth(&self) -> usize {
        usize::from(self.s_tag.is_some()) + usize::from(self.c_tag.is_some())
    }

    /// The tag nearest the MAC addresses: the one [`pop_tag`] removes.
    pub fn outer(&self) -> Option<VlanRepr> {
        self.s_tag.or(self.c_tag)
    }
}

/// Reads the big-endian u16 at `offset`, or `Truncated` naming the VLAN header.
fn read_u16(frame: &[u8], offset: usize) -> Result<u16> {
    let end = offset.saturating_add(2);
    match frame.get(offset..end) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(WireError::Truncated {
            header: HEADER,
            need: end,
            len: frame.len(),
        }),
    }
}

/// Walks the tags after the MAC addresses of `frame` (which starts at the destination MAC).
/// Accepts no tag, a C-tag, an S-tag, or an S-tag then a C-tag; anything else is `BadField`
/// naming the offending TPID. Reads at most three EtherType fields, whatever the input.
pub fn walk_tags(frame: &[u8]) -> Result<TagStack> {
    ensure_len("ethernet", frame, ethernet::HEADER_LEN)?;
    let mut offset = TPID_OFFSET;
    let mut ethertype = EtherType(read_u16(frame, offset)?);
    let mut stack = TagStack {
        s_tag: None,
        c_tag: None,
        ethertype,
        payload_offset: ethernet::HEADER_LEN,
    };
    // Each step consumes one tag of a fixed kind, so the walk is at most two steps long.
    for (kind, slot) in [
        (EtherType::QINQ, &mut stack.s_tag),
        (EtherType::VLAN, &mut stack.c_tag),
    ] {
        if ethertype != kind {
            continue;
        }
        let tci = read_u16(frame, offset + 2)?;
        *slot = Some(VlanRepr::from_tci(kind, tci)?);
        offset += TAG_LEN;
        ethertype = EtherType(read_u16(frame, offset)?);
    }
    if ethertype.is_vlan_tpid() {
        return Err(WireError::BadField {
            header: HEADER,
            field: "tag stack",
            value: ethertype.0.into(),
            bound: STACK_BOUND,
        });
    }
    stack.ethertype = ethertype;
    stack.payload_offset = offset + 2;
    Ok(stack)
}

/// The range `start..start + len` of `buf`, or `Truncated` if it does not fit.
fn frame_range(buf: &[u8], start: usize, len: usize) -> Result<Range<usize>> {
    match start.checked_add(len) {
        Some(end) if end <= buf.len() => Ok(start..end),
        _ => Err(WireError::Truncated {
            header: HEADER,
            need: start.saturating_add(len),
            len: buf.len(),
        }),
    }
}

/// Inserts `tag` after the MAC addresses of the frame at `buf[frame_start..frame_start +
/// frame_len]`, using [`TAG_LEN`] bytes of headroom before `frame_start`. Returns the new start;
/// the frame is then `frame_len + TAG_LEN` long.
///
/// The result always satisfies [`walk_tags`]: a C-tag goes only onto an untagged frame, an S-tag
/// only onto an untagged or C-tagged one. Nothing is written when an error is returned.
pub fn push_tag(
    buf: &mut [u8],
    frame_start: usize,
    frame_len: usize,
    tag: VlanRepr,
) -> Result<usize> {
    let range = frame_range(buf, frame_start, frame_len)?;
    let Some(new_start) = frame_start.checked_sub(TAG_LEN) else {
        return Err(WireError::Truncated {
            header: "vlan headroom",
            need: TAG_LEN,
            len: frame_start,
        });
    };
    // Validates the tag's own fields (TPID, VID) by the same rule the receiver applies.
    let tag = VlanRepr::from_tci(tag.tpid, tag.tci())?;
    let existing = walk_tags(&buf[range])?;
    let fits = match tag.tpid {
        EtherType::QINQ => existing.s_tag.is_none(),
        _ => existing.depth() == 0,
    };
    if !fits {
        return Err(WireError::BadField {
            header: HEADER,
            field: "tag stack",
            value: existing.outer().map_or(0, |t| t.tpid.0.into()),
            bound: STACK_BOUND,
        });
    }
    buf.copy_within(frame_start..frame_start + TPID_OFFSET, new_start);
    let tag_at = new_start + TPID_OFFSET;
    buf[tag_at..tag_at + TAG_LEN].copy_from_slice(&tag.to_bytes());
    Ok(new_start)
}

/// Removes the outer tag of the frame at `buf[frame_start..frame_start + frame_len]` by moving
/// the MAC addresses over it. Returns the tag and the new start; the frame is then `frame_len -
/// TAG_LEN` long. The whole stack is validated first (as [`walk_tags`] does), so a frame that
/// would be refused on receive is never half-popped.
pub fn pop_tag(buf: &mut [u8], frame_start: usize, frame_len: usize) -> Result<(VlanRepr, usize)> {
    let range = frame_range(buf, frame_start, frame_len)?;
    let stack = walk_tags(&buf[range])?;
    let Some(tag) = stack.outer() else {
        return Err(WireError::BadField {
            header: HEADER,
            field: "tpid",
            value: stack.ethertype.0.into(),
            bound: "0x8100 or 0x88a8 (the frame is untagged)",
        });
    };
    // walk_tags proved the frame holds 12 MAC bytes, the tag and an EtherType.
    let new_start = frame_start + TAG_LEN;
    buf.copy_within(frame_start..frame_start + TPID_OFFSET, new_start);
    Ok((tag, new_start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::EthernetFrame;
    use proptest::prelude::*;

    fn vid(v: u16) -> Option<VlanId> {
        Some(VlanId::new(v).unwrap())
    }

    /// An 802.1Q-tagged IPv4 frame head, built by hand from IEEE 802.1Q-2018 § 9.6: MACs, TPID
    /// 0x8100, TCI 0xa064 (PCP 5, DEI 0, VID 100), EtherType 0x0800, two payload bytes.
    const C_TAGGED: [u8; 20] = [
        0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0xa0,
        0x64, 0x08, 0x00, 0x45, 0x00,
    ];

    /// A QinQ frame head built by hand from IEEE 802.1ad: S-tag 0x88a8 TCI 0x100a (DEI, VID 10),
    /// C-tag 0x8100 TCI 0x0014 (VID 20), EtherType 0x86dd.
    const QINQ_TAGGED: [u8; 22] = [
        0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0x10,
        0x0a, 0x81, 0x00, 0x00, 0x14, 0x86, 0xdd,
    ];

    #[test]
    fn reads_c_tag_through_views() {
        let frame = EthernetFrame::new_checked(&C_TAGGED[..]).unwrap();
        assert!(frame.ethertype().is_vlan_tpid());
        let tag = VlanPacket::new_checked(frame.payload()).unwrap();
        assert_eq!((tag.pcp(), tag.dei(), tag.vid_raw()), (5, false, 100));
        assert_eq!(tag.ethertype(), EtherType::IPV4);
        assert_eq!(tag.payload(), &[0x45, 0x00]);
        assert_eq!(
            VlanRepr::parse(frame.ethertype(), &tag).unwrap(),
            VlanRepr::c_tag(vid(100), 5)
        );
    }

    #[test]
    fn walks_stacks() {
        let stack = walk_tags(&C_TAGGED).unwrap();
        assert_eq!(stack.c_tag, Some(VlanRepr::c_tag(vid(100), 5)));
        assert_eq!((stack.depth(), stack.payload_offset), (1, 18));
        assert_eq!(stack.ethertype, EtherType::IPV4);

        let stack = walk_tags(&QINQ_TAGGED).unwrap();
        let mut s_tag = VlanRepr::s_tag(vid(10), 0);
        s_tag.dei = true;
        assert_eq!(stack.s_tag, Some(s_tag));
        assert_eq!(stack.c_tag, Some(VlanRepr::c_tag(vid(20), 0)));
        assert_eq!(stack.outer(), Some(s_tag));
        assert_eq!((stack.depth(), stack.payload_offset), (2, 22));
        assert_eq!(stack.ethertype, EtherType::IPV6);

        let untagged = &C_TAGGED[..14];
        let mut untagged = untagged.to_vec();
        untagged[12..14].copy_from_slice(&[0x08, 0x06]);
        let stack = walk_tags(&untagged).unwrap();
        assert_eq!((stack.depth(), stack.ethertype), (0, EtherType::ARP));
    }

    #[test]
    fn rejects_bad_stacks() {
        let bad_stack = |tpid: u16| WireError::BadField {
            header: "vlan",
            field: "tag stack",
            value: tpid.into(),
            bound: STACK_BOUND,
        };
        // Three tags: S, C, C.
        let mut deep = QINQ_TAGGED.to_vec();
        deep.splice(20..20, [0x81, 0x00, 0x00, 0x1e]);
        assert_eq!(walk_tags(&deep), Err(bad_stack(0x8100)));
        // C-tag outside S-tag.
        let mut swapped = QINQ_TAGGED;
        swapped[12..14].copy_from_slice(&[0x81, 0x00]);
        swapped[16..18].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(walk_tags(&swapped), Err(bad_stack(0x88a8)));
        // Reserved VID.
        let mut reserved = C_TAGGED;
        reserved[14..16].copy_from_slice(&[0x0f, 0xff]);
        assert_eq!(
            walk_tags(&reserved),
            Err(WireError::BadField {
                header: "vlan",
                field: "vid",
                value: 0xfff,
                bound: "0..=4094"
            })
        );
        // A tag cut before its inner EtherType.
        assert!(matches!(
            walk_tags(&C_TAGGED[..17]),
            Err(WireError::Truncated { need: 18, .. })
        ));
        assert!(walk_tags(&C_TAGGED[..13]).is_err());
    }

    #[test]
    fn priority_tag_has_no_vid() {
        let mut priority = C_TAGGED;
        priority[14..16].copy_from_slice(&[0xe0, 0x00]);
        let stack = walk_tags(&priority).unwrap();
        assert_eq!(stack.c_tag, Some(VlanRepr::c_tag(None, 7)));
    }

    #[test]
    fn push_writes_fixture_and_pop_restores() {
        // Untagged version of C_TAGGED, with 4 bytes of headroom.
        let mut buf = [0u8; 20];
        buf[4..16].copy_from_slice(&C_TAGGED[..12]);
        buf[16..20].copy_from_slice(&C_TAGGED[16..20]);
        let start = push_tag(&mut buf, 4, 16, VlanRepr::c_tag(vid(100), 5)).unwrap();
        assert_eq!((start, buf), (0, C_TAGGED));
        let (tag, start) = pop_tag(&mut buf, 0, 20).unwrap();
        assert_eq!((tag, start), (VlanRepr::c_tag(vid(100), 5), 4));
        assert_eq!(&buf[4..16], &C_TAGGED[..12]);
        assert_eq!(&buf[16..20], &C_TAGGED[16..20]);
    }

    #[test]
    fn push_refuses_without_room_or_out_of_order() {
        let mut buf = C_TAGGED;
        assert_eq!(
            push_tag(&mut buf, 0, 20, VlanRepr::s_tag(vid(1), 0)),
            Err(WireError::Truncated {
                header: "vlan headroom",
                need: 4,
                len: 0
            })
        );
        let mut buf = [0u8; 24];
        buf[4..].copy_from_slice(&C_TAGGED);
        // A C-tag onto a C-tagged frame would make an order walk_tags refuses.
        assert!(push_tag(&mut buf, 4, 20, VlanRepr::c_tag(vid(1), 0)).is_err());
        assert_eq!(&buf[4..], &C_TAGGED, "nothing written on error");
        // An S-tag onto it makes QinQ.
        let start = push_tag(&mut buf, 4, 20, VlanRepr::s_tag(vid(7), 1)).unwrap();
        let stack = walk_tags(&buf[start..]).unwrap();
        assert_eq!(stack.s_tag, Some(VlanRepr::s_tag(vid(7), 1)));
        assert_eq!(stack.c_tag, Some(VlanRepr::c_tag(vid(100), 5)));
        // Unsupported TPID, and a range that overflows.
        let bad = VlanRepr {
            tpid: EtherType(0x9100),
            ..VlanRepr::c_tag(None, 0)
        };
        assert!(push_tag(&mut buf, 4, 20, bad).is_err());
        assert!(push_tag(&mut buf, usize::MAX, 2, VlanRepr::c_tag(None, 0)).is_err());
    }

    #[test]
    fn pop_refuses_untagged() {
        let mut buf = [0u8; 14];
        buf[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(matches!(
            pop_tag(&mut buf, 0, 14),
            Err(WireError::BadField { field: "tpid", .. })
        ));
    }

    #[test]
    fn view_setters_keep_other_bits() {
        let mut bytes = [0u8; 4];
        let mut tag = VlanPacket::new_unchecked(&mut bytes[..]);
        tag.set_vid_raw(0xabc);
        tag.set_pcp(0xff);
        tag.set_dei(true);
        tag.set_ethertype(EtherType::ARP);
        assert_eq!((tag.pcp(), tag.dei(), tag.vid_raw()), (7, true, 0xabc));
        tag.set_dei(false);
        tag.set_pcp(2);
        assert_eq!(tag.tci(), 0x4abc);
        assert_eq!(bytes, [0x4a, 0xbc, 0x08, 0x06]);
    }

    fn any_tag(tpid: EtherType) -> impl Strategy<Value = VlanRepr> {
        (0u8..8, any::<bool>(), 0u16..4095).prop_map(move |(pcp, dei, v)| VlanRepr {
            tpid,
            pcp,
            dei,
            vid: VlanId::new(v).ok(),
        })
    }

    proptest! {
        #[test]
        fn tci_round_trip(tag in any_tag(EtherType::QINQ)) {
            let mut bytes = [0u8; HEADER_LEN];
            tag.emit(&mut VlanPacket::new_unchecked(&mut bytes[..])).unwrap();
            let packet = VlanPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(VlanRepr::parse(tag.tpid, &packet), Ok(tag));
            prop_assert_eq!(&tag.to_bytes()[2..], &bytes[..2]);
        }

        #[test]
        fn push_then_pop_is_identity(
            s_tag in any_tag(EtherType::QINQ),
            c_tag in any_tag(EtherType::VLAN),
            body in proptest::collection::vec(any::<u8>(), 14..80),
            headroom in 8usize..16,
        ) {
            let mut frame = body.clone();
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            let mut buf = vec![0u8; headroom + frame.len()];
            buf[headroom..].copy_from_slice(&frame);
            let start = push_tag(&mut buf, headroom, frame.len(), c_tag).unwrap();
            let start = push_tag(&mut buf, start, frame.len() + 4, s_tag).unwrap();
            let stack = walk_tags(&buf[start..]).unwrap();
            prop_assert_eq!((stack.s_tag, stack.c_tag), (Some(s_tag), Some(c_tag)));
            prop_assert_eq!(stack.payload_offset, 22);
            let (popped, start) = pop_tag(&mut buf, start, frame.len() + 8).unwrap();
            prop_assert_eq!(popped, s_tag);
            let (popped, start) = pop_tag(&mut buf, start, frame.len() + 4).unwrap();
            prop_assert_eq!(popped, c_tag);
            prop_assert_eq!(start, headroom);
            prop_assert_eq!(&buf[start..], &frame[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            start in 0usize..48,
            len in 0usize..48,
            tag in any_tag(EtherType::VLAN),
        ) {
            if let Ok(stack) = walk_tags(&bytes) {
                prop_assert!(stack.depth() <= MAX_TAGS);
                prop_assert!(stack.payload_offset <= bytes.len());
            }
            if let Ok(packet) = VlanPacket::new_checked(&bytes[..]) {
                let _ = (packet.tci(), packet.vid(), packet.ethertype(), packet.payload());
            }
            let mut buf = bytes.clone();
            if let Ok(new_start) = push_tag(&mut buf, start, len, tag) {
                prop_assert_eq!(new_start + TAG_LEN, start);
            }
            let mut buf = bytes.clone();
            if let Ok((_, new_start)) = pop_tag(&mut buf, start, len) {
                prop_assert_eq!(new_start, start + TAG_LEN);
            }
        }
    }
}
