#!/usr/bin/env bash
# Every test: formatting, native tests (flex CPU and wgpu on lavapipe; the core crate and the
# trainer), the hostile-input corpora through the CLI (tests/hostile/), the trainer's CUDA
# type-check, the wasm engines, and the website in headless Chromium (WebGPU on SwiftShader, the
# CPU fallback, and the hostile images through the CPU engine). Ends with a per-phase timing table.
#
# The wasm engines build in the background from the start (their own cargo profile directories,
# so no lock is shared with the native build), overlapping the native build and tests: on two
# cores that fills the idle gaps of both (measured in docs/benchmarks.md). They use the
# `wasm-test` profile (release at opt-level 1): the same code as the site's release engines,
# compiled in less time; the browser tests only load tiny fixture models.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

t0=$(date +%s)
rows=()
phase_start() { p_name=$1 p_t=$(date +%s); echo "== $1"; }
phase_end() { rows+=("$p_name|$(($(date +%s) - p_t))|$((p_t - t0))"); p_name=""; }
mmss() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }
table() {
  echo "== timing (wall clock, min:s; the wasm engines overlap the native phases)"
  printf '%-50s %8s %8s\n' phase start took
  for r in "${rows[@]}"; do
    IFS='|' read -r n d s <<<"$r"
    printf '%-50s %8s %8s\n' "$n" "$(mmss "$s")" "$(mmss "$d")"
  done
  printf '%-50s %8s %8s\n' total "" "$(mmss $(($(date +%s) - t0)))"
}

log=$(mktemp) wasm_log=$(mktemp) hostile=$(mktemp -d)
wasm_pid=""
killtree() { local c; for c in $(pgrep -P "$1"); do killtree "$c"; done; kill "$1" 2>/dev/null || true; }
cleanup() {
  local rc=$?
  [ -n "$wasm_pid" ] && killtree "$wasm_pid"
  if ((rc)); then # the phases done so far, and the one that failed
    [ -n "${p_name:-}" ] && rows+=("$p_name (FAILED)|$(($(date +%s) - p_t))|$((p_t - t0))")
    table
  fi
  rm -rf "$log" "$wasm_log" "$wasm_log.took" "$hostile"
}
trap cleanup EXIT

phase_start "setup (apt, rustup target, npm)"
scripts/setup.sh --skip-wasm-bindgen # build-web.sh installs it while cargo builds
phase_end

# The least autotuning on lavapipe: its shader compiles, not the kernels' speed, dominate the
# native wgpu tests (the f16 test: 282 s at the default level, 140 s at minimal, cold).
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"

wasm_start=$(date +%s)
(
  s=$(date +%s)
  scripts/build-web.sh --profile wasm-test >"$wasm_log" 2>&1
  echo $(($(date +%s) - s)) >"$wasm_log.took"
) &
wasm_pid=$!

phase_start "format check"
cargo fmt --check
phase_end

phase_start "native build (all test binaries)"
cargo test --workspace --locked --no-run
phase_end

phase_start "native tests"
cargo test --workspace --locked 2>&1 | tee "$log"
phase_end

phase_start "hostile inputs through the CLI"
echo "(the native CLI on generated image and weight corpora; 2 GiB, 60 s each)"
python3 tests/hostile/make_corpus.py "$hostile/images"
tests/hostile/run_cli.sh "$hostile/images"
python3 tests/hostile/make_weights.py "$hostile/weights"
tests/hostile/run_weights.sh "$hostile/weights"
phase_end

phase_start "trainer CUDA type-check"
echo "(DOCS_RS=1: no LLVM download, no GPU)"
DOCS_RS=1 cargo check -p dermlip-trainer --features cuda --locked
phase_end

phase_start "wait for the wasm engines"
wasm_ok=0
wait "$wasm_pid" || wasm_ok=$?
wasm_pid=""
phase_end
cat "$wasm_log"
if ((wasm_ok)); then
  echo "test.sh: the wasm engine build failed (log above)" >&2
  exit "$wasm_ok"
fi
rows+=("wasm-bindgen install + wasm engines (background)|$(cat "$wasm_log.took")|$((wasm_start - t0))")

phase_start "browser tests"
# The second architecture (PanDerm + PubMedBERT) as a web bundle, for the browser tests; the
# default bundle (www/models/default/) is committed (tests/suite/web_bundle.rs keeps it current).
"$CARGO_TARGET_DIR/debug/dermlip" convert --model tests/fixtures/models/tiny-panderm --out www/models/panderm \
  --image-weights f32 --text-weights f32 --fixture >/dev/null
(cd tests/browser && node --test --test-concurrency=1 --test-reporter=spec) 2>&1 | tee -a "$log"
phase_end

table
# One closing line for the whole run (cargo prints one per test binary, node one at the end).
awk '/^test result:/ { p += $4; f += $6 } /^ℹ pass / { bp += $3 } /^ℹ fail / { bf += $3 }
     END { printf "tests: %d passed, %d failed (Rust); %d passed, %d failed (browser)\n", p, f, bp, bf }' "$log"
