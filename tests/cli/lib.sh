# lib.sh — what the CLI test scripts share (sourced after they set $onyx and cd into $tmp):
# counters, running onyx, and the checks. Each script ends with
#   echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]
passed=0
failed=0

ok() { passed=$((passed + 1)); }

bad() {
    failed=$((failed + 1))
    echo "FAILED: $*" >&2
}

# run_cmd ARGS...: runs onyx, leaving $out, $err and $rc.
run_cmd() {
    "$onyx" "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    rc=$?
    out=$(cat "$tmp/stdout")
    err=$(cat "$tmp/stderr")
}

# expect_ok ARGS...: exit status 0 and nothing on stderr.
expect_ok() {
    run_cmd "$@"
    if [ "$rc" -eq 0 ] && [ -z "$err" ]; then ok; else bad "onyx $* -> $rc: $err"; fi
}

# expect_out PATTERN: the last command's stdout contains PATTERN (a fixed string).
expect_out() {
    if printf '%s\n' "$out" | grep -qF -- "$1"; then ok; else bad "stdout lacks '$1': $out"; fi
}

# expect_fail CODE PATTERN ARGS...: exit status CODE, stderr exactly one line that starts
# with "onyx <cmd>: " and contains PATTERN (a fixed string).
expect_fail() {
    local code=$1 pattern=$2
    shift 2
    run_cmd "$@"
    local lines
    lines=$(printf '%s\n' "$err" | wc -l)
    if [ "$rc" -ne "$code" ]; then
        bad "onyx $* -> exit $rc, expected $code (stderr: $err)"
    elif [ "$lines" -ne 1 ]; then
        bad "onyx $* -> $lines lines on stderr, expected 1: $err"
    elif [[ "$err" != "onyx $1: "* ]]; then
        bad "onyx $* -> stderr does not start with 'onyx $1: ': $err"
    elif ! printf '%s\n' "$err" | grep -qF -- "$pattern"; then
        bad "onyx $* -> stderr lacks '$pattern': $err"
    else
        ok
    fi
}

# check COND MESSAGE: counts a shell test.
check() {
    if eval "$1"; then ok; else bad "$2"; fi
}

# write_npy FILE DESCR SHAPE HEX: a v1.0 .npy file (header padded to 64 bytes as numpy does)
# holding the little-endian bytes HEX.
write_npy() {
    local header="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
    local pad=$(((64 - (${#header} + 11) % 64) % 64))
    header="$header$(printf '%*s' "$pad" '')"
    local hlen=$((${#header} + 1))
    {
        printf '\x93NUMPY\x01\x00'
        printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))"
        printf '%s\n' "$header"
        printf "$(printf '%s' "$4" | sed 's/../\\x&/g')"
    } >"$1"
}
