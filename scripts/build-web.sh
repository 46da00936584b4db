#!/usr/bin/env bash
# Builds the website: the wasm module (release) into pkg/ with the pinned wasm-bindgen, and the
# default model bundle (the committed fixture model) into www/models/default/ (and the PanDerm
# fixture into www/models/panderm/).
# DERMLIP_WASM_OPT=1 also runs binaryen's wasm-opt (npm build; several minutes, smaller file).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cargo build --lib --release --locked --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/dermlip.wasm"
if [ "${DERMLIP_WASM_OPT:-0}" = 1 ]; then
  echo "build-web: wasm-opt -O3 (slow)"
  tests/browser/node_modules/.bin/wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-reference-types --enable-multivalue --strip-debug \
    pkg/dermlip_bg.wasm -o pkg/dermlip_bg.opt.wasm
  mv pkg/dermlip_bg.opt.wasm pkg/dermlip_bg.wasm
fi

cargo build --locked --bin dermlip
"$CARGO_TARGET_DIR/debug/dermlip" convert --model tests/fixtures/models/tiny-gelu --out www/models/default \
  --image-weights f32 --text-weights f32 >/dev/null
# The second architecture (PanDerm + PubMedBERT), for the browser tests.
"$CARGO_TARGET_DIR/debug/dermlip" convert --model tests/fixtures/models/tiny-panderm --out www/models/panderm \
  --image-weights f32 --text-weights f32 >/dev/null

# The service worker re-caches the app shell when this changes.
version=$(cat pkg/dermlip_bg.wasm pkg/dermlip.js index.html www/*.js www/*.css | sha256sum | cut -c1-16)
echo "self.DERMLIP_SHELL_VERSION = '$version';" > pkg/sw-version.js
echo "build-web: pkg/ and www/models/default/ ready (shell $version; wasm $(du -h pkg/dermlip_bg.wasm | cut -f1))"
