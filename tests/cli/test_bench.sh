#!/usr/bin/env bash
# test_bench.sh — `onyx bench` and `onyx info --plan` on a small `onyx init` model: the fields
# of the text output, one JSON object that parses, the memory plan (the arena no larger than one
# buffer per value), --train, and bad arguments (each one line on stderr, exit status 2 for
# usage errors, 1 for failures). No time is checked: only that the numbers are there.
#
# Environment: ONYX_BIN, the onyx command (set by ctest).
set -u
cli_dir=$(cd "$(dirname "$0")" && pwd)

onyx=${ONYX_BIN:?ONYX_BIN must name the onyx command}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
# shellcheck source=lib.sh
. "$cli_dir/lib.sh"

# json_field NAME: the value of "NAME" in the one-line JSON object in $out.
json_field() {
    printf '%s\n' "$out" | sed -n "s/.*\"$1\": *\([^,}]*\).*/\1/p" | head -n 1
}

expect_ok bench --help
expect_out "usage: onyx bench MODEL"
expect_out "2*M*N*K"
expect_ok bench -h
expect_ok --help
expect_out "bench MODEL"

expect_ok init --layers 16,32,32,4 --dropout 0.1 --seed 2 -o mlp.onnx

# ---- text --------------------------------------------------------------------------------
expect_ok bench mlp.onnx --iters 5 --warmup 1
for field in "model: mlp.onnx" "mode: infer, batch 1" "5 runs after 1 warm-up" "latency: median " \
    " ms, p90 " "throughput: " " samples/s" "compute: " " GFLOP/s" "memory: arena " \
    "one buffer per value "; do
    expect_out "$field"
done
# 2*(16*32 + 32*32 + 32*4) = 3328 FLOP per batch-1 run
expect_out "(3.328e-06 GFLOP per run in Gemm/MatMul)"

expect_ok bench mlp.onnx --iters 5 --batch 8 --threads 1
expect_out "batch 8, threads 1,"
# values: 3 Gemm outputs, 2 Relu, 2 Dropout; batch 8: six of 8 x 32 floats and 8 x 4 (128)
expect_out "one buffer per value 6272 bytes"

# ---- JSON --------------------------------------------------------------------------------
expect_ok bench mlp.onnx --iters 5 --batch 4 --json
check '[ "$(printf "%s\n" "$out" | wc -l)" -eq 1 ]' "bench --json printed more than one line"
check '[[ "$out" == "{"*"}" ]]' "bench --json is not one object: $out"
for field in model mode batch threads iters warmup median_ms p90_ms samples_per_s flop_per_run \
    gflops arena_bytes naive_bytes; do
    check '[ -n "$(json_field $field)" ]' "bench --json lacks $field: $out"
done
check '[ "$(json_field batch)" = 4 ] && [ "$(json_field iters)" = 5 ]' "bench --json: $out"
check '[ "$(json_field flop_per_run)" = 13312 ]' "bench --json flop_per_run: $out"
arena=$(json_field arena_bytes)
naive=$(json_field naive_bytes)
check '[ "$arena" -gt 0 ] && [ "$arena" -lt "$naive" ]' "arena $arena, naive $naive"
if /usr/bin/python3 -c 'import json' 2>/dev/null; then
    printf '%s\n' "$out" >bench.json
    if /usr/bin/python3 - <<'EOF'; then ok; else bad "bench --json does not parse: $out"; fi
import json
d = json.load(open("bench.json"))
assert d["mode"] == "infer" and d["batch"] == 4 and d["iters"] == 5, d
assert d["median_ms"] > 0 and d["p90_ms"] >= d["median_ms"] and d["samples_per_s"] > 0, d
assert 0 < d["arena_bytes"] < d["naive_bytes"], d
EOF
fi

# ---- training steps ------------------------------------------------------------------------
expect_ok bench mlp.onnx --train --iters 5 --warmup 1 --batch 8
expect_out "mode: train, batch 8"
expect_out "latency: median "
expect_out "GFLOP per step"
expect_ok bench mlp.onnx --train --iters 3 --json
check '[ "$(json_field mode)" = "\"train\"" ]' "bench --train --json: $out"

# ---- info --plan -------------------------------------------------------------------------
expect_ok info mlp.onnx --plan
expect_out "memory plan (batch 1): arena "
expect_out "3328 FLOP in Gemm/MatMul"
expect_ok info mlp.onnx --plan --json
expect_out '"plan": {"batch": 1, "arena_bytes": '

# ---- errors --------------------------------------------------------------------------------
expect_fail 2 "missing MODEL" bench
expect_fail 2 "--batch must be an integer" bench mlp.onnx --batch 0
expect_fail 2 "--batch must be an integer" bench mlp.onnx --batch x
expect_fail 2 "--iters must be an integer" bench mlp.onnx --iters 0
expect_fail 2 "--warmup must be an integer" bench mlp.onnx --warmup -1
expect_fail 2 "--threads must be an integer" bench mlp.onnx --threads -2
expect_fail 2 "option --iters needs a value" bench mlp.onnx --iters
expect_fail 2 "unknown option --fast" bench mlp.onnx --fast
expect_fail 2 "one model at a time" bench mlp.onnx other.onnx
expect_fail 1 "missing.onnx" bench missing.onnx
printf 'not a model' >garbage.onnx
expect_fail 1 "garbage.onnx" bench garbage.onnx --iters 1

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
