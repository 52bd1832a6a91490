#!/usr/bin/env bash
# The project's test command (the README names it; .ci/run runs it). Installs what the tests need,
# then runs every test in the workspace, including the fuzz corpora as ordinary tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets --locked
