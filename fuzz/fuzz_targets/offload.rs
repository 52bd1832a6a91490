//! Fuzz target `offload`: drives `vif_core::fuzz_entry::offload`, the same entry the corpus test runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vif_core::fuzz_entry::offload(data);
});
