#!/usr/bin/env bash
# Summarizes the `run` lines that `cargo bench --bench pps` prints, over one or more saved logs:
# per (case, frame size, backend) the median Mpps of the *clean* runs (others' CPU use during the
# window at most MAX_OTHERS CPUs), their min-max, clean/all run counts, and vif/DPDK ratios of the
# clean medians. A figure with no clean run is shown as "-": rerun on a quieter machine.
#
#   cargo bench --bench pps | tee pps-$(date +%H%M).log
#   scripts/dpdk/pps-summary.sh 0.3 pps-*.log
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 MAX_OTHERS LOG..." >&2; exit 2; }
max_others=$1; shift
echo "| case | frame B | backend | Mpps median (clean) | min-max (clean) | clean/all runs |"
echo "|---|---|---|---|---|---|"
# mawk (Debian's default awk) has no sort: awk prints "1 KEY@@row" and "2 KEY@@ratio" lines, sort
# orders them, cut drops the sort key.
awk -F'\t' -v limit="$max_others" '
function median(list, n,   sorted, i, j, t) {
    for (i = 1; i <= n; i++) sorted[i] = list[i]
    for (i = 2; i <= n; i++) {
        t = sorted[i]
        for (j = i - 1; j >= 1 && sorted[j] > t; j--) sorted[j + 1] = sorted[j]
        sorted[j + 1] = t
    }
    return sorted[int((n + 1) / 2)]
}
$1 == "run" {
    key = $2 "\t" $4 "\t" $3
    split($5, mpps, " "); split($6, others, " ")
    all[key]++
    if (others[2] <= limit) { clean[key]++; value[key, clean[key]] = mpps[1] }
}
END {
    for (key in all) {
        split(key, part, "\t"); c = clean[key] + 0
        sortkey = sprintf("%s %06d %s", part[1], part[2], part[3])
        if (c == 0) {
            printf "1 %s@@| %s | %s | %s | - | - | 0/%d |\n", sortkey, part[1], part[2], part[3], all[key]
            continue
        }
        lo = hi = value[key, 1]
        for (i = 1; i <= c; i++) { v[i] = value[key, i]; if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i] }
        med[key] = median(v, c)
        printf "1 %s@@| %s | %s | %s | %.2f | %.2f-%.2f | %d/%d |\n", sortkey, part[1], part[2], part[3], med[key], lo, hi, c, all[key]
    }
    for (key in med) {
        split(key, part, "\t")
        ref = part[1] "\t" part[2] "\tdpdk"
        if (part[3] != "dpdk" && (ref in med))
            printf "2 %s %06d %s@@ratio %s %s B: %s / dpdk = %.3f\n", part[1], part[2], part[3], part[1], part[2], part[3], med[key] / med[ref]
    }
}' "$@" | sort | sed "s/^[^@]*@@//"
