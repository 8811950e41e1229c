#!/usr/bin/env bash
# Line and branch coverage of lib/core/ from the unit tests and the fuzz
# corpora, with gcc --coverage and lcov.
#
#   fuzz/coverage.sh [CORPUS_ROOT...]
#
# Builds with -DVBLK_COVERAGE=ON (gcc, -O0 --coverage), which also builds the
# fuzz harnesses as plain replayers (fuzz/standalone_main.c). Then reports
# three numbers for lib/core/:
#   1. fuzz corpora alone: every fuzz/corpus/<target>/ replayed, plus
#      <root>/<target>/ for each CORPUS_ROOT given (e.g. the corpus/
#      directory a `VBLK_FUZZ_WORK=dir fuzz/run N` left behind);
#   2. unit tests alone (ctest -L unit);
#   3. both together.
# An HTML report of (3) is written to $VBLK_COV_BUILD/coverage/index.html.
#
# Environment:
#   VBLK_COV_BUILD   build directory (default: build-cov in the source tree)
#   CC               compiler (default: gcc; lcov reads gcc's .gcda files)
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${VBLK_COV_BUILD:-$src/build-cov}
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
roots=("$@")

for tool in cmake lcov genhtml "${CC:-gcc}"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "coverage.sh: $tool not found" >&2; exit 1; }
done
tests=ON
if ! pkg-config --exists cmocka 2>/dev/null; then
    echo "coverage.sh: cmocka not found, unit tests skipped (Debian: libcmocka-dev)" >&2
    tests=OFF
fi

CC=${CC:-gcc} cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DVBLK_COVERAGE=ON \
    -DVBLK_TESTS=$tests -DVBLK_FUZZ=ON -DVBLK_FUZZ_REPLAY=ON >/dev/null
cmake --build "$build" -j "$jobs" >/dev/null

reset_counters() {
    find "$build" -name '*.gcda' -delete
}

report() { # title [html output directory]
    local title=$1 info=$build/core.info
    echo
    echo "== lib/core coverage: $title"
    # lcov merges the counters of every object built from the same source
    # (shared, static, freestanding check, replayers) line by line.
    lcov --quiet --capture --directory "$build" --include "$src/lib/core/*" \
        --rc lcov_branch_coverage=1 -o "$info" >/dev/null 2>&1
    lcov --summary "$info" --rc lcov_branch_coverage=1 2>&1 |
        grep -E '^ *(lines|functions|branches)' | sed 's/^ */   /'
    if [[ $# -gt 1 ]]; then
        genhtml --quiet --branch-coverage -o "$2" "$info" >/dev/null 2>&1
    fi
}

replay() {
    local t exe n total=0
    for exe in "$build"/fuzz/fuzz_*; do
        [[ -x $exe && -f $exe ]] || continue
        t=$(basename "$exe")
        t=${t#fuzz_}
        local dirs=()
        [[ -d $src/fuzz/corpus/$t ]] && dirs+=("$src/fuzz/corpus/$t")
        for r in "${roots[@]}"; do
            [[ -d $r/$t ]] && dirs+=("$r/$t")
        done
        [[ ${#dirs[@]} -gt 0 ]] || continue
        n=$(find "${dirs[@]}" -maxdepth 1 -type f | wc -l)
        total=$((total + n))
        if ! "$exe" "${dirs[@]}" >/dev/null 2>"$build/replay-$t.log"; then
            echo "coverage.sh: replaying $t failed, see $build/replay-$t.log" >&2
            tail -n 5 "$build/replay-$t.log" >&2
            return 1
        fi
        echo "   replayed $n inputs through fuzz_$t"
    done
    echo "   $total inputs in total"
}

status=0

reset_counters
echo "== replaying fuzz corpora"
replay || status=1
report "fuzz corpora"

if [[ $tests == ON ]]; then
    reset_counters
    echo
    echo "== ctest -L unit"
    if ! ctest --test-dir "$build" -L unit --output-on-failure -j "$jobs" >"$build/ctest.log" 2>&1; then
        echo "coverage.sh: unit tests failed, see $build/ctest.log" >&2
        status=1
    fi
    grep -E 'tests passed|tests failed' "$build/ctest.log" | sed 's/^/   /' || true
    report "unit tests"

    echo
    echo "== replaying fuzz corpora on top"
    replay >/dev/null || status=1
    mkdir -p "$build/coverage"
    report "unit tests + fuzz corpora" "$build/coverage"
    echo
    echo "HTML report: $build/coverage/index.html"
fi
exit $status
