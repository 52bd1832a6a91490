#!/usr/bin/env bash
# Minimizes fuzz/corpus/<target> to the inputs that add coverage beyond the named seeds in
# fuzz/seeds/<target>: libFuzzer's -merge=1 into a directory that starts with the seeds, then
# the seeds are taken out again. -use_counters=0 keeps one input per new edge rather than per
# new hit count, which keeps the committed corpus small (the corpus test replays all of it).
# Like `cargo fuzz cmin`, but relative to the seeds. Usage: fuzz/minimize.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("${fuzz[@]}" list)
bin=target/x86_64-unknown-linux-gnu/release
for target in "${targets[@]}"; do
    "${fuzz[@]}" build --sanitizer "${SANITIZER:-none}" --debug-assertions "$target" >/dev/null
    mkdir -p "artifacts/$target"
    work=$(mktemp -d)
    cp "seeds/$target"/* "$work/"
    "$bin/$target" -merge=1 -use_counters=0 -max_len=65600 "$work" "corpus/$target" \
        >"artifacts/$target/minimize.log" 2>&1
    for seed in "seeds/$target"/*; do rm -f "$work/$(basename "$seed")"; done
    rm -rf "corpus/$target"
    mv "$work" "corpus/$target"
    chmod 755 "corpus/$target"
    echo "$target: $(ls "corpus/$target" | wc -l) inputs beyond the seeds"
done
