//! Writes the named seed inputs under `fuzz/seeds/<target>/`: frames built with vif-core's own
//! `Repr::emit` (so every checksum and length is right), the way a guest, a peer VTEP or an
//! operator would produce them. The fuzzers start from these; `vif-core/tests/fuzz_corpus.rs`
//! replays them.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.
//! The output is deterministic, so a re-run changes nothing unless this file changed.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use vif_core::checksum;
use vif_core::ids::{VlanId, Vni};
use vif_core::mac::MacAddr;
use vif_core::model::EXAMPLE_TOML;
use vif_core::offload::{GsoType, VirtioNetHdr};
use vif_core::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use vif_core::wire::encap::{EncapTemplate, PacketFields, VxlanEncap, MAX_OVERHEAD};
use vif_core::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use vif_core::wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use vif_core::wire::icmpv6::{Icmpv6Packet, Icmpv6Repr, NdpRepr, NeighborFlags, PrefixInfo};
use vif_core::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use vif_core::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use vif_core::wire::tcp::{TcpFlags, TcpPacket, TcpRepr, TcpTimestamps};
use vif_core::wire::udp::{UdpPacket, UdpRepr};
use vif_core::wire::vlan::{push_tag, VlanRepr};
use vif_core::wire::vxlan::VXLAN_PORT;
use vif_core::wire::Csum;

// Documentation addresses: RFC 5737 (IPv4), RFC 3849 (IPv6); locally administered MACs.
const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const PEER_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x65, 0x43, 0x21]);
const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The link-local all-nodes and a solicited-node address, for NDP (RFC 4291 § 2.7.1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// An IP header's addresses, for the L4 pseudo-header.
#[derive(Clone, Copy)]
enum Ip {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

const IP4: Ip = Ip::V4(SRC4, DST4);
const IP6: Ip = Ip::V6(SRC6, DST6);

impl Ip {
    fn pseudo(self, protocol: IpProtocol, len: usize) -> u16 {
        match self {
            Ip::V4(s, d) => checksum::pseudo_header_v4(&s, &d, protocol.0, len as u16),
            Ip::V6(s, d) => checksum::pseudo_header_v6(&s, &d, protocol.0, len as u32),
        }
    }
}

fn ethernet(ethertype: EtherType, l3: &[u8]) -> Result<Vec<u8>> {
    let mut frame = vec![0u8; 14 + l3.len()];
    EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: PEER_MAC,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]))?;
    frame[14..].copy_from_slice(l3);
    Ok(frame)
}

/// An IPv4 packet; `options` are appended to the 20-byte header (a multiple of 4 bytes).
fn ipv4(protocol: IpProtocol, options: &[u8], frag: (bool, u16), l4: &[u8]) -> Result<Vec<u8>> {
    let header_len = 20 + options.len();
    let mut packet = vec![0u8; header_len + l4.len()];
    let (more_frags, frag_offset) = frag;
    Ipv4Repr {
        src_addr: SRC4,
        dst_addr: DST4,
        protocol,
        payload_len: (options.len() + l4.len()) as u16,
        ttl: 64,
        dscp: 10,
        ecn: 0,
        ident: 0x1c46,
        dont_frag: !more_frags && frag_offset == 0,
        more_frags,
        frag_offset,
    }
    .emit(
        &mut Ipv4Packet::new_unchecked(&mut packet[..]),
        Csum::Verify,
    )?;
    if !options.is_empty() {
        let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
        view.set_header_len(header_len);
        view.options_mut().copy_from_slice(options);
        view.fill_checksum();
    }
    packet[header_len..].copy_from_slice(l4);
    Ok(packet)
}

/// An IPv6 packet whose first next header is `next_header`; `payload` holds any extension
/// headers and the upper layer.
fn ipv6(next_header: IpProtocol, src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Result<Vec<u8>> {
    let mut packet = vec![0u8; 40 + payload.len()];
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header,
        payload_len: payload.len() as u16,
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0x1_2345,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]))?;
    packet[40..].copy_from_slice(payload);
    Ok(packet)
}

fn tcp_repr(flags: TcpFlags, payload_len: usize, options: bool) -> TcpRepr {
    TcpRepr {
        src_port: 40000,
        dst_port: 443,
        seq_number: 0x1234_5678,
        ack_number: 0x0bad_cafe,
        flags,
        window_len: 64240,
        urgent_at: 0,
        max_seg_size: options.then_some(1460),
        window_scale: options.then_some(7),
        sack_permitted: options,
        timestamps: options.then_some(TcpTimestamps {
            tsval: 123_456,
            tsecr: 654_321,
        }),
        payload_len,
    }
}

/// A TCP segment over `ip`; `csum` Partial leaves the pseudo-header sum, as a guest does for
/// `NEEDS_CSUM`.
fn tcp(ip: Ip, repr: &TcpRepr, payload: &[u8], csum: Csum) -> Result<Vec<u8>> {
    let mut segment = vec![0u8; repr.buffer_len()];
    segment[repr.header_len()..].copy_from_slice(payload);
    let pseudo = ip.pseudo(IpProtocol::TCP, segment.len());
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut segment[..]),
        pseudo,
        csum,
    )?;
    Ok(segment)
}

fn udp(ip: Ip, dst_port: u16, payload: &[u8], csum: Csum) -> Result<Vec<u8>> {
    let repr = UdpRepr {
        src_port: 53000,
        dst_port,
        payload_len: payload.len(),
    };
    let mut datagram = vec![0u8; repr.buffer_len()];
    datagram[8..].copy_from_slice(payload);
    let pseudo = ip.pseudo(IpProtocol::UDP, datagram.len());
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut datagram[..]),
        pseudo,
        csum,
    )?;
    Ok(datagram)
}

fn icmpv4(repr: &Icmpv4Repr) -> Result<Vec<u8>> {
    let mut message = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut message[..]),
        Csum::Verify,
    )?;
    Ok(message)
}

fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, repr: &Icmpv6Repr) -> Result<Vec<u8>> {
    let mut message = vec![0u8; repr.buffer_len()];
    let mut packet = Icmpv6Packet::new_unchecked(&mut message[..]);
    repr.emit(&src, &dst, &mut packet, Csum::Verify)?;
    Ok(message)
}

/// Pushes `tag` onto `frame` (an S-tag goes outside an existing C-tag).
fn tagged(frame: &[u8], tag: VlanRepr) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 4 + frame.len()];
    buf[4..].copy_from_slice(frame);
    let start = push_tag(&mut buf, 4, frame.len(), tag)?;
    Ok(buf[start..].to_vec())
}

fn vid(value: u16) -> Option<VlanId> {
    VlanId::new(value).ok()
}

/// Bytes counting up, so that reassembly and segmentation mistakes show.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// Ethernet frames of every kind `parse_frame` walks.
fn frames() -> Result<Vec<(&'static str, Vec<u8>)>> {
    use IpProtocol as P;
    let syn = tcp(IP4, &tcp_repr(TcpFlags::SYN, 0, true), &[], Csum::Verify)?;
    let data = pattern(200);
    let ack_psh = TcpFlags::ACK | TcpFlags::PSH;
    let tcp4 = ethernet(EtherType::IPV4, &ipv4(P::TCP, &[], (false, 0), &syn)?)?;
    let tcp4_data = tcp(
        IP4,
        &tcp_repr(ack_psh, data.len(), false),
        &data,
        Csum::Verify,
    )?;
    let udp4 = udp(
        IP4,
        53,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
        Csum::Verify,
    )?;
    let ip4_udp = ipv4(P::UDP, &[], (false, 0), &udp4)?;
    // Router Alert (RFC 2113): type 148, length 4, value 0.
    let router_alert = [148, 4, 0, 0];
    let echo = icmpv4(&Icmpv4Repr::EchoRequest {
        ident: 0x4242,
        seq_no: 1,
        data: b"abcdefghijklmnopqrstuvwabcdefghi",
    })?;
    let invoking = &ip4_udp[..28];
    let frag_needed = icmpv4(&Icmpv4Repr::DstUnreachable {
        code: 4,
        next_hop_mtu: 1400,
        invoking,
    })?;
    let ttl_exceeded = icmpv4(&Icmpv4Repr::TimeExceeded { code: 0, invoking })?;
    let big_udp = udp(IP4, 9000, &pattern(1600), Csum::Verify)?;
    let arp = |operation, target_mac, target_ip| -> Result<Vec<u8>> {
        let repr = ArpRepr {
            operation,
            sender_mac: GUEST_MAC,
            sender_ip: SRC4,
            target_mac,
            target_ip,
        };
        let mut packet = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut packet[..]))?;
        ethernet(EtherType::ARP, &packet)
    };
    let tcp6 = tcp(IP6, &tcp_repr(TcpFlags::SYN, 0, true), &[], Csum::Verify)?;
    let udp6 = udp(IP6, 547, b"dhcpv6", Csum::Verify)?;
    // Hop-by-hop and destination options with a PadN option (RFC 8200 § 4.2-4.3), a type 2
    // routing header (RFC 6275 § 6.4) and fragment headers (RFC 8200 § 4.5).
    let opts = |next: IpProtocol| [next.0, 0, 1, 4, 0, 0, 0, 0];
    let mut ext_chain = opts(P::IPV6_OPTS).to_vec();
    ext_chain.extend_from_slice(&opts(P::IPV6_ROUTE));
    ext_chain.extend_from_slice(&[P::TCP.0, 2, 2, 1, 0, 0, 0, 0]);
    ext_chain.extend_from_slice(&DST6.octets());
    ext_chain.extend_from_slice(&tcp6);
    let udp6_big = udp(IP6, 5000, &pattern(64), Csum::Verify)?;
    let mut frag6_first = vec![P::UDP.0, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
    frag6_first.extend_from_slice(&udp6_big[..40]);
    let mut frag6_later = vec![P::UDP.0, 0, 0x00, 0x28, 0xde, 0xad, 0xbe, 0xef];
    frag6_later.extend_from_slice(&udp6_big[40..]);
    let na = NdpRepr::NeighborAdvert {
        flags: NeighborFlags {
            router: false,
            solicited: true,
            override_: true,
        },
        target_addr: LINK_LOCAL,
        target_lladdr: Some(GUEST_MAC),
    };
    let ra = NdpRepr::RouterAdvert {
        cur_hop_limit: 64,
        flags: 0x40,
        router_lifetime: 1800,
        reachable_time: 30_000,
        retrans_time: 1000,
        src_lladdr: Some(PEER_MAC),
        mtu: Some(1500),
        prefix_info: Some(PrefixInfo {
            prefix_len: 64,
            on_link: true,
            autonomous: true,
            valid_lifetime: 86_400,
            preferred_lifetime: 14_400,
            prefix: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        }),
    };
    let ndp = |src, dst, repr: NdpRepr| -> Result<Vec<u8>> {
        let message = icmpv6(src, dst, &Icmpv6Repr::Ndp(repr))?;
        ethernet(EtherType::IPV6, &ipv6(P::ICMPV6, src, dst, &message)?)
    };
    let solicited = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 2);
    let echo6 = icmpv6(
        SRC6,
        DST6,
        &Icmpv6Repr::EchoRequest {
            ident: 7,
            seq_no: 9,
            data: b"ping6",
        },
    )?;
    let too_big = icmpv6(
        SRC6,
        DST6,
        &Icmpv6Repr::PktTooBig {
            mtu: 1280,
            invoking: &ext_chain[..48],
        },
    )?;
    // SCTP common header (RFC 9260 § 3.1) and an INIT chunk header.
    let sctp = [0x0b, 0x59, 0x0b, 0x59, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 4];
    // An IEEE 802.3 length frame with an LLC header (STP BPDU head).
    let mut llc = vec![0u8; 14 + 8];
    llc[..6].copy_from_slice(&[0x01, 0x80, 0xc2, 0, 0, 0]);
    llc[12..14].copy_from_slice(&8u16.to_be_bytes());
    llc[14..17].copy_from_slice(&[0x42, 0x42, 0x03]);
    let inner = ethernet(EtherType::IPV4, &ipv4(P::TCP, &[], (false, 0), &tcp4_data)?)?;
    let frames = vec![
        ("ipv4_tcp_syn_options", tcp4.clone()),
        ("ipv4_tcp_data", inner.clone()),
        ("ipv4_udp_dns", ethernet(EtherType::IPV4, &ip4_udp)?),
        (
            "ipv4_options_udp",
            ethernet(
                EtherType::IPV4,
                &ipv4(P::UDP, &router_alert, (false, 0), &udp4)?,
            )?,
        ),
        (
            "ipv4_icmp_echo",
            ethernet(EtherType::IPV4, &ipv4(P::ICMP, &[], (false, 0), &echo)?)?,
        ),
        (
            "ipv4_icmp_frag_needed",
            ethernet(
                EtherType::IPV4,
                &ipv4(P::ICMP, &[], (false, 0), &frag_needed)?,
            )?,
        ),
        (
            "ipv4_icmp_ttl_exceeded",
            ethernet(
                EtherType::IPV4,
                &ipv4(P::ICMP, &[], (false, 0), &ttl_exceeded)?,
            )?,
        ),
        (
            "ipv4_first_fragment",
            ethernet(
                EtherType::IPV4,
                &ipv4(P::UDP, &[], (true, 0), &big_udp[..1480])?,
            )?,
        ),
        (
            "ipv4_later_fragment",
            ethernet(
                EtherType::IPV4,
                &ipv4(P::UDP, &[], (false, 1480), &big_udp[1480..])?,
            )?,
        ),
        (
            "ipv4_sctp",
            ethernet(EtherType::IPV4, &ipv4(P::SCTP, &[], (false, 0), &sctp)?)?,
        ),
        (
            "vlan_ipv4_tcp",
            tagged(&tcp4, VlanRepr::c_tag(vid(100), 5))?,
        ),
        (
            "priority_tag_ipv4_udp",
            tagged(
                &ethernet(EtherType::IPV4, &ip4_udp)?,
                VlanRepr::c_tag(None, 6),
            )?,
        ),
        (
            "qinq_ipv6_udp",
            tagged(
                &tagged(
                    &ethernet(EtherType::IPV6, &ipv6(P::UDP, SRC6, DST6, &udp6)?)?,
                    VlanRepr::c_tag(vid(20), 0),
                )?,
                VlanRepr::s_tag(vid(10), 3),
            )?,
        ),
        (
            "arp_request",
            arp(ArpOperation::Request, MacAddr([0; 6]), DST4)?,
        ),
        ("arp_reply", arp(ArpOperation::Reply, PEER_MAC, DST4)?),
        (
            "arp_gratuitous",
            arp(ArpOperation::Request, MacAddr([0xff; 6]), SRC4)?,
        ),
        (
            "ipv6_tcp_syn",
            ethernet(EtherType::IPV6, &ipv6(P::TCP, SRC6, DST6, &tcp6)?)?,
        ),
        (
            "ipv6_udp",
            ethernet(EtherType::IPV6, &ipv6(P::UDP, SRC6, DST6, &udp6)?)?,
        ),
        (
            "ipv6_ext_headers_tcp",
            ethernet(EtherType::IPV6, &ipv6(P::HOPOPT, SRC6, DST6, &ext_chain)?)?,
        ),
        (
            "ipv6_first_fragment",
            ethernet(
                EtherType::IPV6,
                &ipv6(P::IPV6_FRAG, SRC6, DST6, &frag6_first)?,
            )?,
        ),
        (
            "ipv6_later_fragment",
            ethernet(
                EtherType::IPV6,
                &ipv6(P::IPV6_FRAG, SRC6, DST6, &frag6_later)?,
            )?,
        ),
        (
            "ipv6_icmp_echo",
            ethernet(EtherType::IPV6, &ipv6(P::ICMPV6, SRC6, DST6, &echo6)?)?,
        ),
        (
            "ipv6_icmp_too_big",
            ethernet(EtherType::IPV6, &ipv6(P::ICMPV6, SRC6, DST6, &too_big)?)?,
        ),
        (
            "ndp_router_solicit",
            ndp(
                LINK_LOCAL,
                ALL_NODES,
                NdpRepr::RouterSolicit {
                    src_lladdr: Some(GUEST_MAC),
                },
            )?,
        ),
        ("ndp_router_advert", ndp(LINK_LOCAL, ALL_NODES, ra)?),
        (
            "ndp_neighbor_solicit",
            ndp(
                LINK_LOCAL,
                solicited,
                NdpRepr::NeighborSolicit {
                    target_addr: DST6,
                    src_lladdr: Some(GUEST_MAC),
                },
            )?,
        ),
        ("ndp_neighbor_advert", ndp(LINK_LOCAL, SRC6, na)?),
        ("ieee8023_llc", llc),
        ("vxlan_ipv4", vxlan(&vxlan_v4(), &inner)?),
    ];
    Ok(frames)
}

fn vxlan_v4() -> VxlanEncap {
    VxlanEncap {
        outer_src_mac: PEER_MAC,
        outer_dst_mac: GUEST_MAC,
        src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        dst_port: VXLAN_PORT,
        vni: Vni::from_u32_truncating(5001),
        ttl: 64,
        dscp: 0,
    }
}

fn vxlan_v6() -> VxlanEncap {
    VxlanEncap {
        src: IpAddr::V6(SRC6),
        dst: IpAddr::V6(DST6),
        vni: Vni::from_u32_truncating(77),
        ..vxlan_v4()
    }
}

/// `inner` encapsulated with `encap` as a peer VTEP would send it.
fn vxlan(encap: &VxlanEncap, inner: &[u8]) -> Result<Vec<u8>> {
    let template = EncapTemplate::new(encap)?;
    let mut buf = vec![0u8; MAX_OVERHEAD + inner.len()];
    buf[MAX_OVERHEAD..].copy_from_slice(inner);
    let fields = PacketFields::from_flow_hash(0x9e37_79b9);
    let start = template.write(&mut buf, MAX_OVERHEAD, inner.len(), fields)?;
    Ok(buf[start..].to_vec())
}

/// Outer frames from a peer: both underlays, a tagged one, and inner frames of other kinds.
fn vxlan_frames() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let frames = frames()?;
    let inner = |name: &str| {
        frames
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f.clone())
            .ok_or(format!("no frame {name}"))
    };
    let v4 = vxlan(&vxlan_v4(), &inner("ipv4_tcp_data")?)?;
    Ok(vec![
        ("ipv4_inner_tcp", v4.clone()),
        (
            "ipv4_inner_arp",
            vxlan(&vxlan_v4(), &inner("arp_request")?)?,
        ),
        (
            "ipv6_inner_ndp",
            vxlan(&vxlan_v6(), &inner("ndp_neighbor_solicit")?)?,
        ),
        (
            "ipv6_inner_vlan",
            vxlan(&vxlan_v6(), &inner("vlan_ipv4_tcp")?)?,
        ),
        ("vlan_outer_ipv4", tagged(&v4, VlanRepr::c_tag(vid(42), 0))?),
        ("inner_only_ipv4_udp", inner("ipv4_udp_dns")?),
    ])
}

/// `[tx caps, rx caps, virtio_net_hdr, frame]`, as the `offload` target reads it.
fn offload_input(tx: u8, rx: u8, hdr: VirtioNetHdr, frame: &[u8]) -> Vec<u8> {
    let mut input = vec![tx, rx];
    input.extend_from_slice(&hdr.to_bytes());
    input.extend_from_slice(frame);
    input
}

/// A guest's GSO header for a frame whose L4 header starts at `l4` and ends at `headers_len`.
fn gso_hdr(gso_type: u8, gso_size: u16, l4: usize, headers_len: usize, tcp: bool) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: 1,
        gso_type,
        hdr_len: headers_len as u16,
        gso_size,
        csum_start: l4 as u16,
        csum_offset: if tcp { 16 } else { 6 },
        num_buffers: 0,
    }
}

/// Transmit caps: all offloads (0x3f); receive caps: none, GUEST_CSUM only, everything.
fn offload_inputs() -> Result<Vec<(String, Vec<u8>)>> {
    use IpProtocol as P;
    const ALL_TX: u8 = 0x3f;
    let ack = TcpFlags::ACK | TcpFlags::PSH;
    let ecn = ack | TcpFlags::CWR;
    let mut inputs = Vec::new();
    let mut add = |name: &str, hdr: VirtioNetHdr, frame: &[u8]| {
        for (rx_name, rx) in [
            ("guest_none", 0x00),
            ("guest_csum", 0x01),
            ("guest_all", 0x7f),
        ] {
            inputs.push((
                format!("{name}-{rx_name}"),
                offload_input(ALL_TX, rx, hdr, frame),
            ));
        }
    };
    // TSO over IPv4: 4000 bytes at MSS 1448, timestamps (Linux's usual 32-byte TCP header).
    let payload = pattern(4000);
    let mut repr = tcp_repr(ack, payload.len(), false);
    repr.timestamps = Some(TcpTimestamps { tsval: 1, tsecr: 2 });
    let seg = tcp(IP4, &repr, &payload, Csum::Partial)?;
    let tso4 = ethernet(EtherType::IPV4, &ipv4(P::TCP, &[], (false, 0), &seg)?)?;
    add("tso4", gso_hdr(GsoType::TCPV4, 1448, 34, 66, true), &tso4);
    // The same with ECN (CWR set, the header's ECN bit).
    let seg = tcp(
        IP4,
        &tcp_repr(ecn, payload.len(), false),
        &payload,
        Csum::Partial,
    )?;
    let frame = ethernet(EtherType::IPV4, &ipv4(P::TCP, &[], (false, 0), &seg)?)?;
    add(
        "tso4_ecn",
        gso_hdr(GsoType::TCPV4 | GsoType::ECN, 1448, 34, 54, true),
        &frame,
    );
    // VLAN-tagged TSO, and a frame that fits one segment.
    let tagged_tso = tagged(&tso4, VlanRepr::c_tag(vid(100), 0))?;
    add(
        "tso4_vlan",
        gso_hdr(GsoType::TCPV4, 1448, 38, 70, true),
        &tagged_tso,
    );
    let small = pattern(300);
    let seg = tcp(
        IP4,
        &tcp_repr(ack, small.len(), false),
        &small,
        Csum::Partial,
    )?;
    let frame = ethernet(EtherType::IPV4, &ipv4(P::TCP, &[], (false, 0), &seg)?)?;
    add(
        "tso4_one_segment",
        gso_hdr(GsoType::TCPV4, 1448, 34, 54, true),
        &frame,
    );
    // IPv4 options (Router Alert) before the TCP header.
    let seg = tcp(
        IP4,
        &tcp_repr(ack, payload.len(), false),
        &payload,
        Csum::Partial,
    )?;
    let frame = ethernet(
        EtherType::IPV4,
        &ipv4(P::TCP, &[148, 4, 0, 0], (false, 0), &seg)?,
    )?;
    add(
        "tso4_ip_options",
        gso_hdr(GsoType::TCPV4, 1000, 38, 58, true),
        &frame,
    );
    // TSO over IPv6, and with a hop-by-hop header (segmentation refuses it as unsupported).
    let payload6 = pattern(3000);
    let seg = tcp(
        IP6,
        &tcp_repr(ack, payload6.len(), false),
        &payload6,
        Csum::Partial,
    )?;
    let frame = ethernet(EtherType::IPV6, &ipv6(P::TCP, SRC6, DST6, &seg)?)?;
    add("tso6", gso_hdr(GsoType::TCPV6, 1440, 54, 74, true), &frame);
    let mut hbh = vec![P::TCP.0, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&seg);
    let frame = ethernet(EtherType::IPV6, &ipv6(P::HOPOPT, SRC6, DST6, &hbh)?)?;
    add(
        "tso6_hop_by_hop",
        gso_hdr(GsoType::TCPV6, 1440, 62, 82, true),
        &frame,
    );
    // USO and UFO over both families.
    let dgram = pattern(3000);
    let udp4 = udp(IP4, 4433, &dgram, Csum::Partial)?;
    let frame = ethernet(EtherType::IPV4, &ipv4(P::UDP, &[], (false, 0), &udp4)?)?;
    add(
        "uso4",
        gso_hdr(GsoType::UDP_L4, 1200, 34, 42, false),
        &frame,
    );
    add("ufo4", gso_hdr(GsoType::UDP, 1480, 34, 42, false), &frame);
    let udp6 = udp(IP6, 4433, &dgram, Csum::Partial)?;
    let frame = ethernet(EtherType::IPV6, &ipv6(P::UDP, SRC6, DST6, &udp6)?)?;
    add(
        "uso6",
        gso_hdr(GsoType::UDP_L4, 1232, 54, 62, false),
        &frame,
    );
    add("ufo6", gso_hdr(GsoType::UDP, 1448, 54, 62, false), &frame);
    // Checksum offload alone (UDP over IPv4, TCP over IPv6), and a plain frame.
    let udp_small = udp(IP4, 53, b"query", Csum::Partial)?;
    let frame = ethernet(EtherType::IPV4, &ipv4(P::UDP, &[], (false, 0), &udp_small)?)?;
    let csum_hdr = |start: u16, offset: u16| VirtioNetHdr {
        flags: 1,
        csum_start: start,
        csum_offset: offset,
        ..VirtioNetHdr::default()
    };
    add("csum_udp4", csum_hdr(34, 6), &frame);
    let seg = tcp(
        IP6,
        &tcp_repr(ack, 100, false),
        &pattern(100),
        Csum::Partial,
    )?;
    let frame6 = ethernet(EtherType::IPV6, &ipv6(P::TCP, SRC6, DST6, &seg)?)?;
    add("csum_tcp6", csum_hdr(54, 16), &frame6);
    add("plain", VirtioNetHdr::default(), &frame);
    Ok(inputs)
}

/// The documented example, each uplink kind, a `[[vif]]` list, and specs that fail validation.
fn configs() -> Vec<(&'static str, String)> {
    let base = "id = \"db-1\"\nmac = \"52:54:00:00:01:02\"\n";
    let with = |rest: &str| format!("{base}{rest}");
    vec![
        ("example", EXAMPLE_TOML.to_string()),
        ("uplink_local", with("uplink = { type = \"local\", segment = \"lab\" }\n")),
        ("uplink_vlan", with("mtu = 1500\nuplink = { type = \"vlan\", vid = 100, pcp = 3, parent = \"eth1\", parent_mtu = 1504 }\n")),
        ("uplink_sriov", with("queue_pairs = 4\nqueue_size = 1024\nuplink = { type = \"sriov-vf\", pf = \"enp3s0f0\", vf_index = 3 }\n")),
        ("uplink_vxlan_ipv6", with("mtu = 1430\n[uplink]\ntype = \"vxlan\"\nvni = 16777215\nlocal = \"2001:db8::10\"\nremotes = [\"2001:db8::11\"]\nudp_port = 4789\nunderlay_mtu = 1500\n")),
        ("offloads_all", with("[offloads]\ncsum = true\ntso4 = true\ntso6 = true\necn = true\nufo = true\nuso = true\n[uplink]\ntype = \"local\"\nsegment = \"lab\"\n[labels]\nteam = \"net\"\n")),
        ("list", format!("[[vif]]\n{}\n[[vif]]\n{}", with("uplink = { type = \"local\", segment = \"a\" }"), "id = \"db-2\"\nmac = \"52:54:00:00:01:03\"\nuplink = { type = \"local\", segment = \"b\" }\n")),
        ("invalid_mtu_over_overlay", with("mtu = 1500\n[uplink]\ntype = \"vxlan\"\nvni = 1\nlocal = \"192.0.2.10\"\nremotes = [\"192.0.2.11\"]\nunderlay_mtu = 1500\n")),
        ("invalid_multicast_mac", "id = \"x\"\nmac = \"01:00:5e:00:00:01\"\nuplink = { type = \"local\", segment = \"lab\" }\n".to_string()),
        ("invalid_queue_pairs", with("queue_pairs = 0\nuplink = { type = \"local\", segment = \"lab\" }\n")),
        ("invalid_unknown_key", with("speed = 10\nuplink = { type = \"local\", segment = \"lab\" }\n")),
    ]
}

fn write_all<N: AsRef<str>>(dir: &Path, inputs: &[(N, Vec<u8>)]) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (name, bytes) in inputs {
        fs::write(dir.join(name.as_ref()), bytes)?;
    }
    println!("{}: {} seeds", dir.display(), inputs.len());
    Ok(())
}

fn main() -> Result<()> {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let frames = frames()?;
    write_all(&seeds.join("wire_frame"), &frames)?;
    write_all(&seeds.join("vxlan_decap"), &vxlan_frames()?)?;
    write_all(&seeds.join("offload"), &offload_inputs()?)?;
    let configs: Vec<_> = configs()
        .into_iter()
        .map(|(name, text)| (name, text.into_bytes()))
        .collect();
    write_all(&seeds.join("vif_config"), &configs)?;
    Ok(())
}
