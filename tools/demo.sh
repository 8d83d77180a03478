#!/usr/bin/env bash
# The main job, for now: build onyx, make an MLP with `onyx init`, look at it with `onyx info`,
# and run it on four handwritten digits with `onyx run` — in inference mode (dropout off, the
# same answer every time) and in training mode (dropout on, a different mask per seed).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
onyx_install_deps

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
onyx=build/onyx
out=build/demo
mkdir -p "$out"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $onyx init --layers 64,128,64,10 --activation relu --dropout 0.1 --seed 1 -o "$out/mlp.onnx"
step $onyx info "$out/mlp.onnx"
step $onyx run "$out/mlp.onnx" -i input=examples/data/digits_sample.csv -o "$out/infer" --show 10
step $onyx run "$out/mlp.onnx" -i input=examples/data/digits_sample.csv -o "$out/infer2" --show 10
if cmp -s "$out/infer/logits.npy" "$out/infer2/logits.npy"; then
    echo "infer mode: both runs gave identical logits (dropout is off)"
else
    echo "infer mode: runs differ — this is a bug" >&2
    exit 1
fi
step $onyx run "$out/mlp.onnx" -i input=examples/data/digits_sample.csv --mode train --seed 7 --show 10
step $onyx run "$out/mlp.onnx" -i input=examples/data/digits_sample.csv --mode train --seed 8 --show 10
echo
echo "train mode: dropout drops 10% of the hidden activations, so the logits change with the seed."
echo "outputs written to $out/infer/ as .npy"
