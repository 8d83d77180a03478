#!/usr/bin/env bash
# bench/load.sh — loading a 100 MB model (`onyx init --layers 5000,5000`: one 5000x5000 float
# Gemm) with `onyx info`, which loads it through onyx_model_load and prints its summary, against
# reading the same file from a warm cache with dd into a user buffer. Both are whole processes
# timed the same way (wall clock in ms, medians of RUNS alternating runs); the peak memory is
# the max RSS of `onyx info`. Issue #4's targets: load <= 1.5x the read, peak <= ~2x the model.
#   BUILD_DIR (build): a Release build is configured and built there.  RUNS (7).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
RUNS=${RUNS:-7}
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target onyx_cli >/dev/null
model=$BUILD_DIR/bench/m100.onnx
mkdir -p "$(dirname "$model")"
[ -f "$model" ] || "$BUILD_DIR/onyx" init --layers 5000,5000 -o "$model" >/dev/null
size=$(stat -c %s "$model")
"$BUILD_DIR/onyx" info "$model" >/dev/null # loads, and warms the cache
t=$(mktemp)
trap 'rm -f "$t"' EXIT

# Runs "$@" under /usr/bin/time; prints "<wall ms> <max RSS KiB>".
timed() {
    local t0=$EPOCHREALTIME
    /usr/bin/time -o "$t" -f %M "$@" >/dev/null 2>&1
    local t1=$EPOCHREALTIME
    echo "$(((${t1/./} - ${t0/./}) / 1000)) $(tail -n 1 "$t")"
}
reads=() loads=() rss=()
for _ in $(seq "$RUNS"); do
    r=$(timed dd if="$model" of=/dev/null bs=128M)
    reads+=("${r% *}")
    l=$(timed "$BUILD_DIR/onyx" info "$model")
    loads+=("${l% *}") rss+=("${l#* }")
done
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
r=$(median "${reads[@]}") l=$(median "${loads[@]}") m=$(median "${rss[@]}")
awk -v size="$size" -v r="$r" -v l="$l" -v m="$m" -v n="$RUNS" -v path="$model" 'BEGIN {
    printf "model %s: %.1f MB\n", path, size / 1e6
    printf "read the file (dd, warm cache): %4d ms (median of %d)\n", r, n
    printf "load it (onyx info):            %4d ms (median of %d) = %.2fx the read (target <= 1.5x)\n", l, n, (r > 0 ? l / r : 0)
    printf "peak RSS of onyx info:          %.1f MB = %.2fx the model (target <= ~2x)\n", m * 1024 / 1e6, m * 1024 / size }'
