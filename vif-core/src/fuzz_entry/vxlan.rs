//! The `vxlan_decap` target: a frame as a peer VTEP on the underlay might send it through
//! [`Decapper::decap`], and arbitrary inner bytes through [`EncapTemplate::write`] and back.
//!
//! Asserted: a decap that succeeds points inside the frame at an inner frame of at least an
//! Ethernet header, agrees with [`parse_frame`] on where the UDP header is, and a lenient
//! decapper accepts whatever the strict one does; encap then decap is the identity on the inner
//! bytes and gives back the template's VNI, addresses and source port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::frame::check_frame;
use crate::flow::FlowKey;
use crate::ids::Vni;
use crate::mac::MacAddr;
use crate::wire::encap::{Decapper, EncapTemplate, PacketFields, VxlanEncap, MAX_OVERHEAD};
use crate::wire::ethernet;
use crate::wire::frame::parse_frame;
use crate::wire::ipv4::IpProtocol;
use crate::wire::udp::{self, ZeroChecksum};
use crate::wire::vxlan::{self, VXLAN_PORT};
use crate::wire::{Csum, WireError};

pub(super) fn run(data: &[u8]) {
    decap(data);
    for encap in templates() {
        round_trip(&encap, data);
    }
}

/// Decapsulation as the datapath does it (strict), and with checksums trusted.
fn decap(frame: &[u8]) {
    let strict = Decapper::new(VXLAN_PORT).decap(frame);
    let lenient = Decapper {
        csum: Csum::Ignore,
        ipv6_zero_checksum: ZeroChecksum::Absent,
        ..Decapper::new(VXLAN_PORT)
    }
    .decap(frame);
    if let Ok(decapped) = &strict {
        assert_eq!(
            lenient.as_ref(),
            Ok(decapped),
            "lenient decap accepts what strict does"
        );
    }
    let Ok(decapped) = lenient else {
        return;
    };
    let inner = frame.get(decapped.inner.clone());
    let Some(inner) = inner else {
        panic!(
            "decap's inner range {:?} is outside the frame",
            decapped.inner
        );
    };
    assert!(
        inner.len() >= ethernet::HEADER_LEN,
        "inner frame holds Ethernet"
    );
    assert!(decapped.outer_ecn <= 3, "ECN is two bits");
    if let Ok(layout) = parse_frame(frame) {
        if let Some(l4) = layout.l4.filter(|l4| l4.proto == IpProtocol::UDP) {
            assert_eq!(
                l4.offset + udp::HEADER_LEN + vxlan::HEADER_LEN,
                decapped.inner.start,
                "decap and parse_frame agree on the UDP header"
            );
        }
    }
    check_frame(inner, 0);
}

/// One IPv4 and one IPv6 underlay, with documentation addresses (RFC 5737, RFC 3849).
fn templates() -> [VxlanEncap; 2] {
    let base = VxlanEncap {
        outer_src_mac: MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x01]),
        outer_dst_mac: MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x02]),
        src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
        dst_port: VXLAN_PORT,
        vni: Vni::from_u32_truncating(5001),
        ttl: 64,
        dscp: 0,
    };
    let v6 = VxlanEncap {
        src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10)),
        dst: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 11)),
        vni: Vni::from_u32_truncating(0xff_ffff),
        dscp: 46,
        ..base
    };
    [base, v6]
}

/// Encapsulates `inner` with `encap`, then decapsulates it strictly.
fn round_trip(encap: &VxlanEncap, inner: &[u8]) {
    let template = EncapTemplate::new(encap);
    let Ok(template) = template else {
        panic!("the fixed template does not build: {template:?}");
    };
    let flow_hash = FlowKey::extract(inner).map_or(0, |key| key.hash());
    let fields = PacketFields {
        ipv4_ident: flow_hash as u16,
        ..PacketFields::from_flow_hash(flow_hash)
    };
    let mut buf = vec![0u8; MAX_OVERHEAD + inner.len()];
    buf[MAX_OVERHEAD..].copy_from_slice(inner);
    let start = match template.write(&mut buf, MAX_OVERHEAD, inner.len(), fields) {
        Ok(start) => start,
        Err(WireError::BadField { .. }) if inner.len() + template.overhead() > 65535 => return,
        Err(error) => panic!("encap of {} bytes: {error}", inner.len()),
    };
    assert_eq!(start, MAX_OVERHEAD - template.overhead(), "encap start");
    let frame = &buf[start..];
    let decapped = Decapper::new(encap.dst_port).decap(frame);
    if inner.len() < ethernet::HEADER_LEN {
        assert!(
            decapped.is_err(),
            "decap refuses an inner frame under 14 bytes"
        );
        return;
    }
    let Ok(decapped) = decapped else {
        panic!("decap of our own encap: {decapped:?}");
    };
    assert_eq!(decapped.vni, encap.vni, "VNI");
    assert_eq!(
        (decapped.src_ip, decapped.dst_ip),
        (encap.src, encap.dst),
        "addresses"
    );
    assert_eq!(decapped.src_port, fields.src_port, "UDP source port");
    assert_eq!(decapped.outer_ecn, 0, "outer ECN is Not-ECT");
    assert_eq!(frame.get(decapped.inner), Some(inner), "inner frame intact");
}
