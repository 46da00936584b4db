#!/usr/bin/env bash
# Builds the website: the two wasm engine modules (release) into pkg/ with the pinned
# wasm-bindgen, and the default model bundle (the committed fixture model) into
# www/models/default/ (and the PanDerm fixture into www/models/panderm/).
# The modules ship without their name section (15 % smaller gzipped; panics then show
# wasm-function[N] frames): DERMLIP_WASM_NAMES=1 keeps it for debugging.
# DERMLIP_WASM_OPT=1 also runs binaryen's wasm-opt (npm build; minutes; measured 2026-11-30 on the
# CPU module: 7 % smaller raw, 2 % larger gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# Two engine modules: `webgpu` (Burn's WebGPU backend and the flex CPU backend) and `cpu` (flex
# only, much smaller), so a browser without (hardware) WebGPU downloads only the small one.
rm -f pkg/dermlip.js pkg/dermlip_bg.wasm pkg/dermlip_bg.wasm.d.ts pkg/dermlip.d.ts
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/dermlip.wasm"
strip=(--remove-name-section --remove-producers-section)
[ "${DERMLIP_WASM_NAMES:-0}" = 1 ] && strip=()
for kind in webgpu cpu; do
  features=()
  [ "$kind" = webgpu ] && features=(--features webgpu)
  cargo build --lib --release --locked --target wasm32-unknown-unknown "${features[@]}"
  wasm-bindgen --target web "${strip[@]}" --out-dir pkg --out-name "dermlip_$kind" "$wasm"
  if [ "${DERMLIP_WASM_OPT:-0}" = 1 ]; then
    echo "build-web: wasm-opt -O3 dermlip_$kind (slow)"
    tests/browser/node_modules/.bin/wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-reference-types --enable-multivalue --strip-debug \
      "pkg/dermlip_${kind}_bg.wasm" -o "pkg/dermlip_${kind}_bg.opt.wasm"
    mv "pkg/dermlip_${kind}_bg.opt.wasm" "pkg/dermlip_${kind}_bg.wasm"
  fi
done
# The worker downloads the engine it needs through this manifest (size + sha256, like a bundle's).
entry() {
  local f="pkg/dermlip_$1_bg.wasm"
  printf '"%s": { "path": "dermlip_%s_bg.wasm", "glue": "dermlip_%s.js", "bytes": %d, "sha256": "%s" }' \
    "$1" "$1" "$1" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
}
printf '{ "engines": { %s, %s } }\n' "$(entry webgpu)" "$(entry cpu)" > pkg/manifest.json

cargo build --locked --bin dermlip
"$CARGO_TARGET_DIR/debug/dermlip" convert --model tests/fixtures/models/tiny-gelu --out www/models/default \
  --image-weights f32 --text-weights f32 >/dev/null
# The second architecture (PanDerm + PubMedBERT), for the browser tests.
"$CARGO_TARGET_DIR/debug/dermlip" convert --model tests/fixtures/models/tiny-panderm --out www/models/panderm \
  --image-weights f32 --text-weights f32 >/dev/null

# The service worker re-caches the app shell when this changes.
version=$(cat pkg/manifest.json pkg/*.js index.html www/*.js www/*.css | sha256sum | cut -c1-16)
echo "self.DERMLIP_SHELL_VERSION = '$version';" > pkg/sw-version.js
echo "build-web: pkg/ and www/models/default/ ready (shell $version; engines: webgpu $(du -h pkg/dermlip_webgpu_bg.wasm | cut -f1), cpu $(du -h pkg/dermlip_cpu_bg.wasm | cut -f1))"
