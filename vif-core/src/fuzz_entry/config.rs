//! The `vif_config` target: bytes as a TOML VIF spec, or a `[[vif]]` list of them, through
//! deserialization and [`VifSpec::validate`], then back to text and in again.
//!
//! vif-core has serde but no TOML crate (only its tests do), so the format comes in through
//! [`ConfigFormat`]; the fuzz crate and the corpus test both pass `toml`'s functions.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::VifSpec;

/// The text format a VIF config is written in: `toml::from_str` and `toml::to_string`.
pub trait ConfigFormat {
    /// Parses `text`; `None` on any error (the error itself is not under test).
    fn from_str<T: DeserializeOwned>(text: &str) -> Option<T>;
    /// Writes `value`; `None` if the format cannot represent it.
    fn to_string<T: Serialize>(value: &T) -> Option<String>;
}

/// A daemon-style file: VIFs as an array of `[[vif]]` tables. The daemon's own file adds keys
/// (`socket`, `mode`) that are not part of the model; this keeps to the model.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VifTables {
    vif: Vec<VifSpec>,
}

pub(super) fn run<F: ConfigFormat>(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Some(spec) = F::from_str::<VifSpec>(text) {
        round_trip::<F>(&spec);
    }
    if let Some(tables) = F::from_str::<VifTables>(text) {
        for spec in &tables.vif {
            round_trip::<F>(spec);
        }
        let text = F::to_string(&tables);
        let again = text.as_deref().and_then(F::from_str::<VifTables>);
        assert_eq!(
            again.as_ref(),
            Some(&tables),
            "[[vif]] list round trip via {text:?}"
        );
    }
}

/// Any spec that deserialized, valid or not, serializes and deserializes to itself, and
/// validates the same way.
fn round_trip<F: ConfigFormat>(spec: &VifSpec) {
    let verdict = spec.validate();
    let text = F::to_string(spec);
    let again = text.as_deref().and_then(F::from_str::<VifSpec>);
    let Some(again) = again else {
        panic!("spec {spec:?} does not round trip: {text:?}");
    };
    assert_eq!(&again, spec, "VifSpec round trip via {text:?}");
    assert_eq!(again.validate(), verdict, "validate() after the round trip");
    if verdict.is_ok() {
        let _ = (spec.max_frame_len(), spec.offloads);
    }
}
