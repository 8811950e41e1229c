#!/usr/bin/env bash
# Request types checked through vhost-user without a VM.
#
# lifetime: vblk-vhost-user --lifetime answers GET_LIFETIME (the Linux 6.12
# guest driver never sends one), read by vblk-bench --get-lifetime.
#
# secure-erase: SECURE_ERASE of two ranges of a file image (Linux 6.12's
# driver cannot send a valid one through VDUSE, see docs/zoned.md):
# vblk-bench --check-secure-erase reads zeros back, and so does the image
# on this side once the server is gone.
#
# zoned-memory, zoned-image: a zoned vhost-user export: vblk-vhost-user --zoned serves a RAM
# disk or a file image with emulated zones, vblk-bench --zoned checks the
# zone report, the states, the write pointer rules and appends racing from
# two queues (bench/bench_requests.c). For the image, the server is then
# restarted on the same image and metadata file, and a damaged metadata
# record is refused.
#
# Usage: requests-bench.sh --bench PATH --server PATH
#            --case lifetime|secure-erase|zoned-memory|zoned-image
set -euo pipefail

bench="" server="" case=""
while [ $# -gt 0 ]; do
  case $1 in
    --bench) bench=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --case) case=$2; shift 2 ;;
    *) echo "usage: $0 --bench PATH --server PATH --case memory|image" >&2; exit 2 ;;
  esac
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/vblk-requests-it.XXXXXX")
sock=$dir/sock
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

ZONED=zone-size=1M,conv=2,max-open=4,max-active=6,max-append=64K
start() {
  rm -f "$sock"
  "$server" --socket "$sock" --queues 2 --quiet "$@" &
  pid=$!
  # listening, not just bound: the file exists from bind() on
  for _ in $(seq 100); do
    ss -xlH 2>/dev/null | awk -v p="$sock" '$5 == p {f = 1} END {exit !f}' && return 0
    sleep 0.05
  done
  echo "server did not start" >&2
  exit 1
}
stop() { kill "$pid"; wait "$pid" || true; pid=""; }

case $case in
lifetime)
  start --memory 16M --lifetime 2,3,11
  out=$("$bench" --socket "$sock" --get-lifetime --timeout 20)
  echo "$out"
  [ "$out" = "lifetime: pre_eol_info 2, device_lifetime_est_typ_a 3, device_lifetime_est_typ_b 11" ] ||
    { echo "wrong GET_LIFETIME answer" >&2; exit 1; }
  stop
  # Not offered: the bench says so and fails.
  start --memory 16M
  if "$bench" --socket "$sock" --get-lifetime --timeout 20 2>"$dir/err"; then
    echo "GET_LIFETIME worked on a device that does not offer it" >&2; exit 1
  fi
  grep -q "does not offer VIRTIO_BLK_F_LIFETIME" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
  ;;
secure-erase)
  head -c 1M /dev/urandom >"$dir/se.img"
  cp "$dir/se.img" "$dir/se.orig"
  start --image "$dir/se.img" --secure-erase --discard-segments 4
  "$bench" --socket "$sock" --check-secure-erase --timeout 20
  stop
  # blocks 0..7 hold the bench's pattern; 1, 4 and 5 must be zeros, and
  # nothing past the first 32 KiB changed
  for blk in 1 4 5; do
    [ "$(dd if="$dir/se.img" bs=4096 skip=$blk count=1 2>/dev/null | tr -d '\000' | wc -c)" -eq 0 ] ||
      { echo "block $blk of the image is not zeros" >&2; exit 1; }
  done
  cmp -s <(tail -c +32769 "$dir/se.img") <(tail -c +32769 "$dir/se.orig") ||
    { echo "SECURE_ERASE changed the image past its ranges" >&2; exit 1; }
  ;;
zoned-memory)
  start --memory 64M --zoned "$ZONED"
  "$bench" --socket "$sock" --zoned --queues 2 --iodepth 16 --timeout 20
  stop
  ;;
zoned-image)
  truncate -s 64M "$dir/disk.img"
  start --image "$dir/disk.img" --zoned "$ZONED"
  "$bench" --socket "$sock" --zoned --queues 2 --iodepth 16 --timeout 20
  stop
  # The bench leaves every zone empty (ZONE_RESET_ALL): the records say so.
  [ "$(stat -c %s "$dir/disk.img.zones")" -eq $((64 + 16 * 64)) ] ||
    { echo "metadata file has the wrong size" >&2; exit 1; }
  # A restart loads that state: a second run (it needs every zone empty
  # after its ZONE_RESET_ALL) passes, and record 5 holds zone 5's start as
  # its write pointer (u64 at offset 64 + 16 * 5). Write pointers other
  # than the start surviving a restart: tests/test_zoned.c.
  start --image "$dir/disk.img" --zoned "$ZONED"
  "$bench" --socket "$sock" --zoned --queues 1 --iodepth 4 --timeout 20 >/dev/null
  stop
  wp=$(od -An -t u8 -j $((64 + 16 * 5)) -N 8 "$dir/disk.img.zones" | tr -d ' ')
  [ "$wp" -eq $((5 * 2048)) ] || { echo "zone 5 write pointer $wp after reset" >&2; exit 1; }
  # A damaged record is refused at start with a message.
  printf '\x01' | dd of="$dir/disk.img.zones" bs=1 seek=$((64 + 16 * 7 + 2)) conv=notrunc 2>/dev/null
  if "$server" --socket "$sock.2" --zoned "$ZONED" --image "$dir/disk.img" --quiet 2>"$dir/err"; then
    echo "a damaged zone record was accepted" >&2; exit 1
  fi
  grep -q "zone metadata" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
  ;;
*) echo "unknown case $case" >&2; exit 2 ;;
esac
echo "requests-bench $case: PASS"
