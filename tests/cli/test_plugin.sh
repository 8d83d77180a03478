#!/usr/bin/env bash
# test_plugin.sh — `--plugin` of `onyx run`, `onyx test` and `onyx train` with the example plugin
# (examples/plugin_swish.c, built as libplugin_swish.so) on tests/fixtures/plugin/swish_mlp, whose
# expected output numpy computed: without the plugin every command fails naming the nodes and
# asking whether the plugin is loaded; with it the model runs and matches, trains (the loss
# falls) and its export runs again; the plugin built for ABI version 999, a missing file and a
# file that is not a shared library are refused with one clear line each.
#
# Environment: ONYX_BIN, ONYX_SOURCE_DIR and ONYX_BINARY_DIR (where the plugins are), set by ctest.
set -u
cli_dir=$(cd "$(dirname "$0")" && pwd)

onyx=${ONYX_BIN:?ONYX_BIN must name the onyx command}
src=${ONYX_SOURCE_DIR:?ONYX_SOURCE_DIR must name the source tree}
bin=${ONYX_BINARY_DIR:?ONYX_BINARY_DIR must name the build tree}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
# shellcheck source=lib.sh
. "$cli_dir/lib.sh"

plugin=$bin/libplugin_swish.so
abi999=$bin/libplugin_swish_abi999.so
case_dir=$src/tests/fixtures/plugin/swish_mlp
model=$case_dir/model.onnx
x=$case_dir/test_data_set_0/input_0.pb

# without the plugin
expect_fail 1 'node "s1" (Swish, domain "com.example", opset 1) (is its plugin loaded?)' \
    run "$model" -i "$x"
run_cmd test "$case_dir"
check '[ "$rc" -eq 1 ] && [[ "$out" == *"FAIL "*"(is its plugin loaded?)"* ]]' \
    "onyx test without the plugin: $rc $out"

# with it: the numpy output (onyx test), and the values printed by onyx run
expect_ok test "$case_dir" --plugin "$plugin"
expect_out "PASS $case_dir"
expect_out "1 passed, 0 failed"
expect_ok run "$model" -i "$x" --plugin "$plugin" -o outs
expect_out "y: float32 [5,1] = "
check '[ -s outs/y.npy ]' "onyx run -o wrote no outs/y.npy"
# a plugin file named without '/' is taken from the current folder
cp "$plugin" libswish.so
expect_ok run "$model" -i "$x" --plugin libswish.so
expect_out "y: float32 [5,1] = "
# --verbose shows what the library logs
run_cmd run "$model" -i "$x" --plugin "$plugin" --verbose
check '[ "$rc" -eq 0 ] && [[ "$err" == *"onyx run: info: plugin $plugin: loaded, 1 op: com.example.Swish"* ]] && [[ "$err" == *"loaded: 5 nodes (2 custom)"* ]]' \
    "onyx run --verbose: $rc $err"

# plugins that cannot be used
expect_fail 1 "plugin $abi999: a custom op was built for plugin ABI version 999, but this onyx" \
    run "$model" -i "$x" --plugin "$abi999"
expect_fail 1 "has plugin ABI version 1" test "$case_dir" --plugin "$abi999"
expect_fail 1 "plugin $tmp/none.so: cannot load it: " run "$model" -i "$x" --plugin "$tmp/none.so"
expect_fail 1 "plugin $model: cannot load it: " run "$model" -i "$x" --plugin "$model"
expect_fail 2 "--plugin" run "$model" -i "$x" --plugin

# training through the plugin's backward: y = mean of the features
awk 'BEGIN { srand(3); for (i = 0; i < 64; i++) { a = 2 * rand() - 1; b = 2 * rand() - 1
             c = 2 * rand() - 1; d = 2 * rand() - 1
             printf "%.4f,%.4f,%.4f,%.4f,%.4f\n", a, b, c, d, (a + b + c + d) / 4 } }' >mean.csv
expect_fail 1 "(is its plugin loaded?)" train "$model" --data mean.csv --loss mse
expect_ok train "$model" --data mean.csv --loss mse --optimizer adam --lr 0.02 --epochs 40 \
    --batch-size 16 --json --plugin "$plugin" -o trained.onnx
first=$(printf '%s\n' "$out" | grep -m1 train_loss | sed 's/.*"train_loss":\([^,}]*\).*/\1/')
last=$(printf '%s\n' "$out" | grep train_loss | tail -n 1 | sed 's/.*"train_loss":\([^,}]*\).*/\1/')
check 'awk -v a="$first" -v b="$last" "BEGIN { exit !(b < 0.2 * a) }"' \
    "mse loss did not fall through the plugin's backward: $first -> $last"
expect_ok run trained.onnx -i "$x" --plugin "$plugin"
expect_out "y: float32 [5,1] = "
run_cmd train "$model" --data mean.csv --loss mse --epochs 1 --plugin "$plugin" --verbose
check '[ "$rc" -eq 0 ] && [[ "$err" == *"training 6 parameter tensors (26 values); 0 left frozen"* ]]' \
    "onyx train --verbose: $rc $err"
expect_fail 1 "built for plugin ABI version 999" train "$model" --data mean.csv --loss mse \
    --plugin "$abi999"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
