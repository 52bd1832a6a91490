//! Fuzz target `vxlan_decap`: drives `vif_core::fuzz_entry::vxlan_decap`, the same entry the corpus test runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vif_core::fuzz_entry::vxlan_decap(data);
});
