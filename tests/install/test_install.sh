#!/usr/bin/env bash
# test_install.sh — onyx installed like any C library and used like one.
#
# Installs the build into a temporary prefix (`cmake --install BUILD --prefix TMP`), checks the
# installed files, the SONAME and that libonyx.so exports exactly the onyx_* functions the
# header declares, then builds each example (examples/embed_*.c) against the installed copy
# four ways — pkg-config shared, pkg-config static, find_package(onyx) with onyx::onyx and with
# onyx::onyx_static — runs them all on a model made by the installed `onyx init` (examples.sh),
# and checks that the four builds print the same.
# Environment (set by ctest): ONYX_SOURCE_DIR, ONYX_BINARY_DIR. Not run in the sanitizer builds:
# programs built the way users build them cannot link to a sanitized libonyx.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install/examples.sh
. "$here/examples.sh"

src=${ONYX_SOURCE_DIR:?}
build=${ONYX_BINARY_DIR:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/onyx-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || {
    cat "$tmp/install.log"
    fail "cmake --install"
}

# ---- the installed files ------------------------------------------------------------------
pc=$(find "$prefix" -name onyx.pc)
[ -n "$pc" ] || fail "no onyx.pc installed"
libdir=$(dirname "$(dirname "$pc")") # <prefix>/lib or <prefix>/lib/<multiarch>
for f in "$prefix/include/onyx.h" "$prefix/bin/onyx" "$libdir/libonyx.a" \
    "$libdir/libonyx.so" "$libdir/libonyx.so.0" "$libdir/libonyx.so.0.1.0" \
    "$libdir/cmake/onyx/onyxConfig.cmake" "$libdir/cmake/onyx/onyxConfigVersion.cmake" \
    "$libdir/cmake/onyx/onyxTargets.cmake" "$libdir/cmake/onyx/onyxStaticTargets.cmake"; do
    [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
[ "$(find "$prefix/include" -type f | wc -l)" -eq 1 ] || fail "more than onyx.h in include/"
readelf -d "$libdir/libonyx.so" | grep -q 'SONAME.*\[libonyx\.so\.0\]' || fail "SONAME is not libonyx.so.0"

# ---- exported symbols: only onyx_*, and exactly the functions the header declares ---------
nm -D --defined-only "$libdir/libonyx.so" | awk '{ print $NF }' | sort >"$tmp/exported.txt"
grep -vE '^(onyx_|_init$|_fini$|_edata$|_end$|__bss_start$)' "$tmp/exported.txt" >"$tmp/foreign.txt" || true
[ -s "$tmp/foreign.txt" ] && fail "libonyx.so exports symbols outside onyx_*: $(tr '\n' ' ' <"$tmp/foreign.txt")"
grep 'ONYX_API' "$prefix/include/onyx.h" | grep -v '#define' |
    grep -oE '\bonyx_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u >"$tmp/declared.txt"
grep '^onyx_' "$tmp/exported.txt" >"$tmp/exported_onyx.txt"
diff "$tmp/declared.txt" "$tmp/exported_onyx.txt" >"$tmp/api.diff" ||
    fail "ONYX_API declarations (<) and exports (>) differ: $(cat "$tmp/api.diff")"
echo "ok: libonyx.so exports $(wc -l <"$tmp/exported_onyx.txt") onyx_* functions and nothing else"

# ---- pkg-config --------------------------------------------------------------------------
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
header_version=$(sed -n 's/^#define ONYX_VERSION_STRING "\(.*\)"$/\1/p' "$prefix/include/onyx.h")
[ "$(pkg-config --modversion onyx)" = "$header_version" ] || fail "onyx.pc version is not $header_version"
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
libs_static=$(pkg-config --static --libs onyx)
for example in embed_infer embed_threads embed_finetune; do
    mkdir -p "$tmp/pc-shared" "$tmp/pc-static"
    # pkg-config's output is meant to be split into words.
    # shellcheck disable=SC2046
    cc "${cflags[@]}" $(pkg-config --cflags onyx) "$src/examples/$example.c" \
        -o "$tmp/pc-shared/$example" $(pkg-config --libs onyx) -pthread ||
        fail "cc $example.c \$(pkg-config --cflags --libs onyx)"
    # --static adds what libonyx.a needs; -l:libonyx.a picks the archive over the .so beside it.
    # shellcheck disable=SC2046,SC2086
    cc "${cflags[@]}" $(pkg-config --cflags onyx) "$src/examples/$example.c" \
        -o "$tmp/pc-static/$example" ${libs_static/-lonyx/-l:libonyx.a} -pthread ||
        fail "cc $example.c \$(pkg-config --static --libs onyx)"
    readelf -d "$tmp/pc-static/$example" | grep -q 'libonyx\.so' && fail "pc-static/$example needs libonyx.so"
done

# ---- find_package(onyx) ------------------------------------------------------------------
cmake -S "$here" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="${cflags[*]}" >"$tmp/cmake.log" 2>&1 || {
    cat "$tmp/cmake.log"
    fail "cmake configure of tests/install/CMakeLists.txt (find_package(onyx))"
}
cmake --build "$tmp/cmake" >>"$tmp/cmake.log" 2>&1 || {
    cat "$tmp/cmake.log"
    fail "cmake --build of the find_package(onyx) project"
}
for example in embed_infer embed_threads embed_finetune; do
    readelf -d "$tmp/cmake/${example}_static" | grep -q 'libonyx\.so' && fail "${example}_static needs libonyx.so"
done

# ---- run them all ------------------------------------------------------------------------
onyx=$prefix/bin/onyx
model=$tmp/mlp.onnx
sample=$src/examples/data/digits_sample.csv
"$onyx" init --layers 64,32,10 --dropout 0.5 --seed 3 -o "$model" >/dev/null

(export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
 run_examples "$tmp/pc-shared" "" "$tmp/out/pc-shared")
run_examples "$tmp/pc-static" "" "$tmp/out/pc-static"
run_examples "$tmp/cmake" "" "$tmp/out/cmake-shared"      # RUNPATH set by CMake
run_examples "$tmp/cmake" "_static" "$tmp/out/cmake-static"
for variant in pc-static cmake-shared cmake-static; do
    diff "$tmp/out/pc-shared/summary.txt" "$tmp/out/$variant/summary.txt" ||
        fail "$variant prints something else than pc-shared"
done
echo "ok: 3 examples x 4 builds (pkg-config shared/static, find_package shared/static) agree"
