#!/usr/bin/env bash
# Every test: native (flex CPU and wgpu on lavapipe), then the wasm32 build of the crate.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh

cargo test --workspace --locked
echo "== wasm32 build check"
cargo check --lib --locked --target wasm32-unknown-unknown
echo "wasm32: dermlip builds for wasm32-unknown-unknown"
