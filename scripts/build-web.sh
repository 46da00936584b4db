#!/usr/bin/env bash
# Builds the website's wasm engine modules into pkg/ with the pinned wasm-bindgen, and
# pkg/manifest.json (size + sha256 of each engine) and pkg/sw-version.js (the shell's version).
#
#   scripts/build-web.sh                     both engines, release profile (what the site ships)
#   scripts/build-web.sh cpu                 only the named engines (cpu, webgpu), in that order
#   scripts/build-web.sh --profile wasm-test the faster-to-compile profile the browser tests use
#
# The manifest lists every engine present in pkg/ after the build; an engine named here is removed
# first, so a failed build never leaves an older module listed. The default model bundle
# (www/models/default/, the fixture model converted) is committed, so the site needs no native build.
# The modules ship without their name section (15 % smaller gzipped; panics then show
# wasm-function[N] frames): DERMLIP_WASM_NAMES=1 keeps it for debugging.
# DERMLIP_WASM_OPT=1 also runs binaryen's wasm-opt (npm build; minutes; measured 2026-11-30 on the
# CPU module: 7 % smaller raw, 2 % larger gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

profile=release engines=()
while (($#)); do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    cpu|webgpu) engines+=("$1"); shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-web.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
((${#engines[@]})) || engines=(webgpu cpu)

# Two engine modules: `webgpu` (Burn's WebGPU backend and the flex CPU backend) and `cpu` (flex
# only, much smaller), so a browser without (hardware) WebGPU downloads only the small one.
rm -f pkg/dermlip.js pkg/dermlip_bg.wasm pkg/dermlip_bg.wasm.d.ts pkg/dermlip.d.ts
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/$profile/dermlip.wasm"
strip=(--remove-name-section --remove-producers-section)
[ "${DERMLIP_WASM_NAMES:-0}" = 1 ] && strip=()

# The worker downloads the engine it needs through this manifest (size + sha256, like a bundle's).
entry() {
  local f="pkg/dermlip_$1_bg.wasm"
  printf '"%s": { "path": "dermlip_%s_bg.wasm", "glue": "dermlip_%s.js", "bytes": %d, "sha256": "%s" }' \
    "$1" "$1" "$1" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
}
write_manifest() {
  local list=()
  for k in webgpu cpu; do [ -f "pkg/dermlip_${k}_bg.wasm" ] && [ -f "pkg/dermlip_$k.js" ] && list+=("$(entry "$k")"); done
  local IFS=,
  printf '{ "engines": { %s } }\n' "${list[*]}" > pkg/manifest.json
  # The service worker re-caches the app shell when this changes.
  local glue=()
  for f in pkg/*.js; do [ -f "$f" ] && [ "$f" != pkg/sw-version.js ] && glue+=("$f"); done
  version=$(cat pkg/manifest.json "${glue[@]}" index.html www/*.js www/*.json www/*.css | sha256sum | cut -c1-16)
  echo "self.DERMLIP_SHELL_VERSION = '$version';" > pkg/sw-version.js
}

for kind in "${engines[@]}"; do
  rm -f "pkg/dermlip_${kind}_bg.wasm" "pkg/dermlip_$kind.js" "pkg/dermlip_${kind}_bg.wasm.d.ts" "pkg/dermlip_$kind.d.ts"
done
write_manifest
# A missing wasm-bindgen-cli is installed while cargo builds the first engine (scripts/setup.sh
# --skip-wasm-bindgen leaves it to here); a failed install stops before the first wasm-bindgen.
bindgen_pid=""
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $(sed -n 's/^WASM_BINDGEN_VERSION=\([0-9.]*\).*/\1/p' scripts/setup.sh)" ]; then
  scripts/setup.sh --wasm-bindgen &
  bindgen_pid=$!
fi
for kind in "${engines[@]}"; do
  features=()
  [ "$kind" = webgpu ] && features=(--features webgpu)
  cargo build --lib --profile "$profile" --locked --target wasm32-unknown-unknown "${features[@]}"
  if [ -n "$bindgen_pid" ]; then
    wait "$bindgen_pid" || { echo "build-web: installing wasm-bindgen-cli failed" >&2; exit 1; }
    bindgen_pid=""
  fi
  wasm-bindgen --target web "${strip[@]}" --out-dir pkg --out-name "dermlip_$kind" "$wasm"
  if [ "${DERMLIP_WASM_OPT:-0}" = 1 ]; then
    echo "build-web: wasm-opt -O3 dermlip_$kind (slow)"
    tests/browser/node_modules/.bin/wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-reference-types --enable-multivalue --strip-debug \
      "pkg/dermlip_${kind}_bg.wasm" -o "pkg/dermlip_${kind}_bg.opt.wasm"
    mv "pkg/dermlip_${kind}_bg.opt.wasm" "pkg/dermlip_${kind}_bg.wasm"
  fi
  write_manifest
  echo "build-web: pkg/dermlip_$kind ready ($profile profile, $(du -h "pkg/dermlip_${kind}_bg.wasm" | cut -f1); shell $version)"
done
