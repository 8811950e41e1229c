#!/usr/bin/env bash
# lib/core and lib/driver must stay freestanding: no OS headers, and the
# compiled objects may only call the compiler's own memory helpers. The
# public headers of virtioblk-core must compile with nothing but the
# compiler's own headers, and examples/firmware-poll.c, built freestanding
# with the core, may need nothing else either.
# Usage: [CFLAGS=...] check.sh SRC [CC]   (a cross CC such as
# arm-none-eabi-gcc brings its own ld and nm: arm-none-eabi-ld, -nm)
set -euo pipefail
src=$1 cc=${2:-cc}
read -r -a cflags <<<"${CFLAGS:-}"
ld=ld nm=nm
case $cc in
*-gcc) ld=${cc%gcc}ld nm=${cc%gcc}nm ;;
esac
bad_inc=$(grep -nE '#include <(unistd|pthread|sys/|stdio|stdlib|fcntl|signal|time|poll|linux/|netinet|arpa/|socket)' \
          "$src"/lib/core/*.[ch] "$src"/lib/driver/*.[ch] || true)
if [ -n "$bad_inc" ]; then echo "OS headers in the core:"; echo "$bad_inc"; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$src"/lib/core/*.c "$src"/lib/driver/*.c; do
  "$cc" "${cflags[@]}" -std=c11 -O2 -Wall -Wextra -Werror -ffreestanding -fno-stack-protector \
    -DVBLK_VERSION_STRING=\"check\" -I "$src/include" -I "$src/lib" -c "$f" -o "$tmp/$(basename "$f").o"
done
"$ld" -r -o "$tmp/core.o" "$tmp"/*.c.o
undef=$("$nm" -u "$tmp/core.o" | awk 'NF == 2 {print $2}' | sort -u | grep -vxE 'memcpy|memset|memmove|memcmp' || true)
if [ -n "$undef" ]; then echo "core objects depend on: $undef"; exit 1; fi

# The core's headers, each on its own, with only the compiler's headers.
gcc_inc=$("$cc" -print-file-name=include)
for h in backend blk driver mem ring spec version vq; do
  printf '#include <virtioblk/%s.h>\n' "$h" >"$tmp/h_$h.c"
  "$cc" "${cflags[@]}" -std=c11 -Wall -Wextra -Werror -ffreestanding -nostdinc -isystem "$gcc_inc" \
    -I "$src/include" -c "$tmp/h_$h.c" -o "$tmp/h_$h.o" ||
    { echo "include/virtioblk/$h.h needs more than the freestanding headers"; exit 1; }
done

"$cc" "${cflags[@]}" -std=c11 -O2 -Wall -Wextra -Werror -ffreestanding -fno-stack-protector \
  -I "$src/include" -c "$src/examples/firmware-poll.c" -o "$tmp/firmware.o"
"$ld" -r -o "$tmp/firmware-all.o" "$tmp/firmware.o" "$tmp"/*.c.o
undef=$("$nm" -u "$tmp/firmware-all.o" | awk 'NF == 2 {print $2}' | sort -u | grep -vxE 'memcpy|memset|memmove|memcmp' || true)
if [ -n "$undef" ]; then echo "firmware-poll with the core depends on: $undef"; exit 1; fi
echo "core is freestanding ($cc ${CFLAGS:-}): only memcpy/memset/memmove/memcmp are referenced"
