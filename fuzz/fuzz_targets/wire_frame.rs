//! Fuzz target `wire_frame`: drives `vif_core::fuzz_entry::wire_frame`, the same entry the corpus test runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vif_core::fuzz_entry::wire_frame(data);
});
