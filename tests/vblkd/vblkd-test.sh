#!/usr/bin/env bash
# vblkd end to end: the daemon, managed with vblk-ctl, serving vblk-bench
# (the library's vhost-user front-end) with --verify.
#
# Usage: vblkd-test.sh --vblkd PATH --ctl PATH --bench PATH --case CASE
#   exports  two exports (RAM disk with 2 queues, image file) verified at
#            once; grown and verified at the new size; the image shrunk and
#            its file cut; read-only switch; errors for bad requests; the
#            dumped configuration restarts the daemon with the same exports;
#            the Prometheus metrics page (when built with libmicrohttpd); a
#            hostile front-end on one export while the other is verified
#   many     64 exports in one daemon, each verified; RSS per export
#   nbd      an export on the NBD backend (nbdkit's memory plugin) next to a
#            RAM disk, both verified at once; a resize the server has not
#            made is refused with the size the server reports
#            (skipped, 77, without nbdkit or an NBD-enabled build)
# Exit status: 0 pass, 1 fail.
set -euo pipefail

vblkd="" ctl="" bench="" case=""
while [ $# -gt 0 ]; do
  case $1 in
    --vblkd) vblkd=$2; shift 2 ;;
    --ctl) ctl=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --case) case=$2; shift 2 ;;
    *) echo "usage: $0 --vblkd PATH --ctl PATH --bench PATH --case CASE" >&2; exit 2 ;;
  esac
done
[ -n "$vblkd" ] && [ -n "$ctl" ] && [ -n "$bench" ] && [ -n "$case" ] ||
  { echo "usage: $0 --vblkd PATH --ctl PATH --bench PATH --case CASE" >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/vblkd-it.XXXXXX")
shm=$dir
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  shm=$(mktemp -d /dev/shm/vblkd-it.XXXXXX)
fi
export VBLKD_RPC=$dir/rpc.sock
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  [ "$shm" = "$dir" ] || rm -rf "$shm"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL ($case): $*" >&2
  [ -f "$dir/vblkd.log" ] && sed 's/^/  vblkd: /' "$dir/vblkd.log" | tail -n 40 >&2
  exit 1
}

start() { # ARGS...
  local before
  before=$(grep -c "vblkd: ready" "$dir/vblkd.log" 2>/dev/null || true)
  "$vblkd" --rpc "$VBLKD_RPC" "$@" >>"$dir/vblkd.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    [ "$(grep -c "vblkd: ready" "$dir/vblkd.log")" -gt "${before:-0}" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "vblkd exited during start-up"
    sleep 0.05
  done
  fail "vblkd did not start within 5 s"
}

# Stops it with vblk-ctl shutdown; it must exit 0 and remove its sockets.
stop() {
  "$ctl" shutdown >/dev/null || fail "vblk-ctl shutdown failed"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  [ "$rc" -eq 0 ] || fail "vblkd exited with status $rc"
  [ ! -e "$VBLKD_RPC" ] || fail "vblkd left $VBLKD_RPC behind"
  ! ls "$dir"/*.sock >/dev/null 2>&1 || fail "vblkd left export sockets behind: $(ls "$dir"/*.sock)"
}

ctl() { # ARGS...: must succeed
  echo "+ vblk-ctl $*"
  "$ctl" "$@" >"$dir/ctl.out" 2>"$dir/ctl.err" || { cat "$dir/ctl.out" "$dir/ctl.err" >&2; fail "vblk-ctl $* failed"; }
  cat "$dir/ctl.out"
}

ctl_fails() { # PATTERN ARGS...: must fail with PATTERN in its message
  local pat=$1; shift
  echo "+ vblk-ctl $* (must fail)"
  if "$ctl" "$@" >"$dir/ctl.out" 2>"$dir/ctl.err"; then fail "vblk-ctl $* succeeded"; fi
  sed 's/^/  /' "$dir/ctl.err"
  grep -q -- "$pat" "$dir/ctl.err" || fail "vblk-ctl $*: no '$pat' in the message"
}

# bench SOCKET SIZE QUEUES [more args]: a verified run; prints its summary.
bench() {
  local sock=$1 size=$2 nq=$3; shift 3
  "$bench" --socket "$sock" --size "$size" --queues "$nq" --runtime "${RUNTIME:-1}" --verify \
    --rw randrw --bs 4096 --iodepth 16 "$@" >"$sock.out" 2>"$sock.err" || {
    cat "$sock.out" "$sock.err" >&2
    return 1
  }
  grep -q "blocks read back and checked" "$sock.out" || { cat "$sock.out" >&2; return 1; }
}

size_of() { "$ctl" --json show "$1" | sed -n 's/^ *"size":\([0-9]*\).*/\1/p' | tail -n 1; }

case $case in
exports)
  metrics=()
  if "$vblkd" --help | grep -q -- --metrics; then
    metrics=(--metrics 127.0.0.1:0)
  fi
  start --threads 2 -v "${metrics[@]}"
  truncate -s 64M "$shm/disk.img"
  ctl add vhost-user ram0 --socket "$dir/ram0.sock" --memory 64M --queues 2
  ctl add vhost-user img0 --socket "$dir/img0.sock" --image "$shm/disk.img" --serial img0-serial
  ctl list
  grep -q "^ram0 .*64M .* 2 " "$dir/ctl.out" || fail "list does not show ram0 with 64M and 2 queues"
  grep -q "^img0 .*file:$shm/disk.img" "$dir/ctl.out" || fail "list does not show img0's image"

  echo "+ vblk-bench --verify on both exports at once"
  bench "$dir/ram0.sock" 64M 2 & b1=$!
  bench "$dir/img0.sock" 64M 1 & b2=$!
  wait $b1 || fail "vblk-bench on ram0 failed"
  wait $b2 || fail "vblk-bench on img0 failed"
  grep -h "verify" "$dir"/*.sock.out

  ctl stats ram0
  grep -Eq "^ +0 +[01] +[1-9]" "$dir/ctl.out" || fail "queue 0 of ram0 shows no requests or no thread"
  grep -Eq "^ +1 +[01] +[1-9]" "$dir/ctl.out" || fail "queue 1 of ram0 shows no requests or no thread"
  "$ctl" --json stats ram0 | grep -q '"thread":' || fail "stats --json has no thread per queue"
  if [ ${#metrics[@]} -gt 0 ]; then
    port=$(sed -n 's/^vblkd: metrics at .*(port \([0-9]*\)).*/\1/p' "$dir/vblkd.log")
    python3 -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode())' \
      "$port" >"$dir/metrics.txt" || fail "GET /metrics failed"
    grep -E '^vblkd_queue_requests_completed_total\{export="ram0",queue="1",thread="[01]"\} [1-9]' \
      "$dir/metrics.txt" || fail "no completed requests for ram0 queue 1 in the metrics"
    grep -q '^vblkd_export_size_bytes{export="img0"} 67108864$' "$dir/metrics.txt" ||
      fail "no size for img0 in the metrics"
    grep -q '^# TYPE vblkd_queue_errors_total counter$' "$dir/metrics.txt" || fail "no TYPE lines"
  fi

  # A front-end that sends garbage, one that connects and vanishes, and
  # one that floods bad headers, all on ram0 while img0 is verified: ram0
  # drops them, img0 never notices, ram0 serves the next front-end.
  bench "$dir/img0.sock" 64M 1 & b2=$!
  python3 - "$dir/ram0.sock" <<'EOF' || fail "hostile front-ends could not connect"
import socket, struct, sys
for payload in (b"\xff" * 64, b"", struct.pack("<III", 1, 1, 0xFFFFFFF0) + b"x" * 100,
                struct.pack("<III", 3, 5, 0) * 200):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    try:
        s.sendall(payload)
        s.settimeout(2)
        s.recv(64)
    except OSError:
        pass
    s.close()
EOF
  wait $b2 || fail "vblk-bench on img0 failed while ram0 had hostile front-ends"
  bench "$dir/ram0.sock" 64M 2 || fail "ram0 does not serve after the hostile front-ends"
  "$ctl" --json stats ram0 | grep -q '"bad_messages":[1-9]' || fail "ram0 counted no bad messages"

  # Grow both, verify over the new size.
  ctl resize ram0 96M
  ctl resize img0 128M
  [ "$(stat -c %s "$shm/disk.img")" -eq $((128 << 20)) ] || fail "the image did not grow to 128M"
  [ "$(size_of img0)" -eq $((128 << 20)) ] || fail "show img0 does not say 128M"
  bench "$dir/ram0.sock" 96M 2 & b1=$!
  bench "$dir/img0.sock" 128M 1 & b2=$!
  wait $b1 || fail "vblk-bench on the grown ram0 failed"
  wait $b2 || fail "vblk-bench on the grown img0 failed"

  # Shrink the image: the file is cut, the disk is smaller, I/O past the
  # end fails.
  ctl resize img0 32M
  [ "$(stat -c %s "$shm/disk.img")" -eq $((32 << 20)) ] || fail "the image was not cut to 32M"
  bench "$dir/img0.sock" 32M 1 || fail "vblk-bench on the shrunk img0 failed"
  [ "$(stat -c %s "$shm/disk.img")" -eq $((32 << 20)) ] || fail "I/O grew the shrunk image again"
  ctl resize ram0 16M

  # Read-only switch: writes fail with IOERR, reads go on.
  ctl readonly ram0 on
  if "$bench" --socket "$dir/ram0.sock" --runtime 0.3 --rw randwrite --iodepth 4 \
      >"$dir/ro.out" 2>"$dir/ro.err"; then
    fail "writes to a read-only export succeeded"
  fi
  grep -q "IOERR" "$dir/ro.err" || { cat "$dir/ro.err" >&2; fail "no IOERR for writes to a read-only export"; }
  "$bench" --socket "$dir/ram0.sock" --runtime 0.3 --rw randread --iodepth 4 >/dev/null ||
    fail "reads from a read-only export failed"
  ctl readonly ram0 off

  # Bad requests: clear errors, the daemon goes on.
  ctl_fails "exists" add vhost-user ram0 --socket "$dir/x.sock" --memory 1M
  ctl_fails "another export listens" add vhost-user x --socket "$dir/ram0.sock" --memory 1M
  ctl_fails "no export named" resize nope 1G
  ctl_fails "multiple of 512" resize ram0 1000
  ctl_fails "cannot open image" add vhost-user y --socket "$dir/y.sock" --image "$dir/missing.img"
  ctl_fails "unknown method" call no_such_method
  ctl_fails "unknown parameter" call export_list '{"verbose":true}'
  ctl_fails "must be an absolute path" call export_add \
    '{"name":"z","transport":"vhost-user","socket":"rel.sock","backend":{"type":"null","size":512}}'
  # A client that sends half a request and leaves; garbage; then service goes on.
  python3 - "$VBLKD_RPC" <<'EOF' || fail "raw client checks failed"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.send(b'{"jsonrpc":"2.0","meth'); s.close()
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.send(b'}}}\n')
r = s.makefile().readline()
assert '"code":-32700' in r, r
EOF
  ctl info

  # The running configuration restarts the daemon with the same exports.
  "$ctl" dump-config >"$dir/config.json" || fail "dump-config failed"
  cat "$dir/config.json"
  stop
  start --config "$dir/config.json" --threads 2
  ctl list
  grep -q "^ram0 .*16M" "$dir/ctl.out" || fail "ram0 did not come back at 16M"
  grep -q "^img0 .*32M" "$dir/ctl.out" || fail "img0 did not come back at 32M"
  bench "$dir/img0.sock" 32M 1 || fail "vblk-bench after the restart failed"
  ctl del ram0
  ctl del img0
  ctl list
  stop
  ;;
many)
  n=64
  start --threads 2
  rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  for i in $(seq 0 $((n - 1))); do
    "$ctl" add vhost-user "d$i" --socket "$dir/d$i.sock" --memory 16M >/dev/null ||
      fail "adding export d$i failed"
  done
  rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  [ "$("$ctl" list | tail -n +2 | wc -l)" -eq $n ] || fail "list does not show $n exports"
  echo "+ vblk-bench --verify on each of the $n exports, 8 at a time"
  for i in $(seq 0 $((n - 1))); do
    RUNTIME=0.2 bench "$dir/d$i.sock" 16M 1 --iodepth 8 & pids[i]=$!
    if [ $((i % 8)) -eq 7 ]; then
      for j in $(seq $((i - 7)) "$i"); do wait "${pids[j]}" || fail "vblk-bench on d$j failed"; done
    fi
  done
  rss2=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  echo "vblkd RSS: $rss0 KiB empty, $rss1 KiB with $n idle exports ($(((rss1 - rss0) / n)) KiB each)," \
       "$rss2 KiB after a verified run on each ($(((rss2 - rss0) / n)) KiB each, RAM disk data included)"
  "$ctl" info
  stop
  ;;
nbd)
  command -v nbdkit >/dev/null || { echo "SKIP: nbdkit not installed"; exit 77; }
  start --threads 2
  "$ctl" info | grep -q '"nbd"' || { "$ctl" shutdown >/dev/null; wait "$pid"; pid=""; echo "SKIP: vblkd built without the NBD backend"; exit 77; }
  nbdkit --exit-with-parent -U "$dir/nbdkit.s" -f memory 64M >"$dir/nbdkit.log" 2>&1 &
  for _ in $(seq 50); do [ -S "$dir/nbdkit.s" ] && break; sleep 0.1; done
  ctl call export_add '{"name":"net0","transport":"vhost-user","socket":"'"$dir/net0.sock"'",
    "backend":{"type":"nbd","uri":"nbd+unix:///?socket='"$dir/nbdkit.s"'","timeout":10},"queues":2}'
  ctl add vhost-user ram0 --socket "$dir/ram0.sock" --memory 64M
  ctl list
  grep -q "^net0 .*nbd .*64M" "$dir/ctl.out" || fail "list does not show net0 on nbd with 64M"
  bench "$dir/net0.sock" 64M 2 & b1=$!
  bench "$dir/ram0.sock" 64M 1 & b2=$!
  wait $b1 || fail "vblk-bench on the NBD export failed"
  wait $b2 || fail "vblk-bench on the RAM disk failed"
  grep -h "verify" "$dir"/*.sock.out
  ctl_fails "the NBD server reports 67108864 bytes" resize net0 128M
  ctl_fails "cannot open NBD export" call export_add '{"name":"net1","transport":"vhost-user",
    "socket":"'"$dir/net1.sock"'","backend":{"type":"nbd","uri":"nbd+unix:///?socket='"$dir/none.sock"'"}}'
  ctl stats net0
  stop
  ;;
zoned)
  # Emulated zones on a RAM disk and on an image, added with vblk-ctl, each
  # checked by vblk-bench --zoned (states, write pointers, appends racing
  # from both queues); the spec survives dump-config; bad zone options and
  # resizing a zoned export are refused with a message.
  start --threads 2
  truncate -s 64M "$shm/z.img"
  ctl add vhost-user zram --socket "$dir/zram.sock" --memory 64M --queues 2 \
    --zoned zone-size=1M,conv=4,max-open=8,max-active=12
  ctl add vhost-user zimg --socket "$dir/zimg.sock" --image "$shm/z.img" --queues 2 \
    --zoned zone-size=1M,conv=4,max-open=8,max-active=12
  for x in zram zimg; do
    "$bench" --socket "$dir/$x.sock" --zoned --queues 2 --iodepth 16 --timeout 20 \
      >"$dir/$x.out" 2>&1 || { cat "$dir/$x.out" >&2; fail "vblk-bench --zoned on $x failed"; }
    tail -n 2 "$dir/$x.out"
  done
  [ -s "$shm/z.img.zones" ] || fail "no zone metadata next to the image"
  ctl dump-config
  grep -q '"zone_size"' "$dir/ctl.out" || fail "dump-config lost the zone options"
  ctl_fails "cannot change its size" resize zram 128M
  # A shrink the backend refuses leaves the device at its old size too.
  ctl_fails "cannot change its size" resize zram 32M
  [ "$(size_of zram)" = 67108864 ] || fail "a refused shrink changed the size of zram"
  "$bench" --socket "$dir/zram.sock" --zoned --queues 1 --iodepth 4 --timeout 20 \
    >"$dir/zram2.out" 2>&1 || { cat "$dir/zram2.out" >&2; fail "zram no longer works after a refused shrink"; }
  ctl_fails "zone_size" add vhost-user zbad --socket "$dir/zbad.sock" --memory 64M \
    --zoned zone-size=3M
  ctl_fails "does not fit" add vhost-user zbad --socket "$dir/zbad.sock" --memory 64M \
    --zoned zone-size=1M,conv=100
  ctl del zram
  ctl del zimg
  stop
  ;;
*)
  echo "unknown case '$case'" >&2
  exit 2
  ;;
esac
echo "PASS ($case)"
