#!/usr/bin/env bash
# Every test: formatting, native tests (flex CPU and wgpu on lavapipe; the core crate and the
# trainer), the hostile-input corpora through the CLI (tests/hostile/), the trainer's CUDA
# type-check, the wasm build, and the website in headless Chromium (WebGPU on SwiftShader, the CPU
# fallback, and the hostile images through the CPU engine).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh

# The least autotuning on lavapipe: its shader compiles, not the kernels' speed, dominate the
# native wgpu tests (the f16 test: 282 s at the default level, 140 s at minimal, cold).
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"

cargo fmt --check
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"

echo "== hostile inputs: the native CLI on generated image and weight corpora (2 GiB, 60 s each)"
hostile=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$hostile"' EXIT
python3 tests/hostile/make_corpus.py "$hostile/images"
tests/hostile/run_cli.sh "$hostile/images"
python3 tests/hostile/make_weights.py "$hostile/weights"
tests/hostile/run_weights.sh "$hostile/weights"

echo "== the trainer's CUDA backend type-checks (DOCS_RS=1: no LLVM download, no GPU)"
DOCS_RS=1 cargo check -p dermlip-trainer --features cuda --locked

echo "== wasm build and browser tests"
scripts/build-web.sh
(cd tests/browser && node --test --test-concurrency=1 --test-reporter=spec) 2>&1 | tee -a "$log"

# One closing line for the whole run (cargo prints one per test binary, node one at the end).
awk '/^test result:/ { p += $4; f += $6 } /^ℹ pass / { bp += $3 } /^ℹ fail / { bf += $3 }
     END { printf "tests: %d passed, %d failed (Rust); %d passed, %d failed (browser)\n", p, f, bp, bf }' "$log"
