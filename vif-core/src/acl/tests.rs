//! Tests of the compiled classifier: differential against the linear-scan reference on random
//! rule sets and packets, monitor mode and counters, and an ACL swap under concurrent
//! classification. Key builders shared with the conntrack and firewall tests live here too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::reference::reference_lookup;
use super::*;
use crate::flow::{FlowIp, FlowKey};
use crate::mac::MacAddr;
use crate::wire::ethernet::EtherType;
use crate::wire::frame::IpFrag;
use crate::wire::tcp::TcpFlags;

pub(crate) const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
pub(crate) const PEER_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);

/// An IP key between `src` and `dst` (same family) with protocol and ports (ICMP: type, code).
pub(crate) fn ip_key(src: IpAddr, dst: IpAddr, proto: u8, src_port: u16, dst_port: u16) -> AclKey {
    let (ethertype, ip) = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => (EtherType::IPV4, FlowIp::V4 { src, dst }),
        (IpAddr::V6(src), IpAddr::V6(dst)) => (EtherType::IPV6, FlowIp::V6 { src, dst }),
        _ => (EtherType::IPV4, FlowIp::None),
    };
    AclKey::from_flow(FlowKey {
        src_mac: GUEST_MAC,
        dst_mac: PEER_MAC,
        vlan: None,
        inner_vlan: None,
        ethertype,
        ip,
        ip_proto: proto,
        frag: IpFrag::No,
        src_port,
        dst_port,
        vni: None,
    })
}

pub(crate) fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: TcpFlags) -> AclKey {
    let mut key = ip_key(src.parse().unwrap(), dst.parse().unwrap(), 6, sport, dport);
    key.tcp_flags = flags;
    key
}

pub(crate) fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> AclKey {
    ip_key(src.parse().unwrap(), dst.parse().unwrap(), 17, sport, dport)
}

fn rule(text: &str) -> Rule {
    toml::from_str(text).unwrap()
}

#[test]
fn priority_then_order_decides() {
    let spec = AclSpec::new(
        "t",
        vec![
            rule("priority = 5\naction = \"deny\"\nprotocol = \"udp\""),
            rule("priority = 1\naction = \"allow\"\nsrc = \"10.0.0.0/8\""),
            rule("priority = 1\naction = \"deny\"\nsrc = \"10.1.0.0/16\""),
        ],
    );
    let acl = CompiledAcl::compile(&spec).unwrap();
    let key = udp("10.1.2.3", "10.0.0.1", 5, 53);
    let decided = acl.lookup(Direction::Egress, &key);
    assert_eq!(
        decided.decider,
        Decider::Rule(1),
        "priority 1 beats 5, and rule 1 is first"
    );
    assert_eq!(decided.action, Action::Allow);
    let other = udp("192.0.2.1", "10.0.0.1", 5, 53);
    assert_eq!(
        acl.lookup(Direction::Egress, &other).decider,
        Decider::Rule(0)
    );
    let none = tcp("192.0.2.1", "10.0.0.1", 5, 53, TcpFlags::SYN);
    assert_eq!(
        acl.lookup(Direction::Egress, &none),
        Classification {
            action: Action::Deny,
            decider: Decider::Default
        }
    );
}

#[test]
fn later_fragments_match_only_l3_rules() {
    let spec = AclSpec::new(
        "t",
        vec![
            rule("action = \"allow\"\nprotocol = \"udp\"\ndst_ports = \"53\""),
            rule("action = \"deny\"\nprotocol = \"udp\""),
        ],
    );
    let acl = CompiledAcl::compile(&spec).unwrap();
    let mut key = udp("10.0.0.1", "10.0.0.2", 0, 0);
    key.flow.frag = IpFrag::Later;
    assert_eq!(
        acl.lookup(Direction::Egress, &key).decider,
        Decider::Rule(1)
    );
    // Port 0 of a later fragment must not match a range that includes 0 either.
    let spec = AclSpec::new(
        "t",
        vec![rule(
            "action = \"allow\"\nprotocol = \"udp\"\ndst_ports = \"0-10\"",
        )],
    );
    let acl = CompiledAcl::compile(&spec).unwrap();
    assert_eq!(
        acl.lookup(Direction::Egress, &key).decider,
        Decider::Default
    );
}

#[test]
fn monitor_mode_counts_would_deny_and_passes() {
    let mut spec = AclSpec::new("m", vec![rule("action = \"deny\"\nprotocol = \"tcp\"")]);
    spec.mode = Mode::Monitor;
    spec.default_action.ingress = Action::Allow;
    let acl = CompiledAcl::compile(&spec).unwrap();
    let syn = tcp("10.0.0.1", "10.0.0.2", 1000, 80, TcpFlags::SYN);
    let verdict = acl.classify(Direction::Egress, &syn, 0);
    assert_eq!(verdict, AclVerdict::WouldDeny(Decider::Rule(0)));
    assert!(verdict.passes() && verdict.drop_reason().is_none());
    acl.classify(Direction::Egress, &syn, 3);
    let dns = udp("10.0.0.1", "10.0.0.2", 1000, 53);
    assert_eq!(
        acl.classify(Direction::Egress, &dns, 1),
        AclVerdict::WouldDeny(Decider::Default)
    );
    assert_eq!(
        acl.classify(Direction::Ingress, &dns, 1),
        AclVerdict::Allow(Decider::Default)
    );
    assert_eq!(acl.would_deny(), 3);
    assert_eq!(acl.rule_hits(), vec![2]);
    assert_eq!(acl.default_hits(Direction::Egress), 1);
    assert_eq!(acl.default_hits(Direction::Ingress), 1);

    spec.mode = Mode::Enforce;
    let acl = CompiledAcl::compile(&spec).unwrap();
    let verdict = acl.classify(Direction::Egress, &syn, 0);
    assert_eq!(verdict, AclVerdict::Deny(Decider::Rule(0)));
    assert_eq!(
        verdict.drop_reason(),
        Some(crate::stats::DropReason::AclDeny)
    );
    assert_eq!(acl.would_deny(), 0);
}

#[test]
fn empty_and_wildcard_rule_sets() {
    let acl = CompiledAcl::compile(&AclSpec::new("e", vec![])).unwrap();
    let key = udp("10.0.0.1", "10.0.0.2", 1, 2);
    assert_eq!(
        acl.lookup(Direction::Ingress, &key).decider,
        Decider::Default
    );
    // A thousand catch-alls: the tree keeps only the first in every region.
    let rules = vec![rule("action = \"allow\""); 1000];
    let acl = CompiledAcl::compile(&AclSpec::new("w", rules)).unwrap();
    assert_eq!(
        acl.lookup(Direction::Ingress, &key).decider,
        Decider::Rule(0)
    );
    assert!(acl.tree_stats().leaf_entries <= 1, "{:?}", acl.tree_stats());
}

// ---- Random rule sets -------------------------------------------------------------------

const V4_BASES: [u32; 4] = [0x0a00_0000, 0x0a01_0000, 0xc0a8_0100, 0xac10_0500];
const V6_BASES: [u128; 3] = [
    0x2001_0db8_0000_0000_0000_0000_0000_0000,
    0x2001_0db8_0001_0000_0000_0000_0000_0000,
    0xfe80_0000_0000_0000_0000_0000_0000_0000,
];
const PORTS: [u16; 8] = [0, 22, 53, 80, 443, 1000, 1024, 65535];

/// A small deterministic generator, so that packets can be drawn from the rule set itself.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64* (Vigna 2016).
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn v4_addr(rng: &mut Rng) -> u32 {
    rng.pick(&V4_BASES) | (rng.next() as u32 & 0x0000_01ff)
}

fn v6_addr(rng: &mut Rng) -> u128 {
    rng.pick(&V6_BASES) | u128::from(rng.next() as u16 & 0x1ff)
}

fn cidr(rng: &mut Rng, v4: bool) -> IpCidr {
    if v4 {
        let len = rng.pick(&[0u8, 8, 16, 23, 24, 28, 32]);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        IpCidr::new(Ipv4Addr::from_bits(v4_addr(rng) & mask).into(), len).unwrap()
    } else {
        let len = rng.pick(&[0u8, 16, 32, 48, 64, 120, 128]);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        IpCidr::new(Ipv6Addr::from_bits(v6_addr(rng) & mask).into(), len).unwrap()
    }
}

fn ports(rng: &mut Rng) -> PortRange {
    let (a, b) = (rng.pick(&PORTS), rng.pick(&PORTS));
    PortRange::new(a.min(b), a.max(b)).unwrap()
}

fn random_rule(rng: &mut Rng) -> Rule {
    let mut rule = Rule {
        priority: rng.below(4) as u32,
        action: if rng.chance(2) {
            Action::Allow
        } else {
            Action::Deny
        },
        ..Rule::default()
    };
    // 0: any frame, 1: IP by protocol, 2: IPv4 prefixes, 3: IPv6 prefixes.
    let family = rng.below(4);
    if family >= 2 {
        let v4 = family == 2;
        if rng.chance(2) {
            rule.src = Some(cidr(rng, v4));
        }
        if rule.src.is_none() || rng.chance(2) {
            rule.dst = Some(cidr(rng, v4));
        }
    }
    if family == 0 {
        if rng.chance(2) {
            rule.ethertype = Some(EtherTypeMatch(rng.pick(&[
                EtherType::IPV4,
                EtherType::IPV6,
                EtherType::ARP,
                EtherType(0x88cc),
            ])));
        }
        return rule;
    }
    let icmp = match family {
        2 => 1,
        3 => 58,
        _ => rng.pick(&[1u8, 58]),
    };
    let protocol = rng.pick(&[6u8, 17, 132, icmp, 47]);
    if family != 1 && rng.chance(4) {
        return rule;
    }
    rule.protocol = Some(Protocol(crate::wire::ipv4::IpProtocol(protocol)));
    match protocol {
        6 | 17 | 132 => {
            if rng.chance(2) {
                rule.src_ports = Some(ports(rng));
            }
            if rng.chance(2) {
                rule.dst_ports = Some(ports(rng));
            }
            if protocol == 6 && rng.chance(3) {
                let mask = rng.next() as u8;
                rule.tcp_flags = Some(TcpFlagsMatch {
                    mask: TcpFlagSet(TcpFlags::from_bits(mask)),
                    value: TcpFlagSet(TcpFlags::from_bits(mask & rng.next() as u8)),
                });
            }
        }
        1 | 58 if rng.chance(2) => {
            rule.icmp_type = Some(rng.pick(&[0u8, 3, 8, 128, 129]));
            if rng.chance(2) {
                rule.icmp_code = Some(rng.pick(&[0u8, 1]));
            }
        }
        _ => {}
    }
    rule
}

/// A packet: often built inside a random rule's prefixes and ports, so rules are hit.
fn random_key(rng: &mut Rng, rules: &[Rule]) -> AclKey {
    let model = if rules.is_empty() || rng.chance(4) {
        None
    } else {
        Some(&rules[rng.below(rules.len())])
    };
    let v4 = match model.and_then(|r| r.src.or(r.dst)) {
        Some(cidr) => cidr.is_ipv4(),
        None => rng.chance(2),
    };
    let inside = |rng: &mut Rng, cidr: Option<IpCidr>| -> Option<u128> {
        let (first, last) = cidr?.range();
        let offset = match (last - first).checked_add(1) {
            Some(size) => u128::from(rng.next()) % size,
            None => u128::from(rng.next()),
        };
        Some(first + offset)
    };
    let (src, dst): (IpAddr, IpAddr) = if v4 {
        let src = inside(rng, model.and_then(|r| r.src)).map_or_else(|| v4_addr(rng), |a| a as u32);
        let dst = inside(rng, model.and_then(|r| r.dst)).map_or_else(|| v4_addr(rng), |a| a as u32);
        (
            Ipv4Addr::from_bits(src).into(),
            Ipv4Addr::from_bits(dst).into(),
        )
    } else {
        let src = inside(rng, model.and_then(|r| r.src)).unwrap_or_else(|| v6_addr(rng));
        let dst = inside(rng, model.and_then(|r| r.dst)).unwrap_or_else(|| v6_addr(rng));
        (
            Ipv6Addr::from_bits(src).into(),
            Ipv6Addr::from_bits(dst).into(),
        )
    };
    let proto = model
        .and_then(|r| r.protocol)
        .map_or_else(|| rng.pick(&[6u8, 17, 1, 58, 132, 47]), |p| p.number());
    let port = |rng: &mut Rng, range: Option<PortRange>| match range {
        Some(r) if !rng.chance(4) => rng.pick(&[r.lo(), r.hi()]),
        _ => rng.pick(&PORTS),
    };
    let mut sport = port(rng, model.and_then(|r| r.src_ports));
    let mut dport = port(rng, model.and_then(|r| r.dst_ports));
    if let Some(icmp_type) = model.and_then(|r| r.icmp_type) {
        sport = u16::from(icmp_type);
        dport = u16::from(model.and_then(|r| r.icmp_code).unwrap_or(0));
    }
    let mut key = ip_key(src, dst, proto, sport, dport);
    key.tcp_flags = TcpFlags::from_bits(rng.next() as u8);
    key.flow.frag = rng.pick(&[IpFrag::No, IpFrag::No, IpFrag::First, IpFrag::Later]);
    if key.flow.frag == IpFrag::Later {
        (key.flow.src_port, key.flow.dst_port) = (0, 0);
    }
    match rng.below(8) {
        // ARP and LLDP frames: not IP to the rules.
        0 => {
            key.flow.ethertype = EtherType::ARP;
            key.flow.ip_proto = 1;
        }
        1 => {
            key.flow.ethertype = EtherType(0x88cc);
            key.flow.ip = FlowIp::None;
        }
        _ => {}
    }
    key
}

fn random_spec(seed: u64, count: usize) -> AclSpec {
    let mut rng = Rng(seed | 1);
    let rules = (0..count).map(|_| random_rule(&mut rng)).collect();
    AclSpec::new("random", rules)
}

proptest! {
    #[test]
    fn compiled_classifier_equals_linear_scan(seed in any::<u64>(), count in 1usize..200) {
        let spec = random_spec(seed, count);
        prop_assert_eq!(spec.validate(), Ok(()));
        let acl = CompiledAcl::compile(&spec).unwrap();
        let mut rng = Rng(seed.rotate_left(17) | 1);
        for _ in 0..200 {
            let key = random_key(&mut rng, &spec.rules);
            let expected = reference_lookup(&spec.rules, &key);
            let got = acl.lookup(Direction::Egress, &key);
            match expected {
                Some(index) => {
                    prop_assert_eq!(got.decider, Decider::Rule(index as u32), "{:?}", key);
                    prop_assert_eq!(got.action, spec.rules[index].action);
                }
                None => prop_assert_eq!(got.decider, Decider::Default, "{:?}", key),
            }
        }
    }
}

#[test]
fn random_rule_sets_are_hit() {
    // Guards the generator: the differential test means little if packets never hit rules.
    let spec = random_spec(7, 100);
    let mut rng = Rng(99);
    let hits = (0..1000)
        .filter(|_| reference_lookup(&spec.rules, &random_key(&mut rng, &spec.rules)).is_some())
        .count();
    assert!(hits > 300, "{hits} of 1000 packets hit a rule");
}

#[test]
fn ten_thousand_rules_compile_and_agree() {
    let spec = random_spec(42, 10_000);
    let acl = CompiledAcl::compile(&spec).unwrap();
    let stats = acl.tree_stats();
    assert!(stats.leaf_entries < 10_000 * 64, "{stats:?}");
    let mut rng = Rng(5);
    for _ in 0..300 {
        let key = random_key(&mut rng, &spec.rules);
        let expected = reference_lookup(&spec.rules, &key).map(|i| Decider::Rule(i as u32));
        assert_eq!(
            acl.lookup(Direction::Egress, &key).decider,
            expected.unwrap_or(Decider::Default)
        );
    }
}

/// A classifying thread against a swapping thread: every burst is judged wholly by one of the
/// two rule sets. No timing assertions; the loop counts are fixed.
#[test]
fn swap_under_classification_never_mixes_rule_sets() {
    let spec_a = random_spec(1, 150);
    let spec_b = random_spec(2, 150);
    let mut rng = Rng(3);
    let keys: Vec<AclKey> = (0..64)
        .map(|i| {
            random_key(
                &mut rng,
                if i % 2 == 0 {
                    &spec_a.rules
                } else {
                    &spec_b.rules
                },
            )
        })
        .collect();
    let acl_a = Arc::new(CompiledAcl::compile(&spec_a).unwrap());
    let acl_b = Arc::new(CompiledAcl::compile(&spec_b).unwrap());
    let expect = |acl: &CompiledAcl| -> Vec<Classification> {
        keys.iter()
            .map(|k| acl.lookup(Direction::Egress, k))
            .collect()
    };
    let (expected_a, expected_b) = (expect(&acl_a), expect(&acl_b));
    assert_ne!(expected_a, expected_b, "the two sets must be told apart");

    let slot = Arc::new(AclSlot::new(Some(acl_a.clone())));
    let done = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (slot, done) = (slot.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..2000 {
                slot.swap(Some(if i % 2 == 0 {
                    acl_b.clone()
                } else {
                    acl_a.clone()
                }));
                std::thread::yield_now();
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut bursts = 0u64;
    let mut seen = [false; 2];
    while !done.load(Ordering::Acquire) || bursts < 100 {
        let snapshot = slot.load();
        let acl = snapshot.as_ref().expect("the slot always holds a set");
        let judged: Vec<Classification> = keys
            .iter()
            .map(|k| acl.lookup(Direction::Egress, k))
            .collect();
        let is_a = judged == expected_a;
        assert!(
            is_a || judged == expected_b,
            "burst {bursts} mixed the rule sets"
        );
        seen[usize::from(!is_a)] = true;
        bursts += 1;
    }
    swapper.join().unwrap();
    assert!(seen[0], "set A judged no burst");
}

proptest! {
    /// Hostile frames: whatever parses goes through key extraction, port security, the
    /// classifier and conntrack without a panic. Frames start from a valid Ethernet/IPv4 or
    /// IPv6 header half the time, so the walk reaches L4 often.
    #[test]
    fn arbitrary_frames_never_panic(
        ethertype in prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88cc]),
        body in prop::collection::vec(any::<u8>(), 0..120),
        now in any::<u64>(),
    ) {
        let mut frame = Vec::with_capacity(14 + body.len());
        frame.extend_from_slice(&PEER_MAC.octets());
        frame.extend_from_slice(&GUEST_MAC.octets());
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&body);
        let security = PortSecurity::new(
            GUEST_MAC,
            &toml::from_str("allowed_ips = [\"0.0.0.0/1\", \"::/1\"]").unwrap(),
        )
        .unwrap();
        let acl = CompiledAcl::compile(&random_spec(now, 20)).unwrap();
        let conntrack = Conntrack::new(ConntrackConfig { capacity: 4, ..ConntrackConfig::default() })
            .unwrap();
        if let Ok(layout) = crate::wire::frame::parse_frame(&frame) {
            let key = AclKey::extract_with_layout(&frame, &layout).unwrap();
            let _ = security.check(&frame, &layout, &key);
            let _ = acl.classify(Direction::Ingress, &key, usize::MAX);
            let _ = conntrack.admit(&key, now);
            let reply = AclKey { flow: key.flow.reversed(), ..key };
            let _ = conntrack.track(&reply, now);
        }
    }
}
