#!/usr/bin/env bash
# lib/core and lib/driver must stay freestanding: no OS headers, and the
# compiled objects may only call the compiler's own memory helpers.
set -euo pipefail
src=$1
bad_inc=$(grep -nE '#include <(unistd|pthread|sys/|stdio|stdlib|fcntl|signal|time|poll|linux/|netinet|arpa/|socket)' \
          "$src"/lib/core/*.[ch] "$src"/lib/driver/*.[ch] || true)
if [ -n "$bad_inc" ]; then echo "OS headers in the core:"; echo "$bad_inc"; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$src"/lib/core/*.c "$src"/lib/driver/*.c; do
  cc -std=c11 -O2 -ffreestanding -fno-stack-protector -I "$src/include" -I "$src/lib" -c "$f" -o "$tmp/$(basename "$f").o"
done
ld -r -o "$tmp/core.o" "$tmp"/*.c.o
undef=$(nm -u "$tmp/core.o" | awk 'NF == 2 {print $2}' | sort -u | grep -vxE 'memcpy|memset|memmove|memcmp' || true)
if [ -n "$undef" ]; then echo "core objects depend on: $undef"; exit 1; fi
echo "core is freestanding: only memcpy/memset/memmove/memcmp are referenced"
