#!/usr/bin/env bash
# Builds onyx and runs every test: once in a normal build (warnings are errors) and once more
# under AddressSanitizer + UndefinedBehaviorSanitizer; then the thread-sharing test alone under
# ThreadSanitizer. Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
onyx_install_deps

jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (Release -O3, -Werror) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
echo "== tests =="
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== build (ASan + UBSan) =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DONYX_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under ASan + UBSan =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"

# ThreadSanitizer: only the library and the thread test (one model, sessions in 4 threads), so
# this stays fast. halt_on_error makes any reported race fail the test.
echo "== build (ThreadSanitizer: runtime/test_threads only) =="
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DONYX_TSAN=ON >/dev/null
cmake --build build-tsan -j"$jobs" --target runtime_test_threads
echo "== thread test under ThreadSanitizer =="
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure -R '^runtime/test_threads$'
