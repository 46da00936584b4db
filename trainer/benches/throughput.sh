#!/usr/bin/env bash
# Training throughput and memory of the training loop's own step (ViT-B/16 unless a model config
# is given), one configuration per process (peak RSS is per process), as a table. Not a test.
# Build the trainer in release first (this script does).
#
#   trainer/benches/throughput.sh [BATCH] [STEPS] [DEVICE: flex|wgpu|cuda] [CONFIGS...]
#
# CONFIGS are "precision:devices:checkpointing" triples, default
#   f32:1:0 amp:1:0 f32:1:1 f32:2:0
# (f32 vs amp, activation checkpointing off/on, 1 vs 2 devices — on flex the "2 devices" are the
# same CPU, which measures the data-parallel code path's overhead, not scaling).
# With PYTHON set to an interpreter that has torch + open_clip, open_clip's own step is measured
# too (benches/open_clip_train_throughput.py, --precision amp on a GPU). ACCUM=k splits each step
# into k micro-batches on both sides (open_clip --accum-freq; batch 256 of ViT-B/16 does not fit
# the CPU's memory otherwise); WARMUP (default 1) untimed steps first.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
batch=${1:-8}; steps=${2:-3}; device=${3:-flex}; shift $(($# < 3 ? $# : 3))
accum=${ACCUM:-1}; warmup=${WARMUP:-1}
configs=("$@"); [ ${#configs[@]} -gt 0 ] || configs=(f32:1:0 amp:1:0 f32:1:1 f32:2:0)
cargo build --release -p dermlip-trainer --bin trainer >&2
bin="$CARGO_TARGET_DIR/release/trainer"
extra=(); [ -n "${MODEL_CONFIG:-}" ] && extra=(--model-config "$MODEL_CONFIG")
echo "| framework | device | devices | precision | checkpointing | batch | accum | ms/step | samples/s | MiB/sample | loss |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for c in "${configs[@]}"; do
  IFS=: read -r prec ndev ckpt <<<"$c"
  args=(--bench --device "$device" --num-devices "$ndev" --precision "$prec" --batch-size "$batch"
    --bench-steps "$steps" --bench-warmup "$warmup" --accum-freq "$accum" "${extra[@]}")
  [ "$ckpt" = 1 ] && args+=(--grad-checkpointing)
  if ! out=$("$bin" "${args[@]}" 2>/tmp/bench-err.$$); then
    echo "| dermlip | $device | $ndev | $prec | $ckpt | $batch | $accum | failed: $(tail -1 /tmp/bench-err.$$) | | | |"
    continue
  fi
  python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {r['framework']} | {r['device']} | {r['devices']} | {r['precision']} | {'on' if r['grad_checkpointing'] else 'off'} "
      f"| {r['batch']} | {r['accum_freq']} | {r['step_ms']:.0f} | {r['samples_per_s']:.3f} | {r['mib_per_sample']:.0f} | {r['loss']:.4f} |")
PY
done
rm -f /tmp/bench-err.$$
if [ -n "${PYTHON:-}" ]; then
  torch_dev=cpu; prec=fp32
  [ "$device" = flex ] || { torch_dev=cuda; prec=amp; }
  pt=$("$PYTHON" trainer/benches/open_clip_train_throughput.py --batch "$batch" --steps "$steps" --warmup "$warmup" --device "$torch_dev" --precision "$prec" --accum-freq "$accum")
  "$PYTHON" - "$pt" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {r['framework']} | {r['device']} | 1 | {r.get('precision', 'fp32')} | off | {r['batch']} | {r['accum_freq']} | {r['step_ms']:.0f} | {r['samples_per_s']:.3f} | {r['mib_per_sample']:.0f} | |")
PY
fi
