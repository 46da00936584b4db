#!/usr/bin/env bash
# Runs the native CLI over a hostile-image corpus (tests/hostile/make_corpus.py writes one) and
# fails when any file ends the process with a signal, a timeout, a Rust panic, or more than one
# line on stderr. Exit 0 with an embedding, or a one-line error, is success.
#
#   cargo build --locked --bin dermlip
#   python3 tests/hostile/make_corpus.py /tmp/hostile && tests/hostile/run_cli.sh /tmp/hostile
#
# Each file runs `dermlip embed-image` (the image tower only) on the tiny test model, under a
# 2 GiB address-space limit (prlimit) and a 60 s timeout. DERMLIP_BIN overrides the binary.
set -u

corpus=${1:?usage: run_cli.sh CORPUS_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/env.sh
. "$root/scripts/env.sh" # the shared CARGO_TARGET_DIR
bin=${DERMLIP_BIN:-$CARGO_TARGET_DIR/debug/dermlip}
model="$root/tests/fixtures/models/tiny-gelu"
[ -x "$bin" ] || { echo "run_cli.sh: no dermlip binary at $bin (cargo build --locked --bin dermlip)" >&2; exit 2; }
[ -d "$corpus" ] || { echo "run_cli.sh: no corpus folder $corpus" >&2; exit 2; }

limit=()
if command -v prlimit >/dev/null; then
    limit=(prlimit --as=2147483648 --)
else
    echo "run_cli.sh: prlimit not found; running without the 2 GiB address-space limit" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
total=0 clean=0 accepted=0 failures=0
start=$SECONDS
for f in "$corpus"/*; do
    [ -f "$f" ] || continue
    total=$((total + 1))
    timeout 60 "${limit[@]}" "$bin" embed-image --model "$model" "$f" >/dev/null 2>"$tmp/err"
    rc=$?
    lines=$(grep -c '' "$tmp/err")
    why=
    if [ "$rc" -eq 124 ]; then
        why="timed out after 60 s"
    elif [ "$rc" -gt 128 ]; then
        why="killed by signal $((rc - 128))"
    elif grep -q 'panicked at' "$tmp/err"; then
        why="panicked"
    elif [ "$lines" -gt 1 ]; then
        why="$lines lines on stderr"
    elif [ "$rc" -ne 0 ] && [ "$lines" -eq 0 ]; then
        why="exit $rc without a message"
    fi
    if [ -n "$why" ]; then
        failures=$((failures + 1))
        echo "FAIL $(basename "$f"): $why (exit $rc)"
        head -n 5 "$tmp/err" | sed 's/^/    /'
    elif [ "$rc" -eq 0 ]; then
        accepted=$((accepted + 1))
    else
        clean=$((clean + 1))
    fi
done
echo "hostile images: $total files, $clean clean errors, $accepted accepted, $failures failures ($((SECONDS - start)) s)"
[ "$total" -gt 0 ] || { echo "run_cli.sh: $corpus holds no files" >&2; exit 1; }
[ "$failures" -eq 0 ]
