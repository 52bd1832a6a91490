//! Fuzz target `vif_config`: drives `vif_core::fuzz_entry::vif_config` with the `toml` crate,
//! the same entry and format the corpus test runs.
#![no_main]

use serde::de::DeserializeOwned;
use serde::Serialize;
use vif_core::fuzz_entry::ConfigFormat;

struct Toml;

impl ConfigFormat for Toml {
    fn from_str<T: DeserializeOwned>(text: &str) -> Option<T> {
        toml::from_str(text).ok()
    }

    fn to_string<T: Serialize>(value: &T) -> Option<String> {
        toml::to_string(value).ok()
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vif_core::fuzz_entry::vif_config::<Toml>(data);
});
