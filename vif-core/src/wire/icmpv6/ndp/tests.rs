//! Tests for the NDP accessors, option walk and `NdpRepr`.

use super::super::Icmpv6Repr;
use super::*;
use crate::wire::Csum;
use proptest::prelude::*;

const HOST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const SOLICITED_NODE: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const HOST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

/// Generated with Python `struct` per RFC 4861 § 4.3: NS from fe80::5054:ff:fe12:3456 to
/// ff02::1:ff00:1, target fe80::1, source link-layer option 52:54:00:12:34:56.
const NS_BYTES: [u8; 32] = [
    0x87, 0x00, 0x72, 0x22, 0x00, 0x00, 0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
];

/// Generated with Python `struct` per RFC 4861 § 4.4: NA from fe80::1 to
/// fe80::5054:ff:fe12:3456, flags R|S|O, target fe80::1, target link-layer option 02:00:00:00:00:01.
const NA_BYTES: [u8; 32] = [
    0x88, 0x00, 0x14, 0x61, 0xe0, 0x00, 0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
];

/// Generated with Python `struct` per RFC 4861 § 4.2 and § 4.6: RA from fe80::1 to ff02::1, hop
/// limit 64, M|O, lifetime 1800 s, source link-layer 02:00:00:00:00:01, MTU 1500, prefix
/// 2001:db8::/64 with L|A, valid 30 days, preferred 7 days.
const RA_BYTES: [u8; 64] = [
    0x86, 0x00, 0xed, 0x29, 0x40, 0xc0, 0x07, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x05, 0xdc,
    0x03, 0x04, 0x40, 0xc0, 0x00, 0x27, 0x8d, 0x00, 0x00, 0x09, 0x3a, 0x80, 0x00, 0x00, 0x00, 0x00,
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// Parses with the checksum verified, re-emits, and checks the bytes come back identical.
fn parse_and_reemit(bytes: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> NdpRepr {
    let packet = Icmpv6Packet::new_checked(bytes).unwrap();
    let repr = Icmpv6Repr::parse(&src, &dst, &packet, Csum::Verify).unwrap();
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(&mut out[..]),
        Csum::Verify,
    )
    .unwrap();
    assert_eq!(out, bytes);
    match repr {
        Icmpv6Repr::Ndp(ndp) => ndp,
        other => panic!("not NDP: {other:?}"),
    }
}

#[test]
fn neighbor_solicitation() {
    let packet = Icmpv6Packet::new_checked(&NS_BYTES[..]).unwrap();
    assert_eq!(packet.target_addr(), Some(ROUTER));
    assert_eq!(packet.source_lladdr(), Ok(Some(HOST_MAC)));
    assert_eq!(packet.target_lladdr(), Ok(None));
    assert_eq!(packet.neighbor_flags(), None);
    assert_eq!(
        parse_and_reemit(&NS_BYTES, HOST, SOLICITED_NODE),
        NdpRepr::NeighborSolicit {
            target_addr: ROUTER,
            src_lladdr: Some(HOST_MAC)
        }
    );
}

#[test]
fn neighbor_advertisement() {
    let packet = Icmpv6Packet::new_checked(&NA_BYTES[..]).unwrap();
    assert_eq!(packet.target_addr(), Some(ROUTER));
    assert_eq!(packet.target_lladdr(), Ok(Some(ROUTER_MAC)));
    let flags = NeighborFlags {
        router: true,
        solicited: true,
        override_: true,
    };
    assert_eq!(packet.neighbor_flags(), Some(flags));
    assert_eq!(
        parse_and_reemit(&NA_BYTES, ROUTER, HOST),
        NdpRepr::NeighborAdvert {
            flags,
            target_addr: ROUTER,
            target_lladdr: Some(ROUTER_MAC)
        }
    );
}

#[test]
fn router_advertisement() {
    let repr = parse_and_reemit(&RA_BYTES, ROUTER, ALL_NODES);
    assert_eq!(
        repr,
        NdpRepr::RouterAdvert {
            cur_hop_limit: 64,
            flags: 0xc0,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_time: 0,
            src_lladdr: Some(ROUTER_MAC),
            mtu: Some(1500),
            prefix_info: Some(PrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 2_592_000,
                preferred_lifetime: 604_800,
                prefix: "2001:db8::".parse().unwrap(),
            }),
        }
    );
    let packet = Icmpv6Packet::new_checked(&RA_BYTES[..]).unwrap();
    assert_eq!(packet.target_addr(), None, "RA has no target");
}

#[test]
fn zero_length_option_is_an_error_and_ends_the_walk() {
    let mut bytes = NS_BYTES;
    bytes[25] = 0;
    let packet = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
    let walked: Vec<_> = packet.ndp_options().collect();
    assert_eq!(walked.len(), 1);
    assert!(walked[0].is_err());
    assert!(packet.source_lladdr().is_err());
    assert!(NdpRepr::parse(&packet).is_err());
}

#[test]
fn malformed_options_are_errors() {
    // Past the end; a link-layer option two units long; an MTU option truncated to 2 bytes; a
    // good option followed by a bad one still fails the lookup.
    let cases: [&[u8]; 4] = [
        &[1, 2, 0, 0, 0, 0, 0, 0],
        &[2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[5, 1],
        &[2, 1, 2, 0, 0, 0, 0, 1, 0x99, 0],
    ];
    for options in cases {
        let mut bytes = NA_BYTES[..24].to_vec();
        bytes.extend_from_slice(options);
        let packet = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.target_lladdr().is_err(), "{options:?}");
        assert!(NdpRepr::parse(&packet).is_err(), "{options:?}");
    }
}

#[test]
fn first_repeated_option_wins_and_unknown_ones_are_skipped() {
    let mut bytes = NA_BYTES.to_vec();
    bytes.extend_from_slice(&[0x99, 1, 0, 0, 0, 0, 0, 0]); // unknown type 153
    bytes.extend_from_slice(&[2, 1, 0x02, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb]);
    let packet = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.target_lladdr(), Ok(Some(ROUTER_MAC)));
    assert_eq!(packet.ndp_options().count(), 3);
}

#[test]
fn short_fixed_part_and_nonzero_code_are_rejected() {
    assert!(Icmpv6Packet::new_checked(&NA_BYTES[..23]).is_err());
    assert!(Icmpv6Packet::new_checked(&RA_BYTES[..15]).is_err());
    let mut coded = NS_BYTES;
    coded[1] = 1;
    let packet = Icmpv6Packet::new_checked(&coded[..]).unwrap();
    assert!(NdpRepr::parse(&packet).is_err());
}

#[test]
fn option_emit_checks_lengths() {
    let mut small = [0u8; 7];
    assert!(NdpOption::Mtu(1500).emit(&mut small).is_err());
    let odd = NdpOption::Unknown {
        kind: 200,
        data: &[0; 5],
    };
    assert!(odd.emit(&mut [0u8; 16]).is_err());
}

fn arb_mac() -> impl Strategy<Value = Option<MacAddr>> {
    proptest::option::of(any::<[u8; 6]>().prop_map(MacAddr))
}

fn arb_ndp() -> impl Strategy<Value = NdpRepr> {
    let addr = any::<[u8; 16]>().prop_map(Ipv6Addr::from);
    let prefix = (
        any::<u8>(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_flat_map(move |(len, l, a, valid, preferred)| {
            any::<[u8; 16]>().prop_map(move |p| PrefixInfo {
                prefix_len: len,
                on_link: l,
                autonomous: a,
                valid_lifetime: valid,
                preferred_lifetime: preferred,
                prefix: p.into(),
            })
        });
    prop_oneof![
        arb_mac().prop_map(|src_lladdr| NdpRepr::RouterSolicit { src_lladdr }),
        (
            (
                any::<u8>(),
                any::<u8>(),
                any::<u16>(),
                any::<u32>(),
                any::<u32>()
            ),
            (
                arb_mac(),
                proptest::option::of(any::<u32>()),
                proptest::option::of(prefix)
            ),
        )
            .prop_map(|((hop, flags, life, reach, retrans), (mac, mtu, pi))| {
                NdpRepr::RouterAdvert {
                    cur_hop_limit: hop,
                    flags,
                    router_lifetime: life,
                    reachable_time: reach,
                    retrans_time: retrans,
                    src_lladdr: mac,
                    mtu,
                    prefix_info: pi,
                }
            }),
        (addr.clone(), arb_mac()).prop_map(|(target_addr, src_lladdr)| {
            NdpRepr::NeighborSolicit {
                target_addr,
                src_lladdr,
            }
        }),
        (any::<[bool; 3]>(), addr, arb_mac()).prop_map(|([r, s, o], target_addr, mac)| {
            NdpRepr::NeighborAdvert {
                flags: NeighborFlags {
                    router: r,
                    solicited: s,
                    override_: o,
                },
                target_addr,
                target_lladdr: mac,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn round_trip(ndp in arb_ndp()) {
        let repr = Icmpv6Repr::Ndp(ndp);
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&HOST, &ROUTER, &mut Icmpv6Packet::new_unchecked(&mut buf[..]), Csum::Verify).unwrap();
        let packet = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Icmpv6Repr::parse(&HOST, &ROUTER, &packet, Csum::Verify), Ok(repr));
    }

    #[test]
    fn option_walk_terminates_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        // Each item consumes at least 8 bytes, so the walk yields at most len / 8 + 1 items.
        let count = NdpOptionIter::new(&bytes).count();
        prop_assert!(count <= bytes.len() / 8 + 1);
    }
}
