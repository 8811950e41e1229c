#!/usr/bin/env bash
# Back-end instructions per request over vhost-user, counted by callgrind
# (repeatable, unaffected by machine load): vblk-vhost-user with a null disk
# runs under callgrind while vblk-bench drives it over the socket; the count
# is everything under vblk_vu_queue_process (kick and wake eventfds, the
# queue lock, the core's run, the transport's checks after it) divided by
# the requests the server completed.
# Usage: bench/vu_instructions.sh BUILD_DIR [split|packed]...
set -euo pipefail
build=${1:?build dir}; shift
rings=${*:-split packed}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for ring in $rings; do
  sock=$dir/vu.sock
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$build/vblk-vhost-user" \
    --socket "$sock" --null 64M -q >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.1; done
  json=$("$build/bench/vblk-bench" --socket "$sock" --ring "$ring" --rw randread --bs 4096 \
         --iodepth 32 --runtime 3 --timeout 60 --json)
  kill -INT "$pid"
  wait "$pid" || true
  ios=$(sed -n 's/.*"ios":\([0-9]*\).*/\1/p' <<<"$json")
  ir=$(callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null |
       awk '/vblk_vu_queue_process/ {gsub(",","",$1); if (!v) v=$1} END {print v}')
  run=$(callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null |
       awk '/[^_]vblk_queue_run/ {gsub(",","",$1); if (!v) v=$1} END {print v}')
  awk -v r="$ring" -v ir="$ir" -v run="$run" -v n="$ios" 'BEGIN {
    printf "%-6s ring: %d requests, vblk_vu_queue_process %.1f instructions/request (core run %.1f, transport %.1f)\n",
           r, n, ir / n, run / n, (ir - run) / n }'
done
