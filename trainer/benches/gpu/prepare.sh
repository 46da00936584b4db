#!/usr/bin/env bash
# Packs what trainer/benches/gpu/run.sh needs on an NVIDIA machine that cannot reach the network
# (the device machine of this workplace: x86-64, CUDA PyTorch installed, no Rust, no open_clip,
# maybe no Vulkan loader) into .gpu/ (git-ignored, under 64 MiB):
#   .gpu/trainer.gz  the release trainer (wgpu), stripped and gzipped (95 MB → 26 MB)
#   .gpu/whl/      open_clip_torch 2.32.0 + ftfy + wcwidth wheels (pure Python)
#   .gpu/gl/       the Vulkan/EGL loader packages (amd64 .deb, unpacked there)
# Then, on the GPU machine, in the repository root with .gpu carried:
#   bash trainer/benches/gpu/run.sh            # writes the table to $OUT (or .gpu/out)
set -euo pipefail
cd "$(dirname "$0")/../../.."
source scripts/env.sh
[ "$(uname -m)" = x86_64 ] || { echo "build on x86-64: the GPU machine is x86-64" >&2; exit 1; }
mkdir -p .gpu/whl .gpu/gl
cargo build --release --locked -p dermlip-trainer --bin trainer
strip -o /tmp/dermlip-trainer-stripped "$CARGO_TARGET_DIR/release/trainer"
gzip -9 -c /tmp/dermlip-trainer-stripped >.gpu/trainer.gz
rm -f /tmp/dermlip-trainer-stripped .gpu/trainer
py=${PYTHON:-python3}
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform any --platform manylinux2014_x86_64 -d .gpu/whl open_clip_torch==2.32.0 ftfy==6.3.1 wcwidth==0.2.13
lists=/tmp/dermlip-amd64-lists; mkdir -p "$lists/partial"
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
apt-get "${o[@]}" update -qq
(cd .gpu/gl && apt-get "${o[@]}" download -qq libvulkan1 libegl1 libglvnd0)
ls -la .gpu .gpu/whl .gpu/gl
# The device tool carries the tracked tree plus .gpu: 64 MiB at most.
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
kit=$(du -sb .gpu | cut -f1)
echo "tracked tree $((tree / 1048576)) MiB + .gpu $((kit / 1048576)) MiB = $(((tree + kit) / 1048576)) MiB (limit 64)"
