#!/usr/bin/env bash
# bench/load.sh — loading a 100 MB model: peak memory (max RSS of `onyx info`, which loads the
# model and prints its summary) against the model's size, and the load time against reading the
# file from a warm cache (dd into a user buffer), medians of 5 alternating runs. Issue #4's
# targets: peak <= ~2x the model, time <= 1.5x the read.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target onyx_cli >/dev/null
model=$BUILD_DIR/bench/m100.onnx
mkdir -p "$(dirname "$model")"
[ -f "$model" ] || "$BUILD_DIR/onyx" init --layers 5000,5000 -o "$model" >/dev/null
size=$(stat -c %s "$model")
cat "$model" >/dev/null # warm the cache
reads=() loads=() rss=()
t=$(mktemp)
trap 'rm -f "$t"' EXIT
for _ in 1 2 3 4 5; do
    /usr/bin/time -o "$t" -f %e dd if="$model" of=/dev/null bs=128M 2>/dev/null
    reads+=("$(tail -n 1 "$t")")
    /usr/bin/time -o "$t" -f "%e %M" "$BUILD_DIR/onyx" info "$model" >/dev/null
    out=$(tail -n 1 "$t")
    loads+=("${out% *}") rss+=("${out#* }")
done
median() { printf '%s\n' "$@" | sort -g | sed -n 3p; }
r=$(median "${reads[@]}") l=$(median "${loads[@]}") m=$(median "${rss[@]}")
awk -v size="$size" -v r="$r" -v l="$l" -v m="$m" 'BEGIN {
    printf "model %.1f MB; peak RSS of onyx info %.1f MB = %.2fx the model\n", size / 1e6, m * 1024 / 1e6, m * 1024 / size
    printf "load %.3f s vs reading the file %.3f s (dd): %.1fx (medians of 5)\n", l, r, (r > 0 ? l / r : 0) }'
