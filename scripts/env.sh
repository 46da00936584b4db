# Sourced by the other scripts: one build directory outside the clone, reused between runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dermlip/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# lavapipe and the wgpu backend print "XDG_RUNTIME_DIR is invalid" without it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
