#!/usr/bin/env bash
# Instructions per packet for the workloads of benches/instructions.rs, counted by callgrind:
# each workload runs at N iterations and at 0, and (Ir(N) - Ir(0)) / N is printed, so frame
# construction and process start-up cancel out. Repeatable whatever the machine's load.
# Usage: benches/callgrind.sh [N] [WORKLOAD...]   (N defaults to 2000; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
shift || true
bin=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*instructions[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build benches/instructions.rs" >&2; exit 1; }
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || mapfile -t workloads < <("$bin" | tr -d '[]",' | tr ' ' '\n' | grep '_')
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-32s %12s %14s\n' workload iterations instr/packet
for workload in "${workloads[@]}"; do
    with=$(count "$workload" "$n")
    without=$(count "$workload" 0)
    printf '%-32s %12s %14s\n' "$workload" "$n" "$(( (with - without) / n ))"
done
