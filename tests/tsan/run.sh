#!/usr/bin/env bash
# ThreadSanitizer stage: builds the threaded tests with -DVBLK_TSAN=ON in
# build-tsan/ (or $VBLK_TSAN_BUILD) and runs them (ctest label "tsan").
# Any data race ThreadSanitizer reports fails the stage.
#
#   tests/tsan/run.sh
#
# Environment: VBLK_TSAN_BUILD (build directory), CC (compiler for a fresh
# build directory), TSAN_OPTIONS (appended to the defaults below).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${VBLK_TSAN_BUILD:-$src/build-tsan}
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

cmake -S "$src" -B "$build" -DVBLK_TSAN=ON -DVBLK_TESTS=ON >/dev/null
targets=(test_threads test_blk_queue)
# vblkd's RPC test exists when json-c was found.
if grep -q '^JSONC_FOUND:INTERNAL=1' "$build/CMakeCache.txt"; then
    targets+=(test_vblkd_rpc)
fi
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >/dev/null

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ctest --test-dir "$build" -L tsan --output-on-failure 2>&1 | tee "$log"; then
    exit 0
fi
# ThreadSanitizer needs its fixed address layout: on kernels with more mmap
# randomisation than it expects it aborts at start-up. Run again without
# address randomisation then.
if grep -q "unexpected memory mapping" "$log" && command -v setarch >/dev/null; then
    echo "tsan/run.sh: retrying without address randomisation (setarch -R)"
    setarch "$(uname -m)" -R ctest --test-dir "$build" -L tsan --output-on-failure
    exit $?
fi
exit 1
