//! Replays the fuzz inputs through the fuzz entry points, so CI runs them without cargo-fuzz or a
//! nightly compiler: the named seeds (`fuzz/seeds/<target>/`, written by `fuzz/examples/seeds.rs`),
//! the minimized corpus the fuzzers kept (`fuzz/corpus/<target>/`) and every finding
//! (`fuzz/regressions/<target>/`). An entry panics on a bug; the failure names the files.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use vif_core::fuzz_entry::{self, ConfigFormat};

/// The `toml` crate, as the `vif_config` fuzz target uses it.
struct Toml;

impl ConfigFormat for Toml {
    fn from_str<T: DeserializeOwned>(text: &str) -> Option<T> {
        toml::from_str(text).ok()
    }

    fn to_string<T: Serialize>(value: &T) -> Option<String> {
        toml::to_string(value).ok()
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files under `fuzz/{seeds,corpus,regressions}/<target>/`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read fuzz directory entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs `entry` on every input of `target`; reports every file that panicked, then fails.
fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let files = inputs(target);
    let mut failed = Vec::new();
    for path in &files {
        let bytes = fs::read(path).expect("read fuzz input");
        if panic::catch_unwind(AssertUnwindSafe(|| entry(&bytes))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: inputs that fail: {failed:#?}");
    files.len()
}

#[test]
fn wire_frame_corpus() {
    let count = replay("wire_frame", fuzz_entry::wire_frame);
    assert!(count > 0, "no wire_frame inputs");
}

#[test]
fn offload_corpus() {
    let count = replay("offload", fuzz_entry::offload);
    assert!(count > 0, "no offload inputs");
}

#[test]
fn vxlan_decap_corpus() {
    let count = replay("vxlan_decap", fuzz_entry::vxlan_decap);
    assert!(count > 0, "no vxlan_decap inputs");
}

#[test]
fn vif_config_corpus() {
    let count = replay("vif_config", fuzz_entry::vif_config::<Toml>);
    assert!(count > 0, "no vif_config inputs");
}

/// The documented example spec goes through the config entry whatever the corpus holds.
#[test]
fn vif_config_example() {
    fuzz_entry::vif_config::<Toml>(vif_core::model::EXAMPLE_TOML.as_bytes());
}

/// The seeds are what their names say, so the fuzzers start from inputs that get deep: every
/// frame parses, every offload header validates (GSO ones into several segments), every VXLAN
/// frame decapsulates, and exactly the configs named `invalid_*` are refused.
#[test]
fn seeds_are_what_they_say() {
    use vif_core::model::VifSpec;
    use vif_core::offload::{validate, TxOffload, TxOffloadCaps, VirtioNetHdr};
    use vif_core::wire::encap::decap;
    use vif_core::wire::frame::parse_frame;
    use vif_core::wire::vxlan::VXLAN_PORT;

    let seeds = |target: &str| -> Vec<(String, Vec<u8>)> {
        let dir = fuzz_dir().join("seeds").join(target);
        let mut seeds: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("seed entry").path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, fs::read(&path).expect("read seed"))
            })
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no {target} seeds");
        seeds
    };
    for (name, frame) in seeds("wire_frame") {
        assert!(parse_frame(&frame).is_ok(), "wire_frame seed {name}");
    }
    for (name, input) in seeds("offload") {
        let hdr = VirtioNetHdr::from_slice(&input[2..]).expect("seed has a header");
        let caps = TxOffloadCaps::ALL;
        let offload = validate(&hdr, &input[14..], &caps);
        let Ok(offload) = offload else {
            panic!("offload seed {name}: {offload:?}");
        };
        let gso = name.starts_with("tso") || name.starts_with("uso") || name.starts_with("ufo");
        if gso {
            let TxOffload::Gso(gso) = offload else {
                panic!("offload seed {name} is not GSO: {offload:?}");
            };
            let one = name.contains("one_segment");
            assert_eq!(gso.segments() == 1, one, "offload seed {name} segments");
        }
    }
    for (name, frame) in seeds("vxlan_decap") {
        let decapped = decap(&frame, VXLAN_PORT);
        let inner_only = name.starts_with("inner_only");
        assert_eq!(
            decapped.is_err(),
            inner_only,
            "vxlan seed {name}: {decapped:?}"
        );
    }
    #[derive(serde::Deserialize)]
    struct VifTables {
        vif: Vec<VifSpec>,
    }
    for (name, text) in seeds("vif_config") {
        let text = String::from_utf8(text).expect("config seeds are UTF-8");
        let specs = match toml::from_str::<VifSpec>(&text) {
            Ok(spec) => Ok(vec![spec]),
            Err(_) => toml::from_str::<VifTables>(&text).map(|tables| tables.vif),
        };
        let valid = specs.is_ok_and(|specs| specs.iter().all(|spec| spec.validate().is_ok()));
        assert_eq!(valid, !name.starts_with("invalid_"), "config seed {name}");
    }
}
