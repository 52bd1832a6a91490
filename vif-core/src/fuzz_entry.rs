//! Fuzzing entry points: one function per cargo-fuzz target under `fuzz/`, each taking
//! arbitrary bytes. `fuzz/fuzz_targets/*.rs` call them, and `tests/fuzz_corpus.rs` replays the
//! committed corpus and regressions through the same functions, so CI runs every finding.
//!
//! None of them may panic on any input, with one exception on purpose: where an invariant that
//! must hold for *every* accepted input breaks (a `Repr` that does not survive emit and re-parse,
//! segments that do not reassemble into the frame, a config that does not round trip), they
//! `assert!`, because that is a bug the fuzzer must report. Not part of the API: hidden from
//! the docs, and free to change with the fuzz targets.

mod config;
mod frame;
mod headers;
mod offload;
mod vxlan;

pub use config::ConfigFormat;

/// `wire_frame`: `data` is an Ethernet frame. Runs `parse_frame`, the flow key, VLAN pop/push,
/// and every header view and `Repr` round trip at the offsets the layout gives (one VXLAN level
/// deep).
pub fn wire_frame(data: &[u8]) {
    frame::check_frame(data, frame::MAX_VXLAN_DEPTH);
}

/// `offload`: byte 0 is the negotiated transmit caps, byte 1 the receiving guest's caps, then
/// a 12-byte `virtio_net_hdr_v1` and the frame. Runs `validate`, checksum completion,
/// segmentation and the receive plan.
pub fn offload(data: &[u8]) {
    offload::run(data);
}

/// `vxlan_decap`: `data` is a frame from the underlay. Decapsulates it and checks the inner
/// frame; also encapsulates `data` as an inner frame over IPv4 and IPv6 and decapsulates it back.
pub fn vxlan_decap(data: &[u8]) {
    vxlan::run(data);
}

/// `vif_config`: `data` is UTF-8 text in format `F` (TOML): one VIF spec, or a `[[vif]]` list.
pub fn vif_config<F: ConfigFormat>(data: &[u8]) {
    config::run::<F>(data);
}
