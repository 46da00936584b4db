#!/usr/bin/env bash
# Speed of dermlip vs open_clip PyTorch on this machine: image embedding of the full-size
# ViT-B/16 (random weights), batch 1 and 8, CPU. Runs the two alternately ROUNDS times (default 3)
# so that a noisy machine affects both; prints each round's table.
# Needs the reference venv (tests/reference/README.md); VENV defaults to ~/.cache/dermlip-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
venv="${VENV:-$HOME/.cache/dermlip-venv}"
rounds="${ROUNDS:-3}"
cargo build --release --locked --bin bench
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
echo "$(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for r in $(seq "$rounds"); do
  "$venv/bin/python" benches/bench_open_clip.py --json > "$tmp"
  echo "round $r"
  "$CARGO_TARGET_DIR/release/bench" --pytorch "$tmp" "$@"
done
