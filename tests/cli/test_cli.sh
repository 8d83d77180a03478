#!/usr/bin/env bash
# test_cli.sh — the onyx command line: init -> info -> run -> test, --help of every command,
# and errors (bad arguments, missing and corrupt files), each one line "onyx <cmd>: ..." on
# stderr with exit status 1 (2 for usage errors).
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

# ---- the top level ------------------------------------------------------------------------
expect_ok --help
expect_out "usage: onyx <command>"
expect_ok --version
expect_out "onyx 0."
run_cmd
if [ "$rc" -eq 2 ]; then ok; else bad "onyx without arguments -> $rc, expected 2"; fi
run_cmd frobnicate
if [ "$rc" -eq 2 ] && [[ "$err" == "onyx: unknown command 'frobnicate'"* ]]; then ok; else
    bad "onyx frobnicate -> $rc: $err"
fi
for cmd in info run test init train export; do
    expect_ok "$cmd" --help
    expect_out "usage: onyx $cmd"
    expect_ok "$cmd" -h
done

# ---- init ---------------------------------------------------------------------------------
expect_ok init --layers 4,8,3 --dropout 0.25 --seed 7 -o mlp.onnx
expect_out "wrote mlp.onnx"
expect_out "67 parameters"
[ -s mlp.onnx ] && ok || bad "init wrote no mlp.onnx"
expect_ok init --layers=4,8,3 --dropout=0.25 --seed=7 --output=mlp2.onnx
cmp -s mlp.onnx mlp2.onnx && ok || bad "the same seed gave different models"
expect_ok init --layers 4,8,3 --dropout 0.25 --seed 8 -o mlp3.onnx
cmp -s mlp.onnx mlp3.onnx && bad "different seeds gave the same model" || ok
expect_ok init --layers 3,5,5,2 --activation tanh -o tanh.onnx
expect_ok init --layers 3,2 --activation sigmoid -o sig.onnx
expect_ok init --layers 3,4,2 --activation gelu -o gelu.onnx

expect_fail 2 "missing --layers" init -o x.onnx
expect_fail 2 "missing -o" init --layers 4,3
expect_fail 2 "at least two widths" init --layers 4 -o x.onnx
expect_fail 2 "--layers must be" init --layers 4,x,3 -o x.onnx
expect_fail 2 "--layers must be" init --layers 4,0,3 -o x.onnx
expect_fail 2 "--layers must be" init --layers 4,,3 -o x.onnx
expect_fail 2 "--layers must be" init --layers 4,3, -o x.onnx
expect_fail 2 "--layers must be" init --layers ' 4,3' -o x.onnx
expect_fail 2 "--layers must be" init --layers 4,99999999999999999999 -o x.onnx
expect_fail 2 "--activation must be" init --layers 4,3 --activation swish -o x.onnx
expect_fail 2 "--dropout must be" init --layers 4,3 --dropout 1 -o x.onnx
expect_fail 2 "--dropout must be" init --layers 4,3 --dropout -0.1 -o x.onnx
expect_fail 2 "--dropout must be" init --layers 4,3 --dropout 0.1x -o x.onnx
expect_fail 2 "--dropout must be" init --layers 4,3 --dropout nan -o x.onnx
expect_fail 2 "--seed must be" init --layers 4,3 --seed -1 -o x.onnx
expect_fail 2 "--seed must be" init --layers 4,3 --seed 1.5 -o x.onnx
expect_fail 2 "--seed must be" init --layers 4,3 --seed 18446744073709551616 -o x.onnx
expect_fail 2 "unknown option --bogus" init --layers 4,3 --bogus -o x.onnx
expect_fail 2 "option --layers needs a value" init --layers
expect_fail 2 "unexpected argument 'extra'" init --layers 4,3 -o x.onnx extra
expect_fail 1 "more than 500000000 parameters" init --layers 100000,100000,100000 -o big.onnx
expect_fail 1 "no/such/dir/x.onnx" init --layers 4,3 -o no/such/dir/x.onnx
[ ! -e x.onnx ] && [ ! -e big.onnx ] && ok || bad "a failed init left a file behind"

# ---- info ---------------------------------------------------------------------------------
expect_ok info mlp.onnx
expect_out "ir_version: 8"
expect_out "producer: onyx"
expect_out "opsets: ai.onnx 17"
expect_out "input: float32 [batch,4]"
expect_out "logits: float32 [batch,3]"
expect_out "nodes: 4"
expect_out "Gemm 2"
expect_out "Relu 1"
expect_out "Dropout 1"
expect_out "dropout: yes"
expect_out "batchnorm: no"
expect_ok info gelu.onnx
expect_out "opsets: ai.onnx 20"
expect_out "Gelu 1"
expect_ok info tanh.onnx
expect_out "Tanh 2"
expect_out "dropout: no"
expect_ok info --json mlp.onnx
expect_out '"inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 4]}]'
expect_out '"has_dropout": true'
expect_out '"ops": {"Gemm": 2, '

expect_fail 2 "missing MODEL" info
expect_fail 2 "one model at a time" info mlp.onnx tanh.onnx
expect_fail 2 "unknown option --yaml" info mlp.onnx --yaml
expect_fail 1 "missing.onnx" info missing.onnx
printf 'this is not an ONNX model\n' >corrupt.onnx
expect_fail 1 "corrupt.onnx" info corrupt.onnx
head -c 100 mlp.onnx >truncated.onnx
expect_fail 1 "truncated.onnx" info truncated.onnx
mkdir -p adir
expect_fail 1 "adir" info adir

# ---- run ----------------------------------------------------------------------------------
# x = [[1, 2, 3, 4], [-1, -2, -3, -4]] as float32
write_npy x.npy '<f4' '(2, 4)' \
    0000803f000000400000404000008040000080bf000000c0000040c0000080c0
write_npy x5.npy '<f4' '(1, 5)' 0000803f0000803f0000803f0000803f0000803f
write_npy xi.npy '<i8' '(1, 4)' 0100000000000000020000000000000003000000000000000400000000000000
expect_ok run mlp.onnx -i x.npy
expect_out "logits: float32 [2,3] = "
infer_out=$out
expect_ok run mlp.onnx -i input=x.npy -o outdir
expect_out "wrote outdir/logits.npy"
[ -s outdir/logits.npy ] && ok || bad "run -o wrote no outdir/logits.npy"
[ "$(head -c 6 outdir/logits.npy | od -An -c | tr -d ' ')" = "223NUMPY" ] && ok ||
    bad "outdir/logits.npy is not a .npy file"
expect_ok run mlp.onnx --input x.npy --format pb --output-dir outdir
expect_out "wrote outdir/logits.pb"
# the graph says inference (no training_mode input): graph mode = infer mode
expect_ok run mlp.onnx -i x.npy --mode graph
[ "$out" = "$infer_out" ] && ok || bad "graph mode differs from infer mode: $out"
# train mode drops units: reproducible for a seed, different across seeds
expect_ok run mlp.onnx -i x.npy --mode train --seed 1
train1=$out
expect_ok run mlp.onnx -i x.npy --mode train --seed 1
[ "$out" = "$train1" ] && ok || bad "train mode with the same seed differs"
expect_ok run mlp.onnx -i x.npy --mode train --seed 2
[ "$out" != "$train1" ] && ok || bad "train mode with seeds 1 and 2 gave the same output"
[ "$train1" != "$infer_out" ] && ok || bad "train mode gave the infer output"
expect_ok run mlp.onnx -i x.npy --show 2
expect_out " ..."

expect_fail 2 "missing MODEL" run
expect_fail 2 "--mode must be" run mlp.onnx -i x.npy --mode eval
expect_fail 2 "--seed must be" run mlp.onnx -i x.npy --seed x
expect_fail 2 "--format must be" run mlp.onnx -i x.npy --format csv
expect_fail 2 "option -i needs a value" run mlp.onnx -i
expect_fail 2 "one model at a time" run mlp.onnx x.npy
expect_fail 1 'missing input "input"' run mlp.onnx
expect_fail 1 "only 1 input" run mlp.onnx -i x.npy -i x.npy
expect_fail 1 "given twice" run mlp.onnx -i input=x.npy -i input=x.npy
expect_fail 1 "nosuch.npy" run mlp.onnx -i nosuch.npy
expect_fail 1 "corrupt.onnx" run corrupt.onnx -i x.npy
expect_fail 1 "missing.onnx" run missing.onnx -i x.npy
expect_fail 1 "input" run mlp.onnx -i x5.npy
expect_fail 1 "input" run mlp.onnx -i xi.npy
expect_fail 1 "nope" run mlp.onnx -i x.npy -i nope=x.npy
printf '\x93NUMPY\x01\x00\x40\x00{' >broken.npy
expect_fail 1 "broken.npy" run mlp.onnx -i broken.npy
expect_fail 1 "notadir" run mlp.onnx -i x.npy -o mlp.onnx/notadir

# Cross-check with numpy when python3 with onnx and numpy is at hand (not required).
if /usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null; then
    if /usr/bin/python3 - <<'EOF'; then ok; else bad "onyx run disagrees with numpy"; fi
import numpy as np, onnx
from onnx import numpy_helper
m = onnx.load("mlp.onnx")
onnx.checker.check_model(m, full_check=True)
w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
x = np.load("x.npy")
h = np.maximum(x @ w["fc0.weight"].T + w["fc0.bias"], 0)
y = h @ w["fc1.weight"].T + w["fc1.bias"]
got = np.load("outdir/logits.npy")
t = onnx.load_tensor("outdir/logits.pb")
assert t.name == "logits"
assert np.allclose(got, y, rtol=1e-5, atol=1e-6), (got, y)
assert np.array_equal(numpy_helper.to_array(t), got)
assert abs(w["fc0.weight"].std() - (2 / 4) ** 0.5) < 0.4
EOF
    if /usr/bin/python3 - <<'EOF'; then ok; else bad "the tanh MLP breaks the ONNX checker"; fi
import onnx
onnx.checker.check_model(onnx.load("tanh.onnx"), full_check=True)
EOF
else
    echo "test_cli: python3 with onnx and numpy not found: skipping the numpy cross-check"
fi

# ---- test ---------------------------------------------------------------------------------
# A backend-style case made by onyx itself: m2's input comes from m1's output (a .pb), and
# its expected output is what onyx computes now.
expect_ok init --layers 4,3 --seed 1 -o m1.onnx
expect_ok run m1.onnx -i x.npy --format pb -o m1out
expect_ok init --layers 3,6,2 --activation tanh --seed 2 -o m2.onnx
mkdir -p cases/good/test_data_set_0 cases/good/test_data_set_1
cp m2.onnx cases/good/model.onnx
cp m1out/logits.pb cases/good/test_data_set_0/input_0.pb
cp m1out/logits.pb cases/good/test_data_set_1/input_0.pb
expect_ok run m2.onnx -i m1out/logits.pb --format pb -o m2out
cp m2out/logits.pb cases/good/test_data_set_0/output_0.pb
cp m2out/logits.pb cases/good/test_data_set_1/output_0.pb
# wrong values: the expected output of another seed
mkdir -p cases/wrong/test_data_set_0
cp cases/good/test_data_set_0/input_0.pb cases/wrong/test_data_set_0/
expect_ok init --layers 3,6,2 --activation tanh --seed 3 -o m3.onnx
expect_ok run m3.onnx -i m1out/logits.pb --format pb -o m3out
cp m2.onnx cases/wrong/model.onnx
cp m3out/logits.pb cases/wrong/test_data_set_0/output_0.pb
# wrong dtype/shape: the input itself as the expected output
mkdir -p cases/shape/test_data_set_0
cp m2.onnx cases/shape/model.onnx
cp m1out/logits.pb cases/shape/test_data_set_0/input_0.pb
cp m1out/logits.pb cases/shape/test_data_set_0/output_0.pb
# a corrupt model, a case without data sets, too many inputs
mkdir -p cases/corrupt/test_data_set_0 cases/nodata cases/extra/test_data_set_0
cp corrupt.onnx cases/corrupt/model.onnx
cp m2.onnx cases/nodata/model.onnx
cp -r cases/good/test_data_set_0/. cases/extra/test_data_set_0/
cp m2.onnx cases/extra/model.onnx
cp m1out/logits.pb cases/extra/test_data_set_0/input_1.pb

run_cmd test cases/good
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^PASS cases/good (max abs diff 0)$' &&
    [ "$(printf '%s\n' "$out" | tail -n 1)" = "1 passed, 0 failed" ]; then ok; else
    bad "test cases/good -> $rc: $out $err"
fi
run_cmd test cases/good cases/wrong cases/shape cases/corrupt cases/nodata cases/extra \
    cases/missing
[ "$rc" -eq 1 ] && ok || bad "test with failing cases -> exit $rc, expected 1"
expect_out "PASS cases/good"
expect_out 'FAIL cases/wrong: test_data_set_0: output 0 "logits": '
expect_out "elements differ"
expect_out 'FAIL cases/shape: test_data_set_0: output 0 "logits" has shape [2,2], expected [2,3]'
expect_out "FAIL cases/corrupt: cases/corrupt/model.onnx"
expect_out "FAIL cases/nodata: cases/nodata: no test_data_set_* folder"
expect_out "FAIL cases/extra: "
expect_out "more input_*.pb files than the model has inputs (1)"
expect_out "FAIL cases/missing: cases/missing: no such folder"
[ "$(printf '%s\n' "$out" | tail -n 1)" = "1 passed, 6 failed" ] && ok ||
    bad "summary line: $(printf '%s\n' "$out" | tail -n 1)"
# the same without fork, in quiet mode
run_cmd test --no-fork -q cases/good cases/wrong cases/corrupt
[ "$rc" -eq 1 ] && ok || bad "test --no-fork -> $rc"
printf '%s\n' "$out" | grep -q '^PASS' && bad "quiet mode printed a PASS line" || ok
expect_out "1 passed, 2 failed"
# a wider tolerance lets the wrong case pass
expect_ok test --rtol 1e9 --atol 1e9 cases/wrong
expect_out "1 passed, 0 failed"

# --list: comments, blank lines, root:, relative to the list's folder, --root overriding it
mkdir -p lists
cat >lists/l1.txt <<'EOF'
# a list
../cases/good   # trailing comment

EOF
expect_ok test --list lists/l1.txt
expect_out "PASS ../cases/good"
cat >lists/l2.txt <<EOF
root: ../cases
good
$tmp/cases/good
wrong
EOF
run_cmd test --list lists/l2.txt
[ "$rc" -eq 1 ] && ok || bad "test --list l2 -> $rc"
expect_out "PASS good"
expect_out "PASS $tmp/cases/good"
expect_out "FAIL wrong"
expect_out "2 passed, 1 failed"
run_cmd test --root "$tmp/cases" --list lists/l2.txt
expect_out "2 passed, 1 failed"
expect_ok test --root cases good

expect_fail 2 "no test cases" test
expect_fail 2 "--mode must be" test --mode fast cases/good
expect_fail 2 "--rtol must be" test --rtol -1 cases/good
expect_fail 2 "--timeout must be" test --timeout 1e3 cases/good
expect_fail 1 "nolist.txt: cannot open" test --list nolist.txt

# A real conformance case, when the ONNX test data is installed.
data=/usr/share/libonnx-testdata/data
if [ -d "$data/node/test_relu" ]; then
    expect_ok test "$data/node/test_relu"
    expect_out "1 passed, 0 failed"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
