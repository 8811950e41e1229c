#!/usr/bin/env bash
# rbd-test.sh --case CASE --server PATH [--bench PATH] [--ranges PATH] [--vduse PATH]
#             [--vblkd PATH --ctl PATH]
# Tests vblk-vhost-user --rbd against a real single-node Ceph cluster.
#
# Cases:
#   zeroes     an image in a RADOS namespace (POOL/NAMESPACE/IMAGE): DISCARD
#              and WRITE_ZEROES ranges read back as zeros (vu-ranges), and
#              the same bytes are zeros when read with "rbd export"
#   snapshot   POOL/IMAGE@SNAP is served read-only: the guest sees RO, a
#              write fails with IOERR, the data is the snapshot's, not the
#              image's current data
#   badconfig  no such pool / image / snapshot / namespace, a wrong key, an
#              unknown client id, a missing ceph.conf or keyring, an
#              unreachable monitor: each is one line on stderr, exit status
#              1, within bounded time (10 s for the monitor, 5 s otherwise);
#              vblk-vduse says the same
#   faults     (its own cluster, bluestore) the OSD is stopped and restarted
#              during a verified write run: I/O stalls, resumes, nothing is
#              lost; then the OSD is frozen (SIGSTOP): every request in
#              flight fails with IOERR after --rbd-timeout, none hangs, and
#              I/O works again once the OSD runs
#   vblkd-resize  (--vblkd, --ctl) an RBD export of vblkd resized online:
#              grown under a running verified workload, then shrunk; then the
#              image grown and shrunk with "rbd resize": vblkd follows by
#              itself (librbd's update watch); each time the image has the size, the
#              device reports it, I/O at and past the end fails with IOERR,
#              vblk-bench --verify passes over the whole disk; a snapshot
#              export's resize is refused
#
# The cluster: $VBLK_CEPH_DIR (started by ceph-up.sh, as the ctest fixture
# does) or, when that is unset, a private one under the work directory.
# Exit status: 0 pass, 1 fail.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CASE= SERVER= BENCH= RANGES= VDUSE= VBLKD= CTL=
while [ $# -gt 0 ]; do
  case $1 in
    --vblkd) VBLKD=$2; shift 2 ;;
    --ctl) CTL=$2; shift 2 ;;
    --case) CASE=$2; shift 2 ;;
    --server) SERVER=$2; shift 2 ;;
    --bench) BENCH=$2; shift 2 ;;
    --ranges) RANGES=$2; shift 2 ;;
    --vduse) VDUSE=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "rbd-test.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ -n "$CASE" ] && [ -x "$SERVER" ] || { echo "rbd-test.sh: need --case and --server" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vblk-rbd.XXXXXX")
SOCK=$WORK/sock
PID= OWN_CLUSTER= OSD_STOPPED=
cleanup() {
  [ -z "$OSD_STOPPED" ] || kill -CONT "$OSD_STOPPED" 2>/dev/null || true
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  [ -z "$OWN_CLUSTER" ] || "$HERE/ceph-down.sh" "$OWN_CLUSTER"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say() { echo "rbd-test.sh ($CASE): $*"; }
fail() {
  echo "FAIL ($CASE): $*" >&2
  [ -f "$WORK/server.log" ] && sed 's/^/  server: /' "$WORK/server.log" >&2
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# own_cluster [ENV...]: a private cluster under the work directory.
own_cluster() {
  OWN_CLUSTER=$WORK/ceph
  env "$@" "$HERE/ceph-up.sh" "$OWN_CLUSTER" >/dev/null || fail "ceph-up.sh failed"
  export CEPH_CONF=$OWN_CLUSTER/ceph.conf
}
use_cluster() {
  if [ -n "${VBLK_CEPH_DIR:-}" ] && [ -f "$VBLK_CEPH_DIR/ceph.conf" ]; then
    export CEPH_CONF=$VBLK_CEPH_DIR/ceph.conf
  else
    own_cluster AUTH=cephx IMAGE_SIZE=0
  fi
}

# start ARGS...: starts vblk-vhost-user and waits until it listens.
start() {
  : >"$WORK/server.log"
  "$SERVER" --socket "$SOCK" "$@" >>"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do
    grep -q "attach QEMU" "$WORK/server.log" && [ -S "$SOCK" ] && return 0
    kill -0 "$PID" 2>/dev/null || fail "vblk-vhost-user exited at start"
    sleep 0.05
  done
  fail "vblk-vhost-user did not start within 15 s"
}
stop() {
  local rc=0
  kill -TERM "$PID"
  wait "$PID" || rc=$?
  PID=
  [ "$rc" -eq 0 ] || fail "vblk-vhost-user exited with status $rc after SIGTERM"
}

case $CASE in
zeroes)
  use_cluster
  ns=ns$$ img=zeroes$$
  rbd namespace create rbd/$ns
  rbd create --size 32M "rbd/$ns/$img"
  start --rbd "rbd/$ns/$img" -v
  "$RANGES" "$SOCK" zeroes || fail "vu-ranges failed"
  "$RANGES" "$SOCK" read 0 16777216 >"$WORK/via-vhost-user.bin" || fail "vu-ranges read failed"
  stop
  grep -q "4 discards, 3 write-zeroes" "$WORK/server.log" || fail "the RBD counters do not show the ranges"
  # What librbd stored, read by the rbd tool rather than through us.
  rbd export "rbd/$ns/$img" "$WORK/export.bin" >/dev/null 2>&1 || fail "rbd export failed"
  head -c 16777216 "$WORK/export.bin" | cmp - "$WORK/via-vhost-user.bin" ||
    fail "rbd export differs from what vhost-user read"
  rbd rm --no-progress "rbd/$ns/$img" && rbd namespace rm rbd/$ns
  ;;
snapshot)
  use_cluster
  img=snap$$
  head -c 16777216 /dev/urandom >"$WORK/old.bin"
  rbd import --no-progress "$WORK/old.bin" rbd/$img >/dev/null
  rbd snap create --no-progress rbd/$img@s1 >/dev/null
  # The image moves on after the snapshot.
  rbd bench --io-type write --io-size 4M --io-pattern seq --io-total 8M rbd/$img >/dev/null
  start --rbd "rbd/$img@s1" -v
  grep -q "read-only" "$WORK/server.log" || fail "the snapshot is not served read-only"
  "$RANGES" "$SOCK" read 0 16777216 | cmp - "$WORK/old.bin" || fail "the served data is not the snapshot's"
  rc=0
  "$BENCH" --socket "$SOCK" --rw randwrite --iodepth 1 --runtime 1 >"$WORK/bench.out" 2>&1 || rc=$?
  [ "$rc" -eq 1 ] && grep -q "status 1 (IOERR)" "$WORK/bench.out" ||
    { cat "$WORK/bench.out" >&2; fail "a write to the snapshot did not fail with IOERR"; }
  stop
  rbd snap purge --no-progress rbd/$img >/dev/null && rbd rm --no-progress rbd/$img
  ;;
badconfig)
  use_cluster
  rbd create --size 8M rbd/bad$$
  rbd snap create --no-progress rbd/bad$$@s1 >/dev/null
  conf=$CEPH_CONF
  # A keyring whose client.admin key is not the cluster's.
  keyring=$(sed -n 's/^keyring = //p' "$conf")
  cp "$keyring" "$WORK/wrong.keyring"
  ceph-authtool "$WORK/wrong.keyring" -n client.admin --gen-key >/dev/null
  sed "s|^keyring = .*|keyring = $WORK/wrong.keyring|" "$conf" >"$WORK/wrongkey.conf"
  sed "s|^keyring = .*|keyring = $WORK/missing.keyring|" "$conf" >"$WORK/nokeyring.conf"
  # A monitor address where nothing listens.
  port=$(sed -n 's/^mon host = v2:127.0.0.1:\([0-9]*\)/\1/p' "$conf")
  sed "s|^mon host = .*|mon host = v2:127.0.0.1:$((port + 98))|" "$conf" >"$WORK/nomon.conf"
  # expect SECONDS PATTERN ARGS...: the server must exit with status 1
  # within SECONDS, saying PATTERN in one line.
  expect() {
    local limit=$1 pattern=$2 t rc=0 lines
    shift 2
    t=$(now)
    timeout 60 "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    lines=$(wc -l <"$WORK/err")
    echo "  $(since "$t") s: $(cat "$WORK/err")"
    [ "$rc" -eq 1 ] || fail "'$*' exited with $rc, expected 1"
    [ "$lines" -eq 1 ] || fail "'$*' printed $lines lines on stderr, expected 1"
    grep -q -- "$pattern" "$WORK/err" || fail "'$*': no '$pattern' in the message"
    awk -v a="$t" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a <= l) }' ||
      fail "'$*' took more than $limit s"
    [ ! -e "$SOCK" ] || fail "'$*' left a socket behind"
  }
  S=("$SERVER" --socket "$SOCK")
  expect 5 "pool 'nopool' does not exist" "${S[@]}" --rbd nopool/img
  expect 5 "image 'noimage' does not exist" "${S[@]}" --rbd rbd/noimage
  expect 5 "has no snapshot 'nosnap'" "${S[@]}" --rbd "rbd/bad$$@nosnap"
  expect 5 "namespace 'nons' does not exist" "${S[@]}" --rbd rbd/nons/img
  expect 5 "refused client.admin: permission denied" "${S[@]}" --rbd rbd/bad$$ --ceph-conf "$WORK/wrongkey.conf"
  expect 5 "refused client.nobody" "${S[@]}" --rbd rbd/bad$$ --ceph-id nobody
  expect 5 "no keyring found" "${S[@]}" --rbd rbd/bad$$ --ceph-conf "$WORK/nokeyring.conf"
  expect 5 "cannot read the Ceph configuration $WORK/none.conf" "${S[@]}" --rbd rbd/bad$$ --ceph-conf "$WORK/none.conf"
  expect 5 "expected POOL/IMAGE" "${S[@]}" --rbd rbd//x
  expect 15 "no answer from the Ceph monitors (v2:127.0.0.1:$((port + 98))) within 10 s" \
    "${S[@]}" --rbd rbd/bad$$ --ceph-conf "$WORK/nomon.conf"
  if [ -n "$VDUSE" ]; then
    expect 5 "image 'noimage' does not exist" "$VDUSE" --name rbdbad$$ --rbd rbd/noimage
  fi
  rbd snap purge --no-progress rbd/bad$$ >/dev/null && rbd rm --no-progress rbd/bad$$
  ;;
faults)
  # memstore loses its data when the OSD restarts: bluestore here.
  own_cluster OBJECTSTORE=bluestore IMAGE_SIZE=128M
  osd_pid() { cat "$OWN_CLUSTER/run/osd.0.pid"; }
  osd_up() { ceph osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'; }

  say "the OSD stops and restarts during a verified write run"
  start --rbd rbd/img0 --rbd-timeout 60 -v
  "$BENCH" --socket "$SOCK" --verify --rw randrw --bs 4096 --iodepth 16 --size 64M \
    --runtime 12 --timeout 60 >"$WORK/bench.out" 2>&1 &
  bench=$!
  sleep 3
  osd=$(osd_pid) t=$(now)
  kill -TERM "$osd"
  while kill -0 "$osd" 2>/dev/null; do sleep 0.1; done
  say "  OSD stopped ($(since "$t") s); restarting it in 2 s"
  sleep 2
  ceph-osd -i 0 2>>"$OWN_CLUSTER/log/osd-start.err" || fail "the OSD did not restart"
  rc=0
  wait "$bench" || rc=$?
  sed 's/^/  /' "$WORK/bench.out"
  [ "$rc" -eq 0 ] || fail "vblk-bench --verify failed (status $rc) across the OSD restart"
  grep -q "blocks read back and checked" "$WORK/bench.out" || fail "nothing was verified"
  # The longest request waited for the OSD: the stall was real.
  p999=$(sed -n 's/.*p99.9 \([0-9.]*\) us.*/\1/p' "$WORK/bench.out")
  awk -v v="$p999" 'BEGIN { exit !(v >= 1000000) }' ||
    fail "no request waited a second or more: the OSD restart did not stall I/O"
  stop
  grep -q " 0 errors" "$WORK/server.log" || fail "the server counted errors"

  say "the OSD freezes: requests in flight fail with IOERR after --rbd-timeout 3"
  start --rbd rbd/img0 --rbd-timeout 3 -v
  # Holds the image's exclusive lock before the OSD freezes.
  "$BENCH" --socket "$SOCK" --rw randwrite --iodepth 4 --size 64M --runtime 1 >/dev/null ||
    fail "writes failed before the OSD froze"
  osd=$(osd_pid) mark=$(wc -l <"$WORK/server.log")
  kill -STOP "$osd"
  OSD_STOPPED=$osd
  t=$(now) rc=0
  "$BENCH" --socket "$SOCK" --rw randwrite --iodepth 8 --size 64M --runtime 2 --timeout 60 \
    >"$WORK/bench.out" 2>&1 || rc=$?
  took=$(since "$t")
  sed 's/^/  /' "$WORK/bench.out"
  [ "$rc" -eq 1 ] && grep -q "failed: status 1 (IOERR)" "$WORK/bench.out" ||
    fail "no IOERR while the OSD was frozen (vblk-bench status $rc)"
  awk -v v="$took" 'BEGIN { exit !(v < 15) }' || fail "the IOERR took $took s (timeout 3 s)"
  say "  IOERR after $took s"
  # Every request in flight finishes while the OSD is still frozen: the
  # server drains the queue when the front-end goes away.
  drained() { tail -n "+$((mark + 1))" "$WORK/server.log" | grep -q "stopped at avail \([0-9]*\) used \1$"; }
  for _ in $(seq 150); do drained && break; sleep 0.1; done
  drained || fail "requests still hang in the server with the OSD frozen"
  kill -CONT "$osd"
  OSD_STOPPED=
  for _ in $(seq 100); do osd_up && timeout 20 rbd info rbd/img0 >/dev/null 2>&1 && break; sleep 0.2; done
  "$BENCH" --socket "$SOCK" --verify --rw randrw --iodepth 8 --size 64M --runtime 1 --timeout 30 \
    >"$WORK/bench.out" 2>&1 || { cat "$WORK/bench.out" >&2; fail "I/O does not work after the OSD resumed"; }
  stop
  grep -E "rbd: .* errors \([1-9][0-9]* timed out\)" "$WORK/server.log" | sed 's/^/  /' ||
    fail "the server counted no timed-out request"
  ;;
vblkd-resize)
  [ -x "$VBLKD" ] && [ -x "$CTL" ] || { echo "rbd-test.sh: vblkd-resize needs --vblkd and --ctl" >&2; exit 2; }
  use_cluster
  img=resize$$
  rbd create --size 32M "rbd/$img"
  export VBLKD_RPC=$WORK/rpc.sock
  ctl() { echo "+ vblk-ctl $*"; "$CTL" "$@" >"$WORK/ctl.out" 2>"$WORK/ctl.err" ||
    { cat "$WORK/ctl.out" "$WORK/ctl.err" >&2; fail "vblk-ctl $* failed"; }; cat "$WORK/ctl.out"; }
  size_of() { "$CTL" --json show "$1" | sed -n 's/^ *"size":\([0-9]*\).*/\1/p' | tail -n 1; }
  image_size() { rbd info --format json "rbd/$img" | sed -n 's/.*"size":\([0-9]*\).*/\1/p'; }
  vbench() { # SIZE [ARGS]: verified, over the whole disk
    local sz=$1; shift
    "$BENCH" --socket "$SOCK" --size "$sz" --queues 2 --verify --rw randrw --iodepth 8 \
      --runtime 1 --timeout 30 "$@" >"$WORK/bench.out" 2>&1 ||
      { cat "$WORK/bench.out" >&2; fail "vblk-bench --verify at $sz failed"; }
    grep -h "read back" "$WORK/bench.out"; }
  check_at() { # SIZE
    [ "$(size_of r0)" -eq "$1" ] || fail "export_get says $(size_of r0), not $1"
    [ "$(image_size)" -eq "$1" ] || fail "the image has $(image_size) bytes, not $1"
    "$RANGES" "$SOCK" past-end "$1" || fail "the end is not at $1"; }
  "$VBLKD" --rpc "$VBLKD_RPC" --threads 2 --notify event -v >"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "vblkd: ready" "$WORK/server.log" && break; sleep 0.05; done
  grep -q "vblkd: ready" "$WORK/server.log" || fail "vblkd did not start"
  ctl add vhost-user r0 --socket "$SOCK" --rbd "rbd/$img" --queues 2
  vbench 32M
  check_at $((32 << 20))
  # Grow while a verified run (over the first 32M) is in flight.
  "$BENCH" --socket "$SOCK" --size 32M --queues 2 --verify --rw randrw --iodepth 16 \
    --runtime 3 --timeout 30 >"$WORK/bg.out" 2>&1 & bg=$!
  sleep 1
  ctl resize r0 64M
  wait $bg || { cat "$WORK/bg.out" >&2; fail "the verified run failed across the resize"; }
  grep -h "read back" "$WORK/bg.out"
  check_at $((64 << 20))
  vbench 64M
  # Shrink while writes run over the whole disk: the writes past the new end
  # fail with IOERR (none hangs), the image is cut, vblkd goes on.
  mark=$(wc -l <"$WORK/server.log")
  "$BENCH" --socket "$SOCK" --size 64M --queues 2 --rw randwrite --iodepth 16 \
    --runtime 5 --timeout 20 >"$WORK/bg.out" 2>&1 & bg=$!
  sleep 1
  ctl resize r0 16M
  t0=$(now)
  if wait $bg; then fail "writes past the new end succeeded"; fi
  grep -q "IOERR" "$WORK/bg.out" || { cat "$WORK/bg.out" >&2; fail "no IOERR for writes past the new end"; }
  say "the running writer got IOERR $(since "$t0") s after the shrink: $(grep -m1 IOERR "$WORK/bg.out")"
  # Every request it left in flight completed: both queues stop drained.
  drained() { [ "$(tail -n "+$((mark + 1))" "$WORK/server.log" |
    grep -c "r0: queue [01]: stopped at avail \([0-9]*\) used \1$")" -ge 2 ]; }
  for _ in $(seq 100); do drained && break; sleep 0.1; done
  drained || fail "requests in flight across the shrink did not all complete within 10 s"
  say "both queues drained $(since "$t0") s after the shrink"
  check_at $((16 << 20))
  vbench 16M
  check_at $((16 << 20))
  # Resized by its administrator: vblkd follows (librbd's update watch),
  # growing and shrinking; export_resize without a size finds nothing to do.
  follows() { # SIZE
    for _ in $(seq 100); do [ "$(size_of r0)" -eq "$1" ] && break; sleep 0.1; done
    [ "$(size_of r0)" -eq "$1" ] || fail "vblkd did not follow 'rbd resize' to $1 within 10 s"
    grep "followed the image's resize" "$WORK/server.log" | tail -n 1; }
  rbd resize --no-progress --size 48M "rbd/$img"
  follows $((48 << 20))
  check_at $((48 << 20))
  vbench 48M
  rbd resize --no-progress --allow-shrink --size 40M "rbd/$img"
  follows $((40 << 20))
  check_at $((40 << 20))
  vbench 40M
  ctl resize r0
  check_at $((40 << 20))
  # A snapshot is read-only: its size cannot change.
  rbd snap create --no-progress "rbd/$img@s1"
  ctl add vhost-user r1 --socket "$WORK/snap.sock" --rbd "rbd/$img@s1"
  echo "+ vblk-ctl resize r1 64M (must fail)"
  if "$CTL" resize r1 64M >"$WORK/ctl.out" 2>"$WORK/ctl.err"; then fail "resizing a snapshot succeeded"; fi
  sed 's/^/  /' "$WORK/ctl.err"
  grep -q "read-only" "$WORK/ctl.err" || fail "no 'read-only' in the message"
  "$CTL" shutdown >/dev/null
  wait "$PID" || fail "vblkd exited with an error"
  PID=
  rbd snap purge --no-progress "rbd/$img" && rbd rm --no-progress "rbd/$img"
  ;;
*)
  echo "rbd-test.sh: unknown case '$CASE'" >&2
  exit 2
  ;;
esac
say "PASS"
