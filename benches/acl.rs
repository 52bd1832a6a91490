//! ACL classification cost per packet for 1, 10, 100, 1,000 and 10,000 random rules, in the
//! shape of DPDK's `dpdk-test-acl` run in shared/rigs/acl-anchor (IPv4 5-tuple, first match by
//! priority, random rules, traces half inside a rule), so the figures compare:
//!
//! - `tree/keys`: [`CompiledAcl::classify`] on pre-extracted keys (counting included);
//! - `tree/frames`: the same from 64-byte frames, with `AclKey::extract` (parse_frame + key);
//! - `stateful/keys`: [`Firewall::filter`] with a stateful ACL after warm-up: conntrack hits;
//! - `linear/keys`: the linear-scan reference, for contrast;
//! - `compile`: building the tree.
//!
//! Throughput is in packets ("elem/s"); divide 1 s by it for ns/packet. Each iteration judges a
//! burst of packets so the per-iteration overhead disappears. Run:
//! `cargo bench --bench acl` (or `-- tree/keys` for one group). On the shared 2-core box, run
//! under `chrt -f 50` as the anchor did, and compare minima.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vif::core::acl::reference::reference_lookup;
use vif::core::acl::{
    AclKey, AclSpec, Action, CompiledAcl, ConntrackConfig, Direction, Firewall, IpCidr, PortRange,
    Protocol, Rule,
};
use vif::core::flow::{FlowIp, FlowKey};
use vif::core::mac::MacAddr;
use vif::core::wire::ethernet::EtherType;
use vif::core::wire::frame::IpFrag;
use vif::core::wire::ipv4::IpProtocol;
use vif::core::wire::tcp::TcpFlags;

const SIZES: [usize; 5] = [1, 10, 100, 1_000, 10_000];
/// Packets per iteration (the anchor's trace step is 256).
const BURST: usize = 256;
/// Distinct packets in the trace (the anchor used 100,000; fewer keep the set in cache less
/// than the anchor's, which is the conservative side).
const TRACE: usize = 4096;

/// xorshift64* (Vigna 2016): a fixed seed makes every run judge the same rules and packets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn percent(&mut self) -> u64 {
        self.below(100)
    }
}

const WELL_KNOWN: [u16; 10] = [22, 25, 53, 80, 123, 443, 993, 3306, 5432, 8080];

fn prefix(rng: &mut Rng) -> IpCidr {
    let len = 8 + rng.below(25) as u8;
    let addr = (rng.next() as u32) & (u32::MAX << (32 - len));
    IpCidr::new(Ipv4Addr::from_bits(addr).into(), len).expect("masked to the prefix")
}

fn port_range(rng: &mut Rng, lo: u16, hi: u16) -> PortRange {
    let a = lo + rng.below(u64::from(hi - lo) + 1) as u16;
    let b = lo + rng.below(u64::from(hi - lo) + 1) as u16;
    PortRange::new(a.min(b), a.max(b)).expect("ordered")
}

/// A rule as the anchor's gen.py draws them: prefixes /8../32; source port 60% any, 20% exact,
/// 20% range; destination port 30% any, 45% exact (half well known), 25% range (half narrow);
/// protocol TCP 45%, UDP 35%, any 20%.
fn anchor_rule(rng: &mut Rng, action: Action) -> Rule {
    let mut rule = Rule {
        action,
        src: Some(prefix(rng)),
        dst: Some(prefix(rng)),
        ..Rule::default()
    };
    let protocol = match rng.percent() {
        0..45 => Some(IpProtocol::TCP),
        45..80 => Some(IpProtocol::UDP),
        _ => None,
    };
    // Ports need a protocol in vif's model; the anchor's "any protocol" rules match ports of
    // TCP and UDP alike, so those stay port-less here.
    if let Some(protocol) = protocol {
        rule.protocol = Some(Protocol(protocol));
        rule.src_ports = match rng.percent() {
            0..60 => None,
            60..80 => Some(PortRange::single(1024 + rng.below(64_512) as u16)),
            _ => Some(port_range(rng, 1024, 65535)),
        };
        rule.dst_ports = match rng.percent() {
            0..30 => None,
            30..52 => Some(PortRange::single(WELL_KNOWN[rng.below(10) as usize])),
            52..75 => Some(PortRange::single(rng.next() as u16)),
            75..87 => {
                let lo = rng.next() as u16 & 0xffc0;
                Some(PortRange::new(lo, lo | 0x3f).expect("ordered"))
            }
            _ => Some(port_range(rng, 0, 65535)),
        };
    }
    rule
}

fn anchor_rules(count: usize, action: Action) -> Vec<Rule> {
    let mut rng = Rng(0x5eed ^ count as u64);
    (0..count).map(|_| anchor_rule(&mut rng, action)).collect()
}

fn key(src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> AclKey {
    let mut key = AclKey::from_flow(FlowKey {
        src_mac: MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        dst_mac: MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 0xef]),
        vlan: None,
        inner_vlan: None,
        ethertype: EtherType::IPV4,
        ip: FlowIp::V4 {
            src: Ipv4Addr::from_bits(src),
            dst: Ipv4Addr::from_bits(dst),
        },
        ip_proto: proto,
        frag: IpFrag::No,
        src_port: sport,
        dst_port: dport,
        vni: None,
    });
    if proto == 6 {
        key.tcp_flags = TcpFlags::ACK;
    }
    key
}

fn inside(rng: &mut Rng, cidr: Option<IpCidr>) -> u32 {
    match cidr.map(|c| c.range()) {
        Some((first, last)) => (first + u128::from(rng.next()) % (last - first + 1)) as u32,
        None => rng.next() as u32,
    }
}

fn pick_port(rng: &mut Rng, range: Option<PortRange>) -> u16 {
    match range {
        Some(r) => r.lo() + rng.below(u64::from(r.hi() - r.lo()) + 1) as u16,
        None => 1024 + rng.below(64_512) as u16,
    }
}

/// The anchor's trace: half the packets inside a random rule, half uniform (TCP/UDP/ICMP
/// 45/45/10, destination port half well known).
fn trace(rules: &[Rule]) -> Vec<AclKey> {
    let mut rng = Rng(0x7ace ^ rules.len() as u64);
    (0..TRACE)
        .map(|_| {
            if !rules.is_empty() && rng.below(2) == 0 {
                let rule = &rules[rng.below(rules.len() as u64) as usize];
                let proto = rule
                    .protocol
                    .map_or(if rng.below(2) == 0 { 6 } else { 17 }, |p| p.number());
                key(
                    inside(&mut rng, rule.src),
                    inside(&mut rng, rule.dst),
                    proto,
                    pick_port(&mut rng, rule.src_ports),
                    pick_port(&mut rng, rule.dst_ports),
                )
            } else {
                let proto = match rng.percent() {
                    0..45 => 6,
                    45..90 => 17,
                    _ => 1,
                };
                let dport = if rng.below(2) == 0 {
                    WELL_KNOWN[rng.below(10) as usize]
                } else {
                    rng.next() as u16
                };
                let sport = 1024 + rng.below(64_512) as u16;
                let (sport, dport) = if proto == 1 { (8, 0) } else { (sport, dport) };
                key(rng.next() as u32, rng.next() as u32, proto, sport, dport)
            }
        })
        .collect()
}

/// A 64-byte Ethernet + IPv4 + TCP/UDP/ICMP frame (zero-padded) carrying `key`.
fn frame(key: &AclKey) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&key.flow.dst_mac.octets());
    f[6..12].copy_from_slice(&key.flow.src_mac.octets());
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let l4_len: u16 = match key.flow.ip_proto {
        6 => 20,
        _ => 8,
    };
    f[14] = 0x45;
    f[16..18].copy_from_slice(&(20 + l4_len).to_be_bytes());
    f[22] = 64;
    f[23] = key.flow.ip_proto;
    if let FlowIp::V4 { src, dst } = key.flow.ip {
        f[26..30].copy_from_slice(&src.octets());
        f[30..34].copy_from_slice(&dst.octets());
    }
    match key.flow.ip_proto {
        1 => f[34] = key.flow.src_port as u8,
        proto => {
            f[34..36].copy_from_slice(&key.flow.src_port.to_be_bytes());
            f[36..38].copy_from_slice(&key.flow.dst_port.to_be_bytes());
            if proto == 6 {
                f[46] = 0x50;
                f[47] = key.tcp_flags.bits();
            } else {
                f[38..40].copy_from_slice(&8u16.to_be_bytes());
            }
        }
    }
    f
}

fn compiled(rules: &[Rule], stateful: bool) -> CompiledAcl {
    let mut spec = AclSpec::new("bench", rules.to_vec());
    spec.stateful = stateful;
    spec.default_action.egress = if stateful {
        Action::Allow
    } else {
        Action::Deny
    };
    CompiledAcl::compile(&spec).expect("generated rules are valid")
}

fn bench_acl(c: &mut Criterion) {
    let mut group = c.benchmark_group("acl");
    group.sample_size(20);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for &count in &SIZES {
        let rules = anchor_rules(count, Action::Allow);
        let keys = trace(&rules);
        let frames: Vec<Vec<u8>> = keys.iter().map(frame).collect();
        let acl = compiled(&rules, false);
        let stats = acl.tree_stats();
        let matched = keys
            .iter()
            .filter(|k| reference_lookup(&rules, k).is_some())
            .count();
        eprintln!(
            "acl {count} rules: {} nodes, {} leaf entries, depth {}, {:.1}% of the trace matches",
            stats.nodes,
            stats.leaf_entries,
            stats.depth,
            matched as f64 * 100.0 / keys.len() as f64
        );

        group.throughput(Throughput::Elements(BURST as u64));
        // Each bench walks the trace in bursts; TRACE is a multiple of every burst, so a window
        // never runs past the end.
        let mut at = 0usize;
        group.bench_function(BenchmarkId::new("tree/keys", count), |b| {
            b.iter(|| {
                at = (at + BURST) % TRACE;
                for key in &keys[at..at + BURST] {
                    black_box(acl.classify(Direction::Egress, black_box(key), 0));
                }
            })
        });
        let mut at = 0usize;
        group.bench_function(BenchmarkId::new("tree/frames", count), |b| {
            b.iter(|| {
                at = (at + BURST) % TRACE;
                for frame in &frames[at..at + BURST] {
                    if let Ok(key) = AclKey::extract(black_box(frame)) {
                        black_box(acl.classify(Direction::Egress, &key, 0));
                    }
                }
            })
        });

        let firewall = Firewall::new(ConntrackConfig {
            capacity: 2 * TRACE,
            ..ConntrackConfig::default()
        })
        .expect("valid capacity");
        firewall
            .acl(Direction::Egress)
            .swap(Some(Arc::new(compiled(&rules, true))));
        let (mut at, mut now) = (0usize, 0u64);
        group.bench_function(BenchmarkId::new("stateful/keys", count), |b| {
            b.iter(|| {
                at = (at + BURST) % TRACE;
                now += 1_000;
                let view = firewall.view();
                for key in &keys[at..at + BURST] {
                    black_box(view.filter(Direction::Egress, black_box(key), now, 0));
                }
            })
        });

        // The linear scan at 10,000 rules costs ~100 µs per packet: a smaller burst keeps the
        // sample count sane; throughput stays per packet.
        let linear_burst = if count >= 1_000 { 16 } else { BURST };
        group.throughput(Throughput::Elements(linear_burst as u64));
        let mut at = 0usize;
        group.bench_function(BenchmarkId::new("linear/keys", count), |b| {
            b.iter(|| {
                at = (at + linear_burst) % TRACE;
                for key in &keys[at..at + linear_burst] {
                    black_box(reference_lookup(&rules, black_box(key)));
                }
            })
        });
    }
    group.finish();

    let mut compile = c.benchmark_group("acl_compile");
    compile.sample_size(10);
    for &count in &[1_000usize, 10_000] {
        let spec = AclSpec::new("bench", anchor_rules(count, Action::Allow));
        compile.bench_with_input(BenchmarkId::from_parameter(count), &spec, |b, spec| {
            b.iter(|| CompiledAcl::compile(black_box(spec)))
        });
    }
    compile.finish();
}

criterion_group!(benches, bench_acl);
criterion_main!(benches);
