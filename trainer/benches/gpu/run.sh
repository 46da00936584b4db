#!/usr/bin/env bash
# The GPU throughput table of issue 18, in one go on an NVIDIA machine without network: dermlip's
# training step on wgpu (Vulkan), f32 and amp (f16 + loss scaling), against open_clip's on CUDA
# with --precision amp and fp32, ViT-B/16 at batch 256 with --accum-freq 4 on both sides. Needs
# .gpu/ from trainer/benches/gpu/prepare.sh (run where cargo, pip and apt reach their registries).
#
#   bash trainer/benches/gpu/run.sh
#
# Environment: BATCH (256), ACCUM (4), STEPS (3), WARMUP (1), LIMIT (200 s per configuration),
# TORCH_DEVICE (cuda), PYTHON (python3, with torch), OUT (where table.md and logs.tgz go, two
# files: the device tool brings back at most 8; default .gpu/out), MODEL (an open_clip model folder instead of ViT-B/16, e.g.
# tests/fixtures/models/tiny-quickgelu to try the script on a CPU machine), CHECKPOINTING=1 (adds
# dermlip amp with --grad-checkpointing: GPU memory per sample with and without; up to LIMIT more).
# Memory: peak GPU memory in use (nvidia-smi, sampled every 200 ms, minus the idle reading) per
# sample of the batch; one configuration per process. Not a test.
set -uo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-.gpu/out}; mkdir -p "$out"
logs=$(mktemp -d /tmp/dermlip-gpu-bench.XXXXXX)
batch=${BATCH:-256}; accum=${ACCUM:-4}; steps=${STEPS:-3}; warmup=${WARMUP:-1}; limit=${LIMIT:-200}
torch_dev=${TORCH_DEVICE:-cuda}; py=${PYTHON:-python3}
[ -f .gpu/trainer.gz ] || { echo "no .gpu/trainer.gz: run trainer/benches/gpu/prepare.sh first and carry .gpu" >&2; exit 1; }
bin=$(mktemp /tmp/dermlip-trainer.XXXXXX)
gunzip -c .gpu/trainer.gz >"$bin" && chmod +x "$bin" || exit 1
# The Vulkan loader (the NVIDIA driver's ICD is mounted with the driver).
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
if ! "$py" -c 'import open_clip' 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")
used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; }

# measure NAME CMD...: runs CMD under LIMIT, keeps its last stdout line (one JSON object) and its
# peak GPU memory above the idle reading (MiB) in $logs/NAME.json / NAME.mem.
measure() {
  local name=$1; shift
  local idle; idle=$(used); idle=${idle:-0}
  (while sleep 0.2; do used; done) >"$logs/$name.samples" 2>/dev/null &
  local sampler=$!
  local t0=$SECONDS
  timeout "$limit" "$@" >"$logs/$name.stdout" 2>"$logs/$name.stderr"
  local rc=$?
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  local peak; peak=$(sort -n "$logs/$name.samples" | tail -1); peak=${peak:-$idle}
  echo $((peak - idle)) >"$logs/$name.mem"
  echo "$rc" >"$logs/$name.rc"
  tail -1 "$logs/$name.stdout" >"$logs/$name.json"
  echo "$name: exit $rc after $((SECONDS - t0)) s" | tee -a "$logs/runs.txt"
}

torch_args=(trainer/benches/open_clip_train_throughput.py --batch "$batch" --steps "$steps" --warmup "$warmup"
  --device "$torch_dev" --accum-freq "$accum")
dermlip_args=(--bench --device wgpu --num-devices 1 --batch-size "$batch" --bench-steps "$steps"
  --bench-warmup "$warmup" --accum-freq "$accum")
if [ -n "${MODEL:-}" ]; then
  torch_args+=(--model "local-dir:$MODEL")
  dermlip_args+=(--model-config "$MODEL/open_clip_config.json")
fi
: >"$logs/runs.txt"
measure open_clip-amp "$py" "${torch_args[@]}" --precision amp
measure dermlip-amp "$bin" "${dermlip_args[@]}" --precision amp
measure dermlip-f32 "$bin" "${dermlip_args[@]}" --precision f32
if [ "${CHECKPOINTING:-0}" = 1 ]; then
  measure dermlip-amp-checkpointing "$bin" "${dermlip_args[@]}" --precision amp --grad-checkpointing
fi
measure open_clip-fp32 "$py" "${torch_args[@]}" --precision fp32

python3 - "$logs" "$gpu" "$batch" <<'PY' | tee "$logs/table.md"
import json, sys, pathlib
out, gpu, batch = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def load(name):
    try:
        mem = int((out / f"{name}.mem").read_text()) if (out / f"{name}.samples").read_text().strip() else None
        return json.loads((out / f"{name}.json").read_text()), mem
    except Exception:
        return None, None
base, _ = load("open_clip-amp")
print(f"GPU: {gpu}\n")
print("| framework | device | precision | batch | accum | ms/step | samples/s | GPU MiB/sample | ratio to open_clip amp |")
print("|---|---|---|---|---|---|---|---|---|")
names = ["dermlip-amp", "dermlip-amp-checkpointing", "dermlip-f32", "open_clip-amp", "open_clip-fp32"]
for name in [n for n in names if (out / f"{n}.stdout").exists()]:
    r, mem = load(name)
    if r is None:
        err = (out / f"{name}.stderr").read_text(errors="replace").strip().splitlines()
        rc = (out / f"{name}.rc").read_text().strip()
        why = "timed out (LIMIT)" if rc == "124" else f"failed (exit {rc}): {(err[-1] if err else '')[:120]}"
        print(f"| {name} | | | | | {why} | | | |")
        continue
    ratio = f"{r['samples_per_s'] / base['samples_per_s']:.2f}×" if base else "–"
    per = "–" if mem is None else f"{mem / r['batch']:.1f}"
    prec = r.get("precision", "") + (" + checkpointing" if r.get("grad_checkpointing") else "")
    print(f"| {r['framework']} | {r['device']} | {prec} | {r['batch']} | {r['accum_freq']} "
          f"| {r['step_ms']:.0f} | {r['samples_per_s']:.1f} | {per} | {ratio} |")
for name in ["dermlip-amp", "dermlip-f32"]:
    r, _ = load(name)
    if r is not None and r.get("adapter"):
        print(f"\ndermlip's device: {r['adapter']}")
        break
PY
cp "$logs/table.md" "$out/table.md"
tar czf "$out/logs.tgz" -C "$logs" .
