//! The `wire_frame` target: one frame through [`parse_frame`], the flow key, the VLAN tag
//! push/pop and every header check of [`super::headers`] at the offsets the layout gives.
//!
//! Asserted, beyond "no panic": the layout's documented bounds (every offset inside the frame,
//! headers in order), `FlowKey::extract` agreeing with `extract_with_layout`, the flow hash
//! being a function of the key and symmetric under `reversed`, and pop-then-push of the outer
//! VLAN tag giving the frame back byte for byte.

use super::headers::{self, Addrs};
use crate::flow::FlowKey;
use crate::ids::{VlanId, Vni};
use crate::wire::ethernet::{self, EtherType};
use crate::wire::frame::{parse_frame, FrameLayout, L3Kind};
use crate::wire::ipv4::IpProtocol;
use crate::wire::vlan::{self, VlanRepr, TAG_LEN};
use crate::wire::vxlan::VXLAN_PORT;

/// How many VXLAN encapsulations deep [`check_frame`] follows an inner frame.
pub(super) const MAX_VXLAN_DEPTH: u8 = 1;

/// Runs every check on `frame`; `vxlan_depth` more levels of VXLAN are followed inward.
pub(super) fn check_frame(frame: &[u8], vxlan_depth: u8) {
    headers::ethernet(frame);
    vlan_round_trip(frame);
    let layout = match parse_frame(frame) {
        Ok(layout) => layout,
        Err(error) => {
            assert_eq!(
                FlowKey::extract(frame).err(),
                Some(error),
                "FlowKey::extract fails as parse_frame does"
            );
            // The views must stand on their own: try them where an untagged frame's L3 sits.
            raw_l3(frame);
            return;
        }
    };
    layout_bounds(frame, &layout);
    flow_key(frame, &layout);
    tags(frame, &layout);
    let l3_bytes = frame
        .get(layout.l3.offset..layout.l3.end)
        .unwrap_or_default();
    let addrs = match layout.l3.kind {
        L3Kind::Ipv4 => headers::ipv4(l3_bytes).map(|(addrs, ..)| addrs),
        L3Kind::Ipv6 => headers::ipv6(l3_bytes).map(|(addrs, ..)| addrs),
        L3Kind::Arp => {
            headers::arp(l3_bytes);
            None
        }
        L3Kind::Other => None,
    };
    if let (Some(l4), Some(addrs)) = (layout.l4, addrs) {
        let l4_bytes = frame.get(l4.offset..layout.l3.end).unwrap_or_default();
        transport(l4.proto, l4_bytes, addrs, vxlan_depth);
    }
}

/// The L4 checks for `protocol`, and VXLAN inside UDP to port 4789.
fn transport(protocol: IpProtocol, bytes: &[u8], addrs: Addrs, vxlan_depth: u8) {
    match protocol {
        IpProtocol::TCP => headers::tcp(bytes, addrs),
        IpProtocol::UDP => {
            let Some((dst_port, payload)) = headers::udp(bytes, addrs) else {
                return;
            };
            if dst_port == VXLAN_PORT {
                if let (Some(inner), Some(depth)) =
                    (headers::vxlan(payload), vxlan_depth.checked_sub(1))
                {
                    check_frame(inner, depth);
                }
            }
        }
        IpProtocol::ICMP => headers::icmpv4(bytes),
        IpProtocol::ICMPV6 => headers::icmpv6(bytes, addrs),
        _ => {}
    }
}

/// For a frame `parse_frame` refused: the L3 view named by the (untagged) EtherType, and the L4
/// views on its payload, so that views are exercised on what the frame parser rejects.
fn raw_l3(frame: &[u8]) {
    let Some(&[hi, lo]) = frame.get(12..14) else {
        return;
    };
    let l3 = frame.get(ethernet::HEADER_LEN..).unwrap_or_default();
    let upper = match EtherType(u16::from_be_bytes([hi, lo])) {
        EtherType::IPV4 => headers::ipv4(l3),
        EtherType::IPV6 => headers::ipv6(l3),
        EtherType::ARP => {
            headers::arp(l3);
            None
        }
        _ => None,
    };
    if let Some((addrs, protocol, bytes)) = upper {
        transport(protocol, bytes, addrs, 0);
    }
}

/// What the `parse_frame` docs promise about offsets.
fn layout_bounds(frame: &[u8], layout: &FrameLayout) {
    let tags = usize::from(layout.s_tag.is_some()) + usize::from(layout.c_tag.is_some());
    assert_eq!(
        layout.l2_len,
        ethernet::HEADER_LEN + TAG_LEN * tags,
        "l2_len"
    );
    assert_eq!(layout.l3.offset, layout.l2_len, "l3.offset");
    let l3_header_end = layout.l3.offset + layout.l3.header_len;
    assert!(
        l3_header_end <= layout.l3.end,
        "L3 header inside the L3 packet"
    );
    assert!(layout.l3.end <= frame.len(), "l3.end inside the frame");
    if let Some(l4) = layout.l4 {
        assert!(l4.offset >= l3_header_end, "L4 after the L3 header");
        assert!(
            l4.offset + l4.header_len <= layout.l3.end,
            "L4 header inside"
        );
        assert_eq!(layout.payload_offset, l4.offset + l4.header_len);
    } else {
        assert_eq!(layout.payload_offset, l3_header_end, "payload_offset");
    }
    assert_eq!(
        layout.payload_len(),
        layout.l3.end - layout.payload_offset,
        "payload_len"
    );
    if let Some(l4_len) = layout.l4_len() {
        assert!(l4_len <= layout.l3.end - layout.l3.offset, "l4_len");
    }
    assert_eq!(
        layout.l3.protocol.is_some(),
        matches!(layout.l3.kind, L3Kind::Ipv4 | L3Kind::Ipv6),
        "l3.protocol only for IP"
    );
}

/// The flow key from both entry points, and the hash properties the flow module documents.
fn flow_key(frame: &[u8], layout: &FrameLayout) {
    let key = FlowKey::extract_with_layout(frame, layout);
    assert_eq!(
        FlowKey::extract(frame),
        key,
        "extract agrees with extract_with_layout"
    );
    let Ok(key) = key else {
        panic!("parse_frame accepted a frame whose flow key fails: {key:?}");
    };
    assert_eq!(key.ethertype, layout.ethertype, "flow key EtherType");
    assert_eq!(key.frag, layout.l3.frag, "flow key fragment state");
    assert_eq!(key.hash(), key.hash_with_seed(0), "hash is seed 0");
    let reversed = key.reversed();
    assert_eq!(reversed.reversed(), key, "reversed twice is the key");
    assert_eq!(
        key.symmetric_hash(),
        reversed.symmetric_hash(),
        "symmetric_hash of a key and its reverse"
    );
    let _ = (key.src_ip(), key.dst_ip());
    let with_vni = key.with_vni(Vni::from_u32_truncating(5001));
    assert_ne!(with_vni.vni, None, "with_vni sets the VNI");
}

/// The tag views at the offsets the layout found them, agreeing with the layout.
fn tags(frame: &[u8], layout: &FrameLayout) {
    // The TCI follows the TPID at 12; a second tag sits one tag further.
    let mut tci_at = ethernet::HEADER_LEN;
    for tag in [layout.s_tag, layout.c_tag].into_iter().flatten() {
        let parsed = headers::vlan_tag(tag.tpid, frame.get(tci_at..).unwrap_or_default());
        assert_eq!(parsed, Some(tag), "VLAN view agrees with the layout");
        tci_at += TAG_LEN;
    }
}

/// Pop then push the outer tag (identity), and push then pop a tag that fits (identity).
fn vlan_round_trip(frame: &[u8]) {
    let Ok(stack) = vlan::walk_tags(frame) else {
        return;
    };
    let len = frame.len();
    let mut buf = vec![0u8; TAG_LEN + len];
    buf[TAG_LEN..].copy_from_slice(frame);
    match vlan::pop_tag(&mut buf, TAG_LEN, len) {
        Ok((tag, start)) => {
            assert_eq!(Some(tag), stack.outer(), "pop_tag takes the outer tag");
            assert_eq!(start, 2 * TAG_LEN, "pop_tag moves the start by one tag");
            let pushed = vlan::push_tag(&mut buf, start, len - TAG_LEN, tag);
            assert_eq!(pushed, Ok(TAG_LEN), "push_tag of the popped tag");
            assert_eq!(&buf[TAG_LEN..], frame, "pop then push is the identity");
        }
        Err(_) => assert_eq!(stack.depth(), 0, "pop_tag fails only on an untagged frame"),
    }
    // An S-tag fits on any frame without one; a C-tag only on an untagged frame.
    let vid = VlanId::new(100).ok();
    let tag = if stack.depth() == 0 {
        VlanRepr::c_tag(vid, 3)
    } else {
        VlanRepr::s_tag(vid, 5)
    };
    buf[TAG_LEN..].copy_from_slice(frame);
    let Ok(start) = vlan::push_tag(&mut buf, TAG_LEN, len, tag) else {
        assert!(stack.s_tag.is_some(), "push_tag refuses only a full stack");
        return;
    };
    assert_eq!(start, 0, "push_tag uses the headroom");
    let pushed = vlan::walk_tags(&buf);
    assert_eq!(
        pushed.map(|s| s.outer()),
        Ok(Some(tag)),
        "pushed tag is outer"
    );
    let popped = vlan::pop_tag(&mut buf, 0, len + TAG_LEN);
    assert_eq!(popped, Ok((tag, TAG_LEN)), "pop_tag of the pushed tag");
    assert_eq!(&buf[TAG_LEN..], frame, "push then pop is the identity");
}
