//! Internet checksum throughput beside a plain copy of the same bytes (the memory-bandwidth
//! limit on this machine). Run: `cargo bench --bench checksum`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use vif::core::checksum;

fn bench_checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for &len in &[64usize, 1500, 65536] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let mut copy = vec![0u8; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(
            BenchmarkId::new("internet_checksum", len),
            &bytes,
            |b, bytes| b.iter(|| checksum::data(black_box(bytes))),
        );
        group.bench_with_input(BenchmarkId::new("memcpy", len), &bytes, |b, bytes| {
            b.iter(|| {
                copy.copy_from_slice(black_box(bytes));
                black_box(&copy);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_checksum);
criterion_main!(benches);
