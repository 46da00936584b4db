#!/usr/bin/env bash
# The main job: build dermlip and classify the bundled example image with the committed
# fixture model (tiny random weights: the ranking demonstrates the pipeline, not medicine).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh

cargo build --locked --bin dermlip
"$CARGO_TARGET_DIR/debug/dermlip" classify www/examples/synthetic-lesion.jpg \
  --model tests/fixtures/models/tiny-gelu \
  --labels "actinic keratosis,basal cell carcinoma,benign keratosis,dermatofibroma,melanoma,nevus,vascular lesion" \
  --top-k 5 "$@"
