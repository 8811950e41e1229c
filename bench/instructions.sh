#!/usr/bin/env bash
# Device-side instructions per request, counted by callgrind (repeatable,
# unaffected by machine load). The device side is everything under
# vblk_queue_on_kick: pop, validation, translation, decoding, the null backend,
# completion, used-ring writes and notification decisions.
# Usage: bench/instructions.sh BUILD_DIR [split|packed]...
set -euo pipefail
build=${1:?build dir}; shift
rings=${*:-split packed}
bench=$build/bench/vblk-bench
for ring in $rings; do
  out=$(mktemp)
  json=$(valgrind --tool=callgrind --callgrind-out-file="$out" "$bench" --loopback --ring "$ring" \
         --rw randread --bs 4096 --iodepth 128 --runtime 2 --json 2>/dev/null)
  ios=$(sed -n 's/.*"ios":\([0-9]*\).*/\1/p' <<<"$json")
  ir=$(callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk '/vblk_queue_on_kick/ {gsub(",","",$1); if (!v) v=$1} END {print v}')
  # The benchmark's I/O loop, without one-time set-up (arena zeroing, ring
  # allocation) whose share would depend on how many requests ran.
  total=$(callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk '/vblk-bench.c:worker_main/ {gsub(",","",$1); if (!v) v=$1} END {print v}')
  [ -n "$total" ] || total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); if (!v) v=$1} END {print v}')
  rm -f "$out"
  awk -v r="$ring" -v ir="$ir" -v n="$ios" -v t="$total" 'BEGIN {
    printf "%-6s ring: %d requests, device side %.0f instructions/request, whole round trip %.0f\n", r, n, ir / n, t / n }'
done
