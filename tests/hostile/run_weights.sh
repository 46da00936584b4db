#!/usr/bin/env bash
# Runs the native CLI on every hostile weight file that make_weights.py wrote:
#
#   python3 tests/hostile/make_weights.py OUT_DIR && tests/hostile/run_weights.sh OUT_DIR
#
# Each file is loaded as `dermlip embed-image --model FILE IMAGE` (FILE next to a copy of the
# tiny-gelu config) under a 2 GiB address-space limit and a 60 s timeout. A run fails the script
# (named on stderr) when it ends by a signal, times out, panics, or writes more than one line to
# stderr; a refusal must be one clean line. The CLI binary is $DERMLIP_BIN, else
# $CARGO_TARGET_DIR/debug/dermlip (build it first: cargo build --locked --bin dermlip).
set -u
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 OUT_DIR (written by tests/hostile/make_weights.py)" >&2
    exit 2
fi
corpus=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${DERMLIP_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/dermlip}
if [ ! -x "$bin" ]; then
    echo "no dermlip binary at $bin (cargo build --locked --bin dermlip, or set DERMLIP_BIN)" >&2
    exit 2
fi
image=$root/tests/fixtures/images/astronaut_512_q90_420.jpg
pwned=/tmp/dermlip-hostile-pwned
rm -f "$pwned"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$root/tests/fixtures/models/tiny-gelu/open_clip_config.json" "$work/"

total=0 clean=0 accepted=0 failures=0
for f in "$corpus"/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    total=$((total + 1))
    cp "$f" "$work/$name"
    timeout 60 prlimit --as=2147483648 -- "$bin" embed-image --model "$work/$name" "$image" \
        >/dev/null 2>"$work/stderr"
    rc=$?
    rm -f "$work/$name"
    lines=$(grep -c '' "$work/stderr")
    why=""
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        why="timed out (60 s)"
    elif [ $rc -gt 128 ]; then
        why="killed by signal $((rc - 128))"
    elif grep -q 'panicked at' "$work/stderr"; then
        why="panicked"
    elif [ $rc -ne 0 ] && [ "$lines" -ne 1 ]; then
        why="exit $rc with $lines lines on stderr"
    elif [ -e "$pwned" ]; then
        why="ran a command from the pickle"
        rm -f "$pwned"
    fi
    if [ -n "$why" ]; then
        failures=$((failures + 1))
        echo "FAIL $name: $why" >&2
        sed 's/^/    /' "$work/stderr" | head -20 >&2
    elif [ $rc -eq 0 ]; then
        accepted=$((accepted + 1))
    else
        clean=$((clean + 1))
        [ -n "${VERBOSE:-}" ] && echo "$name: $(cat "$work/stderr")"
    fi
done
echo "hostile weights: $total files, $clean clean errors, $accepted accepted, $failures failures"
[ "$failures" -eq 0 ] && [ "$total" -gt 0 ]
