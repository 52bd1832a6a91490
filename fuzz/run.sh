#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), growing fuzz/corpus/<target> from it and
# the named seeds in fuzz/seeds/<target> (written by examples/seeds.rs). One job, no forks: the
# machine is shared.
# Installs cargo-fuzz if missing. libFuzzer needs nightly's -Z flags: the nightly toolchain is used
# when rustup has it, else the stable compiler with RUSTC_BOOTSTRAP=1.
# Builds with debug assertions (so integer overflow panics) and, by default, no sanitizer:
# vif-core is #![forbid(unsafe_code)], so AddressSanitizer would only slow it down; set
# SANITIZER=address to use it anyway. The full libFuzzer log goes to fuzz/artifacts/<target>/.
# Extra libFuzzer flags go in FUZZ_FLAGS, e.g. FUZZ_FLAGS=-use_value_profile=1.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("${fuzz[@]}" list)
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/$target/fuzz.log"
    echo "== $target: ${secs}s, log in fuzz/$log"
    # -max_len 65600: a 64 KiB GSO frame plus its virtio-net header.
    "${fuzz[@]}" run --sanitizer "${SANITIZER:-none}" --debug-assertions "$target" \
        "corpus/$target" "seeds/$target" -- -max_total_time="$secs" -max_len=65600 \
        -print_final_stats=1 ${FUZZ_FLAGS:-} >"$log" 2>&1 || true
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::|SUMMARY|Done|thread .* panicked)' "$log" || true
    if ls "artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/timeout-* >/dev/null 2>&1; then
        echo "== $target: FINDINGS in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
