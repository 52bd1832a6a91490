//! Software TSO of a 64 KiB TCP/IPv4 frame at MSS 1448 (46 segments), as the datapath does it
//! for an uplink or guest that cannot take the large frame: `validate` plus
//! `Segmenter::segment` with full checksums, and with partial ones (for a `GUEST_CSUM` guest);
//! and checksum completion of the same frame (`complete_csum`, one pass over 64 KiB).
//! Throughput is in bytes of the large frame; segments/s = 46 / time. Run:
//! `cargo bench --bench tso`; see BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use vif::core::offload::{
    complete_csum, validate, CsumRange, SegmentCsum, Segmenter, TxOffload, TxOffloadCaps,
};

mod frames;

fn bench_tso(c: &mut Criterion) {
    let (frame, hdr) = frames::tso_ipv4_64k();
    let caps = TxOffloadCaps::ALL;
    let Ok(TxOffload::Gso(gso)) = validate(&hdr, &frame, &caps) else {
        panic!("the benchmark frame must validate as GSO");
    };
    assert_eq!(gso.segments(), 46, "65483 payload bytes at MSS 1448");
    // Sized once, as a queue worker's segmenter is after its first large frame.
    let mut segmenter = Segmenter::with_capacity(frame.len() + 46 * frames::TSO_HEADERS_LEN, 64);

    let mut group = c.benchmark_group("tso");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    for (name, csum) in [
        ("segment_full_csum", SegmentCsum::Full),
        ("segment_partial_csum", SegmentCsum::Partial),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let Ok(TxOffload::Gso(gso)) = validate(black_box(&hdr), &frame, &caps) else {
                    unreachable!("validated above");
                };
                let segments = segmenter.segment(black_box(&frame), &gso, csum);
                black_box(segments.map(|s| s.len()).ok())
            })
        });
    }
    let range = CsumRange {
        start: hdr.csum_start,
        offset: hdr.csum_offset,
    };
    let mut scratch = frame.clone();
    group.bench_function("complete_csum", |b| {
        b.iter(|| complete_csum(black_box(&mut scratch), range))
    });
    group.finish();
}

criterion_group!(benches, bench_tso);
criterion_main!(benches);
