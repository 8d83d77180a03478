#!/usr/bin/env bash
# bench/run.sh — onyx against ONNX Runtime, PyTorch and OpenBLAS, in one run, on this machine.
#
# One command from a fresh Debian 12 machine: installs what is missing (apt-get: the build
# dependencies, libopenblas-dev, python3-torch, python3-numpy, nodejs/npm when there is no node;
# npm: onnxruntime-node 1.30.0 into bench/node_modules, without its install script, which only
# fetches GPU extras), builds onyx in build/, writes the two benchmark MLPs with `onyx init`,
# then times, round after round, onyx, ONNX Runtime and PyTorch in turn, and prints one table of
# ratios (median over rounds of each tool's median latency), then the GEMM table of
# bench_gemm (onyx_gemm_f32_fast against OpenBLAS cblas_sgemm).
#
# Environment: ROUNDS (3), BENCH_TIME (seconds per measurement, 1.0), THREADS (1,2),
# BUILD_DIR (build), BENCH_DIR (models, helpers and raw results: $BUILD_DIR/bench),
# SKIP_GEMM=1, SKIP_TRAIN=1.
# When the CPU has AVX-512, OPENBLAS_CORETYPE=SkylakeX is set for OpenBLAS and PyTorch (which
# uses OpenBLAS): Debian's OpenBLAS 0.3.21 misdetects recent Xeons and falls back to generic
# kernels several times slower.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ROUNDS=${ROUNDS:-3}
BENCH_TIME=${BENCH_TIME:-1.0}
THREADS=${THREADS:-1,2}
BUILD_DIR=${BUILD_DIR:-build}
BENCH_DIR=${BENCH_DIR:-$BUILD_DIR/bench}
PY=/usr/bin/python3 # Debian's python3-torch lives in the system interpreter

# ---- references --------------------------------------------------------------------------------
. tools/deps.sh
extra="libopenblas-dev python3-torch python3-numpy"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || extra="$extra nodejs npm"
# shellcheck disable=SC2086
onyx_install_deps $extra
if [ ! -f bench/node_modules/onnxruntime-node/package.json ]; then
    echo "installing onnxruntime-node 1.30.0 into bench/node_modules"
    npm install --ignore-scripts --no-save --no-package-lock --no-audit --no-fund \
        --prefix bench onnxruntime-node@1.30.0 >/dev/null
fi
if grep -qw avx512f /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=SkylakeX
fi

# ---- onyx and the helpers ------------------------------------------------------------------------
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$jobs" >/dev/null
mkdir -p "$BENCH_DIR"
cflags="-std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Wall -Wextra"
# bench_onyx uses the public API only; the trainer part only if the library has it.
train_note=""
case $BUILD_DIR in /*) build_abs=$BUILD_DIR ;; *) build_abs=$root/$BUILD_DIR ;; esac
lib="-L$build_abs -lonyx -Wl,-rpath,$build_abs"
# shellcheck disable=SC2086
if ! gcc $cflags -DBENCH_TRAIN -Iruntime bench/bench_onyx.c $lib -o "$BENCH_DIR/bench_onyx" \
        2>"$BENCH_DIR/bench_onyx_train.log"; then
    # shellcheck disable=SC2086
    gcc $cflags -Iruntime bench/bench_onyx.c $lib -o "$BENCH_DIR/bench_onyx"
    train_note="onyx training not timed: the library does not provide the trainer yet"
fi
# shellcheck disable=SC2046
gcc $cflags -Iruntime -Iops $(pkg-config --cflags openblas) bench/bench_gemm.c "$BUILD_DIR/libonyx.a" \
    $(pkg-config --libs openblas) -lm -lpthread -o "$BENCH_DIR/bench_gemm"

# ---- models ------------------------------------------------------------------------------------
small_layers=784,512,256,10
big_layers=1024,4096,4096,1024
[ -f "$BENCH_DIR/mlp_small.onnx" ] ||
    "$BUILD_DIR/onyx" init --layers $small_layers --seed 1 -o "$BENCH_DIR/mlp_small.onnx" >/dev/null
[ -f "$BENCH_DIR/mlp_big.onnx" ] ||
    "$BUILD_DIR/onyx" init --layers $big_layers --seed 1 -o "$BENCH_DIR/mlp_big.onnx" >/dev/null

# ---- the machine -------------------------------------------------------------------------------
echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|L2 cache|L3 cache)' | sed 's/  */ /g'
echo "AVX-512: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no);" \
    "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
echo "onyx $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+changes')," \
    "onnxruntime-node $(node -p "require('./bench/node_modules/onnxruntime-node/package.json').version")," \
    "torch $($PY -c 'import torch; print(torch.__version__)'), $(node --version)"

# ---- rounds: each tool in turn ------------------------------------------------------------------
results="$BENCH_DIR/results.txt"
: >"$results"
run_round() {
    local name layers width
    for name in small big; do
        if [ $name = small ]; then layers=$small_layers; else layers=$big_layers; fi
        width=${layers%%,*}
        "$BENCH_DIR/bench_onyx" "$BENCH_DIR/mlp_$name.onnx" --name $name --batch 1,64,256 \
            --threads "$THREADS" --time "$BENCH_TIME" >>"$results"
        node bench/ort_bench.js "$BENCH_DIR/mlp_$name.onnx" --name $name --width "$width" \
            --batch 1,64,256 --threads "$THREADS" --time "$BENCH_TIME" >>"$results"
        $PY bench/torch_bench.py --name $name --layers $layers --batch 1,64,256 \
            --threads "$THREADS" --time "$BENCH_TIME" >>"$results"
        if [ -z "${SKIP_TRAIN:-}" ]; then
            if [ -z "$train_note" ]; then
                "$BENCH_DIR/bench_onyx" "$BENCH_DIR/mlp_$name.onnx" --name $name --batch 64 \
                    --threads "$THREADS" --time "$BENCH_TIME" --train >>"$results" ||
                    echo "onyx training failed on mlp_$name (see above)" >&2
            fi
            $PY bench/torch_bench.py --name $name --layers $layers --batch 64 \
                --threads "$THREADS" --time "$BENCH_TIME" --train >>"$results"
        fi
    done
}
for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r of $ROUNDS" >&2
    run_round
done

echo
echo "== MLPs: median latency in ms (median over $ROUNDS rounds); ratio = reference / onyx," \
    "above 1 means onyx is faster"
echo "   small = 784-512-256-10, big = 1024-4096-4096-1024, relu, float32; command: bench/run.sh"
[ -n "$train_note" ] && echo "   $train_note"
$PY - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 9 or f[0] != "RESULT":
        continue
    tool, name, mode, batch, threads, med = f[1], f[2], f[3], int(f[4]), int(f[5]), float(f[6])
    rows.setdefault((name, mode, batch, threads, tool), []).append(med)
def get(name, mode, batch, threads, tool):
    v = rows.get((name, mode, batch, threads, tool))
    return statistics.median(v) if v else None
keys = sorted({k[:4] for k in rows}, key=lambda k: (k[0] != "small", k[1], k[3], k[2]))
fmt = "{:<6} {:<6} {:>5} {:>7} {:>10} {:>10} {:>10} {:>9} {:>10}"
print(fmt.format("model", "mode", "batch", "threads", "onyx", "ORT", "PyTorch", "ORT/onyx",
                 "torch/onyx"))
for name, mode, batch, threads in keys:
    o, r, t = (get(name, mode, batch, threads, x) for x in ("onyx", "ort", "torch"))
    cell = lambda v: "-" if v is None else f"{v:.3f}"
    ratio = lambda v: "-" if v is None or o is None else f"{v / o:.2f}"
    print(fmt.format(name, mode, batch, threads, cell(o), cell(r), cell(t), ratio(r), ratio(t)))
EOF

if [ -z "${SKIP_GEMM:-}" ]; then
    echo
    echo "== GEMM C = A B, square float32: GFLOP/s, median of 5 turns per library (each the" \
        "best of 3 calls), alternating (command: $BENCH_DIR/bench_gemm --portable)"
    "$BENCH_DIR/bench_gemm" --portable
fi
