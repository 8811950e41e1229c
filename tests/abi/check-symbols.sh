#!/usr/bin/env bash
# The exported ABI is exactly what the headers declare and the linker map
# lists: every function declared in include/virtioblk/*.h (static inline
# helpers aside) is in the build's linker map (lib/libvirtioblk.map less
# the optional backends not built, see CMakeLists.txt) and exported by the shared
# library under a version node, and nothing else is exported.
# Usage: check-symbols.sh MAP LIBRARY HEADER...
set -euo pipefail
map=$1 lib=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declarations: lines that start a non-static, non-typedef declaration, in
# the headers this build installs (optional backends add theirs).
for h in "$@"; do
  grep -hE '^[a-z].*\bvblk_[a-z0-9_]+\(' "$h" | grep -vE '^(static|typedef)' \
    | grep -oE 'vblk_[a-z0-9_]+\(' | sed 's/($//' || true
done | sort -u > "$tmp/declared"
sed -n 's/^ *\(vblk_[a-z0-9_]*\);$/\1/p' "$map" | sort -u > "$tmp/map"
nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' > "$tmp/raw"
sed 's/@.*//' "$tmp/raw" | sort -u > "$tmp/exported"

fail=0
report() {  # report WHAT FILE
  if [ -s "$2" ]; then echo "$1:"; sed 's/^/  /' "$2"; fail=1; fi
}
comm -23 "$tmp/declared" "$tmp/map" > "$tmp/d1"; report "declared in a header but missing from the map" "$tmp/d1"
comm -13 "$tmp/declared" "$tmp/map" > "$tmp/d2"; report "in the map but declared in no header" "$tmp/d2"
comm -23 "$tmp/declared" "$tmp/exported" > "$tmp/d3"; report "declared but not exported" "$tmp/d3"
comm -13 "$tmp/declared" "$tmp/exported" > "$tmp/d4"; report "exported but not declared" "$tmp/d4"
grep -v '@@\?VBLK_[0-9]' "$tmp/raw" > "$tmp/d5" || true; report "exported without a version node" "$tmp/d5"
[ $fail -eq 0 ] || exit 1
echo "ABI: $(wc -l < "$tmp/exported") functions, each declared, listed in the map and versioned"
