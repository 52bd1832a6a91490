//! Flow-key extraction per packet: `FlowKey::extract` (one `parse_frame` pass plus the key
//! fields) on TCP over IPv4 at 64 and 1514 bytes, 802.1Q-tagged IPv4 and IPv6; `parse_frame`
//! alone and `FlowKey::hash` beside it, to show where the time goes. Throughput is in packets
//! (criterion's "elem/s"). Run: `cargo bench --bench flow`; see BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use vif::core::flow::FlowKey;
use vif::core::wire::frame::parse_frame;

mod frames;

fn bench_flow(c: &mut Criterion) {
    let cases = [
        ("ipv4_tcp", frames::tcp_ipv4(64)),
        ("ipv4_tcp", frames::tcp_ipv4(1514)),
        ("vlan_ipv4_tcp", frames::vlan_tcp_ipv4(68)),
        ("ipv6_tcp", frames::tcp_ipv6(86)),
        ("ipv6_tcp", frames::tcp_ipv6(1514)),
    ];
    let mut group = c.benchmark_group("flow");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in &cases {
        let id = BenchmarkId::new(format!("extract/{name}"), frame.len());
        group.bench_with_input(id, frame, |b, frame| {
            b.iter(|| FlowKey::extract(black_box(frame)))
        });
    }
    let (_, frame) = &cases[0];
    group.bench_with_input(
        BenchmarkId::new("parse_frame/ipv4_tcp", 64),
        frame,
        |b, f| b.iter(|| parse_frame(black_box(f))),
    );
    let key = FlowKey::extract(frame).expect("the benchmark frame parses");
    group.bench_function("hash", |b| b.iter(|| black_box(&key).hash()));
    group.finish();
}

criterion_group!(benches, bench_flow);
criterion_main!(benches);
