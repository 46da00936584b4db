#!/usr/bin/env bash
# The main job: install what serving needs, build the CPU wasm engine, and serve the website on
# http://127.0.0.1:8000/ as soon as it exists; the WebGPU engine is built while the site is up
# (a reload picks it up). Ctrl-C stops both.
#
#   scripts/run.sh                      the committed fixture model (tiny random weights: it shows
#                                       the pipeline working, its rankings mean nothing)
#   scripts/run.sh --model hf-hub:redlessone/DermLIP_ViT-B-16
#                                       a hub checkpoint: downloaded (`dermlip fetch`), then
#                                       converted to a web bundle (needs network and the native CLI)
#   scripts/run.sh --model DIR          an open_clip checkpoint directory; converted first
#   scripts/run.sh --model URL          an open_clip_model.safetensors URL, loaded by the browser
#   scripts/run.sh --image-weights int8 the converted bundle's image-tower weights: f32, f16
#                                       (the converter's default) or int8 (about a quarter of f32)
#   scripts/run.sh --model-card FILE    what the page tells visitors about a converted model
#                                       (docs/web-bundle.md); the released hub models get theirs
#                                       from data/model-cards/ automatically
#   scripts/run.sh --cpu-only           do not build the WebGPU engine
#   scripts/run.sh --port N --host ADDR where to listen (default 127.0.0.1:8000)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

model="" port=8000 host=127.0.0.1 image_weights="" card="" webgpu=1
while (($#)); do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --image-weights) image_weights="$2"; shift 2 ;;
    --model-card) card="$2"; shift 2 ;;
    --cpu-only) webgpu=0; shift ;;
    --port) port="$2"; shift 2 ;;
    --host) host="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$image_weights$card" ] && { [ -z "$model" ] || [[ "$model" =~ ^https?:// ]]; }; then
  echo "run.sh: --image-weights and --model-card apply to a converted model (--model hf-hub:… or --model DIR)" >&2
  exit 2
fi

scripts/setup.sh --serve --skip-wasm-bindgen # build-web.sh installs it while cargo builds
# The CPU engine first: every browser can run it, and it is the smaller build.
((webgpu)) && rm -f pkg/dermlip_webgpu_bg.wasm pkg/dermlip_webgpu.js # rebuilt below, never stale
scripts/build-web.sh cpu

query=""
convert() {
  cargo build --locked --bin dermlip
  local opts=()
  [ -n "$image_weights" ] && opts+=(--image-weights "$image_weights")
  [ -n "$card" ] && opts+=(--model-card "$card")
  "$CARGO_TARGET_DIR/debug/dermlip" convert --model "$1" --out www/models/custom "${opts[@]}"
  query="?model=www/models/custom/"
}
if [[ "$model" =~ ^https?:// ]]; then
  query="?model=$model"
elif [[ "$model" == hf-hub:* ]]; then
  name=$(echo "${model#hf-hub:}" | sed 's|/|--|g')
  dir="$HOME/.cache/dermlip/models/$name"
  [ -z "$card" ] && [ -f "data/model-cards/$name.json" ] && card="data/model-cards/$name.json"
  cargo build --locked --bin dermlip
  "$CARGO_TARGET_DIR/debug/dermlip" fetch "$model" --out "$dir"
  convert "$dir"
elif [ -n "$model" ]; then
  convert "$model"
fi

node scripts/serve.mjs --port "$port" --host "$host" &
server=$!
trap 'kill "$server" 2>/dev/null; exit 130' INT TERM
echo "Open http://$host:$port/index.html$query"
if ((webgpu)); then
  echo "run.sh: the site runs on the CPU engine; building the WebGPU engine now (a reload picks it up)"
  if scripts/build-web.sh webgpu; then
    echo "run.sh: the WebGPU engine is ready: reload the page. Site still at http://$host:$port/index.html$query"
  else
    echo "run.sh: the WebGPU engine failed to build; the site keeps running on the CPU engine" >&2
  fi
fi
wait "$server"
