#!/usr/bin/env bash
# Every test: formatting, native tests (flex CPU and wgpu on lavapipe), then the wasm32 build of the crate.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh

cargo fmt --check
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
echo "== wasm32 build check"
cargo check --lib --locked --target wasm32-unknown-unknown
echo "wasm32: dermlip builds for wasm32-unknown-unknown"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
