#!/usr/bin/env bash
# test_examples.sh — runs the embedding examples built in the build tree (against its
# libonyx.so; also in the sanitizer builds) and checks what they print (examples.sh).
# Environment (set by ctest): ONYX_BIN, ONYX_SOURCE_DIR, ONYX_BINARY_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install/examples.sh
. "$here/examples.sh"

onyx=${ONYX_BIN:?}
src=${ONYX_SOURCE_DIR:?}
build=${ONYX_BINARY_DIR:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/onyx-examples.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

model=$tmp/mlp.onnx
sample=$src/examples/data/digits_sample.csv
"$onyx" init --layers 64,32,10 --dropout 0.5 --seed 3 -o "$model" >/dev/null

run_examples "$build/examples" "" "$tmp/out"
cat "$tmp/out/summary.txt"
