#!/usr/bin/env bash
# The main job: install what is missing, build the wasm module and the default model bundle, and
# serve the website on http://127.0.0.1:8000/ (Ctrl-C stops it).
#
#   scripts/run.sh                      the committed fixture model (tiny random weights: it shows
#                                       the pipeline working, its rankings mean nothing)
#   scripts/run.sh --model hf-hub:redlessone/DermLIP_ViT-B-16
#                                       a hub checkpoint: downloaded (`dermlip fetch`), then
#                                       converted to a web bundle (needs network)
#   scripts/run.sh --model DIR          an open_clip checkpoint directory; converted first
#   scripts/run.sh --model URL          an open_clip_model.safetensors URL, loaded by the browser
#   scripts/run.sh --port N --host ADDR where to listen (default 127.0.0.1:8000)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

model="" port=8000 host=127.0.0.1
while (($#)); do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --host) host="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
scripts/build-web.sh

query=""
if [[ "$model" =~ ^https?:// ]]; then
  query="?model=$model"
elif [[ "$model" == hf-hub:* ]]; then
  dir="$HOME/.cache/dermlip/models/$(echo "${model#hf-hub:}" | sed 's|/|--|g')"
  "$CARGO_TARGET_DIR/debug/dermlip" fetch "$model" --out "$dir"
  "$CARGO_TARGET_DIR/debug/dermlip" convert --model "$dir" --out www/models/custom
  query="?model=www/models/custom/"
elif [ -n "$model" ]; then
  "$CARGO_TARGET_DIR/debug/dermlip" convert --model "$model" --out www/models/custom
  query="?model=www/models/custom/"
fi
echo "Open http://$host:$port/index.html$query"
exec node scripts/serve.mjs --port "$port" --host "$host"
