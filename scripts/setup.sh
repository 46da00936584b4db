#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine. Safe to run again: each step
# checks first and does nothing when its tool is already there.
#
#   scripts/setup.sh                everything the tests need (scripts/test.sh)
#   scripts/setup.sh --serve        only what building and serving the site needs (scripts/run.sh):
#                                   no Chromium, no Mesa, no npm packages
#   scripts/setup.sh --skip-wasm-bindgen   as above, but leave wasm-bindgen-cli to
#                                   scripts/build-web.sh, which installs it while cargo builds
#   scripts/setup.sh --wasm-bindgen only wasm-bindgen-cli
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130 # must equal the wasm-bindgen crate version in Cargo.lock

serve_only=0 bindgen=1 only_bindgen=0
for a in "$@"; do
  case "$a" in
    --serve) serve_only=1 ;;
    --skip-wasm-bindgen) bindgen=0 ;;
    --wasm-bindgen) only_bindgen=1 ;;
    *) echo "setup.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

install_wasm_bindgen() {
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
    echo "setup: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (2 to 4 minutes)"
    # Not --locked: the registry mirror lacks one locked dependency version (docs/environment notes).
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --quiet
  fi
}
if ((only_bindgen)); then
  install_wasm_bindgen
  exit 0
fi

apt_packages=(nodejs npm) # the site's static server (and the Playwright tests)
if ((!serve_only)); then
  apt_packages+=(
    mesa-vulkan-drivers # lavapipe: the wgpu backend on a machine without a GPU
    chromium            # headless browser tests (WebGPU through SwiftShader)
  )
fi
missing=()
for p in "${apt_packages[@]}"; do
  if [ "$p" = nodejs ] || [ "$p" = npm ]; then command -v "${p/nodejs/node}" >/dev/null && continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

((bindgen)) && install_wasm_bindgen

((serve_only)) && exit 0

if [ ! -d tests/browser/node_modules/playwright-core ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  echo "setup: installing the browser-test packages (npm ci)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
