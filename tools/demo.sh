#!/usr/bin/env bash
# The main job: build onyx, make an MLP with `onyx init`, train it on the handwritten digits
# (examples/data/digits_{train,test}.csv) with `onyx train` — progress bar, checkpoints, a stop
# after 5 epochs and an exact resume for the rest — export it, run the exported model with
# `onyx run` in inference mode on the test images, and print the test accuracy computed from
# the run's outputs. Fails (exit 1) when the accuracy is below 95%.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
onyx_install_deps

build=${ONYX_BUILD_DIR:-build} # another build folder may be given, e.g. ONYX_BUILD_DIR=build-asan
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
onyx=$build/onyx
out=$build/demo
data=examples/data
mkdir -p "$out"
rm -rf "$out/ckpt"
start=$(date +%s.%N)

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# Training settings shared by both halves: a resumed run must see the same data in the same
# order (the order of an epoch follows from --seed and the epoch number alone).
train=(train "$out/mlp.onnx" --data "$data/digits_train.csv" --val "$data/digits_test.csv"
       --loss ce --optimizer adam --lr 0.001 --batch-size 32 --shuffle --seed 1
       --checkpoint-dir "$out/ckpt" --checkpoint-every 20 --keep 3)

step $onyx init --layers 64,128,64,10 --activation relu --dropout 0.1 --seed 1 -o "$out/mlp.onnx"

# First 5 epochs, then stop (as if the machine had been switched off after epoch 5).
step $onyx "${train[@]}" --epochs 5
last=$(ls "$out/ckpt"/ckpt-*.zip | sort | tail -n 1)
step $onyx info "$last"

# Resume from the last checkpoint for the remaining epochs, and export the trained model.
step $onyx "${train[@]}" --epochs 20 --resume "$last" -o "$out/digits.onnx"
step ls "$out/ckpt"

# Inference with the exported model, on the test images without their label column.
cut -d, -f1-64 "$data/digits_test.csv" >"$out/test_x.csv"
cut -d, -f65 "$data/digits_test.csv" >"$out/test_y.txt"
step $onyx run "$out/digits.onnx" -i input="$out/test_x.csv" -o "$out/pred" --show 10

# logits.npy: a v1 header (its length in bytes 8-9), then [360, 10] little-endian float32.
npy="$out/pred/logits.npy"
read -r lo hi < <(od -An -tu1 -j8 -N2 "$npy")
offset=$((10 + lo + 256 * hi))
od -An -v -tf4 -w40 -j "$offset" "$npy" |
    paste -d' ' "$out/test_y.txt" - |
    awk -v start="$start" -v end="$(date +%s.%N)" '
        NF != 11 { printf "unexpected line in the logits: %s\n", $0; exit 2 }
        { best = 2; for (i = 3; i <= 11; i++) if ($i > $best) best = i
          total++; if (best - 2 == $1) correct++ }
        END {
            acc = 100 * correct / total
            printf "\ntest accuracy of the exported model (onyx run, inference mode): %.2f%% (%d/%d)\n", acc, correct, total
            printf "demo time after the build: %.1f s\n", end - start
            if (acc < 95) { print "below 95%: FAILED"; exit 1 }
        }'
