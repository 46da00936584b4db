#!/usr/bin/env bash
# Training throughput of ViT-B/16 at a fixed batch: dermlip (Burn) vs open_clip (PyTorch) on the
# same machine, as a table with the ratio. Not a test. Build the trainer in release first.
#   trainer/benches/throughput.sh [BATCH] [STEPS] [DEVICE: flex|wgpu] [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
batch=${1:-8}; steps=${2:-5}; device=${3:-flex}; py=${4:-/root/.cache/dermlip-venv/bin/python}
cargo build --release -p dermlip-trainer --bin trainer
rs=$("$CARGO_TARGET_DIR/release/trainer" --bench --device "$device" --batch-size "$batch" --bench-steps "$steps")
torch_dev=cpu; [ "$device" = flex ] || torch_dev=cuda
pt=$("$py" trainer/benches/open_clip_train_throughput.py --batch "$batch" --steps "$steps" --device "$torch_dev")
"$py" - "$rs" "$pt" <<'PY'
import json, sys
rs, pt = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"| framework | device | batch | ms/step | samples/s | MiB/sample |")
print(f"|---|---|---|---|---|---|")
for r in (rs, pt):
    print(f"| {r['framework']} | {r['device']} | {r['batch']} | {r['step_ms']:.0f} | {r['samples_per_s']:.2f} | {r['mib_per_sample']:.0f} |")
print(f"\nratio dermlip / PyTorch: {rs['samples_per_s'] / pt['samples_per_s']:.2f}x (target >= 0.8x)")
PY
