#!/usr/bin/env bash
# Back-end instructions per request over vhost-user, counted by callgrind
# (repeatable, unaffected by machine load): vblk-vhost-user with a null disk
# runs under callgrind while vblk-bench drives it over the socket; the count
# is everything under vblk_vu_queue_process (kick and wake eventfds, the
# queue lock, the core's run, the transport's checks after it) divided by
# the requests the server completed. Batches are large under callgrind, so
# a cost per queue run shows up divided by the requests of a run; see
# docs/security.md ("Cost on the datapath") for reading the check itself.
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
  ann() { callgrind_annotate "$@" "$dir/cg.out" 2>/dev/null; }
  ir=$(ann --inclusive=yes | awk '/vblk_vu_queue_process/ {gsub(",","",$1); if (!v) v=$1} END {print v}')
  # Calls of vblk_vu_queue_process (by the server's workers): queue runs.
  runs=$(ann --auto=no --tree=calling --threshold=100 |
         sed -n 's/^.*>  *[^ ]*:vblk_vu_queue_process (\([0-9,]*\)x).*$/\1/p' | head -n 1 | tr -d ,)
  awk -v r="$ring" -v ir="$ir" -v runs="$runs" -v n="$ios" 'BEGIN {
    printf "%-6s ring: %d requests in %d queue runs, %.1f instructions/request under vblk_vu_queue_process\n",
           r, n, runs, ir / n }'
done
