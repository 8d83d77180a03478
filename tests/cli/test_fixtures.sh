#!/usr/bin/env bash
# Runs the fixtures of tests/fixtures/ (backend-test layout, outputs from PyTorch or numpy) through
# `onyx test`, in the modes that must match and in one that must not.
set -u
here=$(cd "$(dirname "$0")/../fixtures" && pwd)
onyx=${ONYX_BIN:?ONYX_BIN is set by ctest}
fail=0

expect() { # expect pass|fail MODE CASE...
    local want=$1 mode=$2
    shift 2
    if "$onyx" test --mode "$mode" "$@"; then got=pass; else got=fail; fi
    if [ "$got" != "$want" ]; then
        echo "UNEXPECTED: onyx test --mode $mode $* should $want"
        fail=1
    fi
}

# Inference mode: PyTorch's eval outputs, also for the export that kept training-mode Dropout
# and BatchNormalization.
expect pass infer "$here/torch_mlp_eval" "$here/torch_mlp_train" "$here/function_model" "$here/external_data"
# Graph mode follows the model: the eval export matches, the training export drops and uses
# batch statistics, so it must not.
expect pass graph "$here/torch_mlp_eval" "$here/function_model" "$here/external_data"
expect fail graph "$here/torch_mlp_train"
expect fail train "$here/torch_mlp_train"

# External data is found relative to the model wherever it is run from.
(cd / && "$onyx" test "$here/external_data") || { echo "external data from another cwd failed"; fail=1; }

if [ $fail -eq 0 ]; then echo "fixtures: 6 passed, 0 failed"; else echo "fixtures: failed"; fi
exit $fail
