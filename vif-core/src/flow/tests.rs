//! Tests for flow-key extraction and the flow hash.

use super::*;
use crate::wire::frame::L4;
use proptest::prelude::*;

/// Generated with Python `struct`: Ethernet 52:54:00:12:34:56 -> 52:54:00:ab:cd:ef, IPv4
/// 10.0.0.1 -> 10.0.0.2 (DF, TTL 64, checksum 0x26ce), TCP SYN 40000 -> 443, seq 1, window
/// 64240 (checksum 0x02f3).
const TCP_SYN: [u8; 54] = [
    0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x26, 0xce, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0x9c, 0x40, 0x01, 0xbb, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02,
    0xfa, 0xf0, 0x02, 0xf3, 0x00, 0x00,
];

const HOST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const PEER_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);

fn syn_key() -> FlowKey {
    FlowKey {
        src_mac: HOST_MAC,
        dst_mac: PEER_MAC,
        vlan: None,
        inner_vlan: None,
        ethertype: EtherType::IPV4,
        ip: FlowIp::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
        },
        ip_proto: 6,
        frag: IpFrag::No,
        src_port: 40000,
        dst_port: 443,
        vni: None,
    }
}

/// Inserts a 4-byte tag (TPID, TCI) after the MAC addresses.
fn tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

#[test]
fn extracts_tcp_syn() {
    assert_eq!(FlowKey::extract(&TCP_SYN), Ok(syn_key()));
    assert_eq!(
        syn_key().src_ip(),
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    );
}

#[test]
fn extracts_vlans() {
    let single = tagged(&TCP_SYN, 0x8100, 0x2064); // PCP 1, VID 100
    let key = FlowKey::extract(&single).unwrap();
    assert_eq!(
        (key.vlan.map(VlanId::get), key.inner_vlan),
        (Some(100), None)
    );
    let double = tagged(&single, 0x88a8, 0x00c8); // S-tag VID 200 outside
    let key = FlowKey::extract(&double).unwrap();
    assert_eq!(key.vlan.map(VlanId::get), Some(200));
    assert_eq!(key.inner_vlan.map(VlanId::get), Some(100));
    assert_eq!((key.src_port, key.dst_port), (40000, 443));
    let priority = tagged(&TCP_SYN, 0x8100, 0xa000); // PCP 5, VID 0
    assert_eq!(FlowKey::extract(&priority).unwrap().vlan, None);
}

#[test]
fn extracts_icmp_type_and_code_as_ports() {
    // The SYN frame turned into an ICMP echo request (type 8, code 0): checksums are not read.
    let mut frame = TCP_SYN;
    frame[23] = 1;
    frame[34..38].copy_from_slice(&[8, 0, 0, 0]);
    let key = FlowKey::extract(&frame).unwrap();
    assert_eq!((key.ip_proto, key.src_port, key.dst_port), (1, 8, 0));
    assert_eq!(key.reversed().src_port, 8, "reversing keeps the type");
}

#[test]
fn extracts_ipv6_neighbor_solicitation() {
    // Ethernet to 33:33:ff:00:00:01, IPv6 fe80::5054:ff:fe12:3456 -> ff02::1:ff00:1, ICMPv6 NS
    // (type 135): hand-built per RFC 4861 § 4.3; the body is not read.
    let mut frame = vec![
        0x33, 0x33, 0xff, 0, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x86, 0xdd,
    ];
    frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, 58, 255]);
    frame.extend_from_slice(
        &"fe80::5054:ff:fe12:3456"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    frame.extend_from_slice(&"ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap().octets());
    frame.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&[0; 24]);
    let key = FlowKey::extract(&frame).unwrap();
    assert_eq!((key.ethertype, key.ip_proto), (EtherType::IPV6, 58));
    assert_eq!((key.src_port, key.dst_port), (135, 0));
    assert_eq!(key.dst_ip(), Some("ff02::1:ff00:1".parse().unwrap()));
}

#[test]
fn extracts_arp_addresses_and_opcode() {
    // RFC 826 reply, hand-built: 10.0.0.2 is at 52:54:00:ab:cd:ef, to 10.0.0.1.
    let mut frame = vec![
        0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x52, 0x54, 0, 0xab, 0xcd, 0xef, 8, 6,
    ];
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    frame.extend_from_slice(&[0x52, 0x54, 0, 0xab, 0xcd, 0xef, 10, 0, 0, 2]);
    frame.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56, 10, 0, 0, 1]);
    let key = FlowKey::extract(&frame).unwrap();
    assert_eq!(key.ip_proto, 2);
    assert_eq!(
        key.ip,
        FlowIp::V4 {
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(10, 0, 0, 1)
        }
    );
    assert_eq!((key.src_port, key.dst_port), (0, 0));
}

#[test]
fn later_fragment_has_no_ports() {
    let mut frame = TCP_SYN;
    frame[20..22].copy_from_slice(&[0x00, 0xb9]); // offset 185 × 8 = 1480
    let key = FlowKey::extract(&frame).unwrap();
    assert_eq!((key.frag, key.ip_proto), (IpFrag::Later, 6));
    assert_eq!((key.src_port, key.dst_port), (0, 0));
}

#[test]
fn foreign_layout_is_an_error_not_a_panic() {
    let mut layout = parse_frame(&TCP_SYN).unwrap();
    layout.l4 = Some(L4 {
        proto: IpProtocol::TCP,
        offset: 52,
        header_len: 20,
    });
    assert!(FlowKey::extract_with_layout(&TCP_SYN, &layout).is_err());
    let layout = parse_frame(&TCP_SYN).unwrap();
    assert!(FlowKey::extract_with_layout(&TCP_SYN[..40], &layout).is_err());
}

#[test]
fn hash_is_pinned() {
    // The hash picks VXLAN source ports: it must not change between runs or builds without
    // a reason. Update this value deliberately if the function changes.
    assert_eq!(syn_key().hash(), HASH_OF_SYN);
    assert_ne!(syn_key().hash_with_seed(1), HASH_OF_SYN);
    let vni = Vni::new(0).unwrap();
    assert_ne!(
        syn_key().with_vni(vni).hash(),
        HASH_OF_SYN,
        "Some(0) differs from None"
    );
}
const HASH_OF_SYN: u32 = 0x225e_251b;

#[test]
fn hash_spreads_low_bits() {
    // 65536 flows that differ only in source port and the last address byte, bucketed by the
    // low 8 bits (a 256-queue or port-range table): every bucket within ±25 % of the mean.
    let mut buckets = [0u32; 256];
    for port in 0..=255u16 {
        for host in 0..=255u8 {
            let key = FlowKey {
                src_port: 32768 + port,
                ip: FlowIp::V4 {
                    src: Ipv4Addr::new(10, 0, 0, host),
                    dst: Ipv4Addr::new(10, 0, 0, 2),
                },
                ..syn_key()
            };
            buckets[(key.hash() & 0xff) as usize] += 1;
        }
    }
    let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
    assert!(*min >= 192 && *max <= 320, "min {min} max {max}");
}

#[test]
fn one_bit_changes_about_half_the_hash() {
    // Flip each bit of the source port and address: on average 16 of 32 output bits change.
    let base = syn_key();
    let mut flipped_bits = 0u32;
    let mut trials = 0u32;
    for bit in 0..16 {
        let key = FlowKey {
            src_port: base.src_port ^ (1 << bit),
            ..base
        };
        flipped_bits += (key.hash() ^ base.hash()).count_ones();
        trials += 1;
    }
    for bit in 0..32 {
        let src = Ipv4Addr::from_bits(0x0a00_0001 ^ (1 << bit));
        let key = FlowKey {
            ip: FlowIp::V4 {
                src,
                dst: Ipv4Addr::new(10, 0, 0, 2),
            },
            ..base
        };
        flipped_bits += (key.hash() ^ base.hash()).count_ones();
        trials += 1;
    }
    let mean = f64::from(flipped_bits) / f64::from(trials);
    assert!((13.0..=19.0).contains(&mean), "mean {mean}");
}

fn arb_key() -> impl Strategy<Value = FlowKey> {
    let ip = prop_oneof![
        Just(FlowIp::None),
        (any::<u32>(), any::<u32>()).prop_map(|(s, d)| FlowIp::V4 {
            src: Ipv4Addr::from_bits(s),
            dst: Ipv4Addr::from_bits(d)
        }),
        (any::<u128>(), any::<u128>()).prop_map(|(s, d)| FlowIp::V6 {
            src: Ipv6Addr::from_bits(s),
            dst: Ipv6Addr::from_bits(d)
        }),
    ];
    (
        (any::<[u8; 6]>(), any::<[u8; 6]>(), 0u16..4095, any::<u16>()),
        (
            ip,
            prop_oneof![Just(1u8), Just(6), Just(17), Just(58), any::<u8>()],
        ),
        (
            any::<u16>(),
            any::<u16>(),
            proptest::option::of(0u32..=Vni::MAX),
        ),
    )
        .prop_map(
            |((src, dst, vid, ethertype), (ip, proto), (sport, dport, vni))| FlowKey {
                src_mac: MacAddr(src),
                dst_mac: MacAddr(dst),
                vlan: VlanId::new(vid).ok(),
                inner_vlan: None,
                ethertype: EtherType(ethertype),
                ip,
                ip_proto: proto,
                frag: IpFrag::No,
                src_port: sport,
                dst_port: dport,
                vni: vni.and_then(|v| Vni::new(v).ok()),
            },
        )
}

proptest! {
    #[test]
    fn symmetric_hash_agrees_both_ways(key in arb_key()) {
        prop_assert_eq!(key.symmetric_hash(), key.reversed().symmetric_hash());
        prop_assert_eq!(key.reversed().reversed(), key);
        prop_assert_eq!(key.hash(), key.hash(), "deterministic");
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(key) = FlowKey::extract(&bytes) {
            prop_assert_eq!(&key.src_mac.0[..], &bytes[6..12]);
        }
    }

    #[test]
    fn arbitrary_layouts_never_panic(
        l3 in (0usize..80, 0usize..80, 0usize..80),
        l4 in proptest::option::of((0usize..80, any::<u8>())),
        kind in 0u8..4,
    ) {
        // A caller-made layout that may not describe the frame: errors, never panics.
        let mut layout = parse_frame(&TCP_SYN).unwrap();
        layout.l3.kind = [L3Kind::Ipv4, L3Kind::Ipv6, L3Kind::Arp, L3Kind::Other][usize::from(kind)];
        (layout.l3.offset, layout.l3.header_len, layout.l3.end) = l3;
        layout.l4 = l4.map(|(offset, proto)| L4 { proto: IpProtocol(proto), offset, header_len: 8 });
        let _ = FlowKey::extract_with_layout(&TCP_SYN, &layout);
    }
}
