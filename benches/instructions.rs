//! Instruction counts per packet, for figures that do not depend on the load of a shared
//! machine: runs one workload N times so that `valgrind --tool=callgrind` can count it.
//! `benches/callgrind.sh` runs each workload at N and at 0 iterations and reports
//! (Ir(N) − Ir(0)) / N, which removes the setup (building the frames) from the count.
//!
//! Usage: `instructions WORKLOAD ITERATIONS`; without a workload (as under `cargo bench`) it
//! lists the workloads and exits.

use std::hint::black_box;
use vif::core::flow::FlowKey;
use vif::core::offload::{
    complete_csum, validate, CsumRange, SegmentCsum, Segmenter, TxOffload, TxOffloadCaps,
};
use vif::core::wire::frame::parse_frame;

mod frames;

const WORKLOADS: [&str; 9] = [
    "parse_frame_ipv4_tcp_64",
    "flow_hash",
    "flow_extract_ipv4_tcp_64",
    "flow_extract_ipv4_tcp_1514",
    "flow_extract_vlan_ipv4_tcp_68",
    "flow_extract_ipv6_tcp_86",
    "tso_segment_full_64k",
    "tso_segment_partial_64k",
    "complete_csum_64k",
];

/// Runs `step` `iterations` times; `#[inline(never)]` keeps each workload one call site.
#[inline(never)]
fn repeat<R>(iterations: u64, mut step: impl FnMut() -> R) {
    for _ in 0..iterations {
        black_box(step());
    }
}

fn flow(frame: &[u8], iterations: u64) {
    repeat(iterations, || FlowKey::extract(black_box(frame)));
}

fn tso(iterations: u64, csum: SegmentCsum) {
    let (frame, hdr) = frames::tso_ipv4_64k();
    let caps = TxOffloadCaps::ALL;
    let mut segmenter = Segmenter::with_capacity(frame.len() + 46 * frames::TSO_HEADERS_LEN, 64);
    repeat(iterations, || {
        let Ok(TxOffload::Gso(gso)) = validate(black_box(&hdr), &frame, &caps) else {
            panic!("the TSO frame must validate as GSO");
        };
        let segments = segmenter.segment(black_box(&frame), &gso, csum);
        segments.map(|s| s.len()).ok()
    });
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let Some(workload) = args.first() else {
        println!("usage: instructions WORKLOAD ITERATIONS; workloads: {WORKLOADS:?}");
        return;
    };
    let iterations: u64 = match args.get(1).map(|n| n.parse()) {
        Some(Ok(n)) => n,
        _ => 10_000,
    };
    match workload.as_str() {
        "parse_frame_ipv4_tcp_64" => {
            let frame = frames::tcp_ipv4(64);
            repeat(iterations, || parse_frame(black_box(&frame)));
        }
        "flow_hash" => {
            let key = FlowKey::extract(&frames::tcp_ipv4(64)).expect("the frame parses");
            repeat(iterations, || black_box(&key).hash());
        }
        "flow_extract_ipv4_tcp_64" => flow(&frames::tcp_ipv4(64), iterations),
        "flow_extract_ipv4_tcp_1514" => flow(&frames::tcp_ipv4(1514), iterations),
        "flow_extract_vlan_ipv4_tcp_68" => flow(&frames::vlan_tcp_ipv4(68), iterations),
        "flow_extract_ipv6_tcp_86" => flow(&frames::tcp_ipv6(86), iterations),
        "tso_segment_full_64k" => tso(iterations, SegmentCsum::Full),
        "tso_segment_partial_64k" => tso(iterations, SegmentCsum::Partial),
        "complete_csum_64k" => {
            let (mut frame, hdr) = frames::tso_ipv4_64k();
            let range = CsumRange {
                start: hdr.csum_start,
                offset: hdr.csum_offset,
            };
            repeat(iterations, || complete_csum(black_box(&mut frame), range));
        }
        other => {
            eprintln!("unknown workload {other}; workloads: {WORKLOADS:?}");
            std::process::exit(2);
        }
    }
}
