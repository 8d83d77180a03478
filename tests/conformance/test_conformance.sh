#!/usr/bin/env bash
# test_conformance.sh — the ONNX backend test suite through `onyx test --mode graph`.
#
# 1. Every case of must_pass.txt must pass (exit status 1 otherwise, with the failures shown).
# 2. Every case of the whole suite (each folder with a model.onnx under the data root) is run
#    for the record; failures there do not fail this test.
# Prints: conformance: X of Y cases of the whole ONNX suite pass (must-pass list: A of B)
#
# Environment: ONYX_BIN (the onyx command; set by ctest), ONYX_TEST_DATA (default
# /usr/share/libonnx-testdata/data).
set -u

here=$(cd "$(dirname "$0")" && pwd)
onyx=${ONYX_BIN:-onyx}
data=${ONYX_TEST_DATA:-/usr/share/libonnx-testdata/data}

if [ ! -d "$data" ]; then
    echo "test_conformance: $data is missing: install the libonnx-testdata package" \
         "(tools/test.sh installs it)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The summary line "N passed, M failed" of an `onyx test` log, as "N M".
summary() {
    sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1 \2/p' "$1" | tail -n 1
}

# 1. the must-pass list
"$onyx" test --mode graph --root "$data" --list "$here/must_pass.txt" >"$tmp/must.log" 2>&1
must_rc=$?
read -r must_pass must_fail <<<"$(summary "$tmp/must.log")"
if [ -z "${must_pass:-}" ]; then
    echo "test_conformance: onyx test printed no summary line (exit status $must_rc):" >&2
    tail -n 20 "$tmp/must.log" >&2
    exit 1
fi
grep '^FAIL ' "$tmp/must.log"

# 2. the whole suite
{
    echo "root: $data"
    for model in "$data"/*/*/model.onnx; do
        [ -f "$model" ] || continue
        case_dir=${model%/model.onnx}
        echo "${case_dir#"$data"/}"
    done
} >"$tmp/all.txt"
"$onyx" test --mode graph --quiet --list "$tmp/all.txt" >"$tmp/all.log" 2>&1
read -r all_pass all_fail <<<"$(summary "$tmp/all.log")"
if [ -z "${all_pass:-}" ]; then
    echo "test_conformance: onyx test printed no summary line for the whole suite:" >&2
    tail -n 20 "$tmp/all.log" >&2
    exit 1
fi

echo "conformance: $all_pass of $((all_pass + all_fail)) cases of the whole ONNX suite pass" \
     "(must-pass list: $must_pass of $((must_pass + must_fail)))"
if [ "$must_rc" -ne 0 ] || [ "$must_fail" -ne 0 ]; then
    echo "test_conformance: $must_fail must-pass case(s) failed" >&2
    exit 1
fi
exit 0
