#!/usr/bin/env bash
# Checks that docs/security.md and the tests agree about the attack
# catalogue: every case the catalogue names (the last column of its
# tables) is a test function in tests/test_*.c that its program registers
# with cmocka, and every test file the page mentions exists.
#
#   tests/attack_cases.sh [SOURCE_DIR]
set -euo pipefail

src=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
doc=$src/docs/security.md
[[ -f $doc ]] || { echo "attack_cases: $doc not found" >&2; exit 1; }

# The case names: backticked identifiers in the last column of the tables
# whose last column is headed "Test", from "## Attack catalogue" to the
# next "## " heading.
mapfile -t cases < <(awk '
    /^## Attack catalogue/ { on = 1; next }
    /^## / { on = 0 }
    !on { next }
    /^\|/ {
        row = $0
        sub(/\|[ \t]*$/, "", row)
        last = row
        sub(/.*\|/, "", last)
        if (!intable) { intable = 1; cases = (last ~ /^[ \t]*Test[ \t]*$/); next }
        if (cases) print last
        next
    }
    { intable = 0; cases = 0 }
' "$doc" | grep -oE '`[a-z_][a-z0-9_]*`' | tr -d '`' | sort -u)
if [[ ${#cases[@]} -lt 50 ]]; then
    echo "attack_cases: only ${#cases[@]} case names found in $doc; has the table format changed?" >&2
    exit 1
fi

shopt -s nullglob
sources=("$src"/tests/test_*.c)
missing=0
for c in "${cases[@]}"; do
    if ! grep -qE "^static void $c\(void \*\*state\)" "${sources[@]}"; then
        echo "attack_cases: docs/security.md names $c, which no tests/test_*.c defines" >&2
        missing=$((missing + 1))
    elif ! grep -qE "cmocka_unit_test[a-z_]*\($c[,)]" "${sources[@]}"; then
        echo "attack_cases: $c is defined but never registered with cmocka" >&2
        missing=$((missing + 1))
    fi
done

# Test files the page refers to.
while read -r f; do
    if [[ ! -e $src/$f ]]; then
        echo "attack_cases: docs/security.md refers to $f, which does not exist" >&2
        missing=$((missing + 1))
    fi
done < <(grep -oE 'tests/[A-Za-z0-9_./-]+\.(c|h|sh)' "$doc" | sort -u)

if [[ $missing -gt 0 ]]; then
    exit 1
fi
echo "attack_cases: all ${#cases[@]} cases named in docs/security.md exist"
