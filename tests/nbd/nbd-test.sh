#!/usr/bin/env bash
# NBD backend tests against a real nbdkit started here on a UNIX socket.
#
# Usage: nbd-test.sh --bench PATH --server PATH --check PATH --ranges PATH --case CASE
#   vu-{split,packed}-{1q,2q}      vblk-bench --verify through vhost-user to
#                                  vblk-vhost-user --nbd (one connection per
#                                  queue: nbdkit advertises multi-conn)
#   vu-shared-{split,packed}-2q    the same with multi-conn turned off in
#                                  nbdkit: both queues share one connection
#   vu-ranges                      DISCARD / WRITE_ZEROES through vhost-user
#                                  read back as zeros (vu-ranges), and what
#                                  the driver reads matches what nbdkit has
#   ops                            discard / write-zeroes read back as zeros,
#                                  flush, scattered buffers, splitting at the
#                                  server's maximum block size (nbd-check)
#   fault-kill                     nbdkit killed and restarted during a
#                                  verified run (nbd-check fault)
#   fault-stop                     nbdkit stopped longer than the request
#                                  timeout, then continued
#   badconfig                      bad URI, nothing listening, unknown
#                                  export, a server that never answers: one
#                                  clear line, fast
#   vblkd-resize                   (--vblkd, --ctl) online resize of NBD
#                                  exports in vblkd over nbdkit's file plugin,
#                                  one with a connection per queue, one with a
#                                  shared connection: a resize the server has
#                                  not made is refused with its size; the file
#                                  grown under a running verified workload,
#                                  then shrunk, then grown with no size given
#                                  (follow the server); each time the capacity
#                                  is checked, I/O at and past the end fails
#                                  with IOERR, vblk-bench --verify passes, and
#                                  the file keeps the size the server gave it;
#                                  shrinking under reads; a resize against a
#                                  stopped server fails within the connect
#                                  timeout and changes nothing
# Exit status: 0 pass, 1 fail.
set -euo pipefail

bench="" server="" check="" ranges="" case="" vblkd="" ctl=""
while [ $# -gt 0 ]; do
  case $1 in
    --vblkd) vblkd=$2; shift 2 ;;
    --ctl) ctl=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --check) check=$2; shift 2 ;;
    --ranges) ranges=$2; shift 2 ;;
    --case) case=$2; shift 2 ;;
    *) echo "usage: $0 --bench PATH --server PATH --check PATH --ranges PATH --case CASE" >&2; exit 2 ;;
  esac
done
[ -n "$bench" ] && [ -n "$server" ] && [ -n "$check" ] && [ -n "$ranges" ] && [ -n "$case" ] || {
  echo "usage: $0 --bench PATH --server PATH --check PATH --ranges PATH --case CASE" >&2; exit 2; }
command -v nbdkit >/dev/null || { echo "FAIL: nbdkit is not installed (scripts/deps.sh test)" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/vblk-nbd.XXXXXX")
# The file plugin's image lives on tmpfs when there is one.
shm=$dir
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  shm=$(mktemp -d /dev/shm/vblk-nbd.XXXXXX)
fi
nsock=$dir/nbd.sock vsock=$dir/vu.sock pidfile=$dir/nbdkit.pid
uri="nbd+unix:///?socket=$nsock"
pid=""
nbdkit_pids() { cat "$pidfile" 2>/dev/null || true; }
cleanup() {
  if [ -n "${kpids:-}" ]; then kill $kpids 2>/dev/null || true; fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  local p
  p=$(nbdkit_pids)
  if [ -n "$p" ]; then kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; fi
  rm -rf "$dir"
  [ "$shm" = "$dir" ] || rm -rf "$shm"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL ($case): $*" >&2
  [ -f "$dir/server.log" ] && sed 's/^/  server: /' "$dir/server.log" >&2
  [ -f "$dir/nbdkit.log" ] && sed 's/^/  nbdkit: /' "$dir/nbdkit.log" >&2
  exit 1
}

# nbdkit in the background, its messages in nbdkit.log (the pid file appears
# when it is ready).
start_nbdkit() { # nbdkit arguments after the socket options
  rm -f "$nsock" "$pidfile"
  # nbdkit ends with its parent: this shell, which outlives the case.
  nbdkit -f -U "$nsock" -P "$pidfile" "$@" >>"$dir/nbdkit.log" 2>&1 &
  for _ in $(seq 200); do [ -s "$pidfile" ] && return 0; sleep 0.02; done
  fail "nbdkit wrote no pid file"
}
stop_nbdkit() {
  local p; p=$(nbdkit_pids)
  [ -n "$p" ] && kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.02; done
  rm -f "$pidfile" "$nsock"
}

listening() { ss -xlH 2>/dev/null | awk -v p="$vsock" '$5 == p {f = 1} END {exit !f}'; }

start_server() {
  "$server" --socket "$vsock" "$@" >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    listening && return 0
    kill -0 "$pid" 2>/dev/null || fail "the server exited during start-up"
    sleep 0.1
  done
  fail "the server did not listen on $vsock within 10 s"
}

stop_server() {
  kill -0 "$pid" 2>/dev/null || fail "the server died during the test"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  [ "$rc" -eq 0 ] || fail "the server exited with status $rc after SIGTERM"
}

run_bench() {
  echo "+ vblk-bench --socket SOCK $*"
  local rc=0
  "$bench" --socket "$vsock" --runtime 1 "$@" >"$dir/out" 2>"$dir/err" || rc=$?
  cat "$dir/out"
  sed 's/^/  stderr: /' "$dir/err"
  [ "$rc" -eq 0 ] || fail "vblk-bench exited with status $rc"
}

verify_all() { # RING QUEUES
  local common=(--ring "$1" --queues "$2" --size 64M --verify)
  run_bench "${common[@]}" --rw randrw --bs 4096 --iodepth 16
  grep -q "blocks read back and checked" "$dir/out" || fail "no blocks were verified"
  run_bench "${common[@]}" --rw randread --bs 16384 --iodepth 8
  run_bench "${common[@]}" --rw write --bs 131072 --iodepth 4
}

# Runs the server with ARGS, expecting it to fail at start-up with a
# message matching PATTERN within SECONDS.
expect_refused() { # PATTERN SECONDS ARGS...
  local pat=$1 limit=$2; shift 2
  local t0 t1 rc=0
  t0=$(date +%s%N)
  timeout 30 "$server" --socket "$vsock" "$@" >"$dir/bad.out" 2>"$dir/bad.err" || rc=$?
  t1=$(date +%s%N)
  local ms=$(( (t1 - t0) / 1000000 ))
  echo "+ vblk-vhost-user $* -> status $rc in $ms ms: $(head -1 "$dir/bad.err")"
  [ "$rc" -eq 1 ] || fail "expected status 1, got $rc"
  grep -Eq "$pat" "$dir/bad.err" || fail "no message matching '$pat'"
  [ "$(grep -c . "$dir/bad.err")" -eq 1 ] || fail "expected one line of error, got: $(cat "$dir/bad.err")"
  [ "$ms" -le $((limit * 1000)) ] || fail "took $ms ms, more than $limit s"
}

case $case in
  vu-split-*q | vu-packed-*q | vu-shared-*-2q)
    IFS=- read -r -a parts <<<"$case"
    nq=${parts[-1]%q} ring=${parts[-2]}
    if [ "${parts[1]}" = shared ]; then
      start_nbdkit --filter=multi-conn memory 128M multi-conn-mode=disable
    else
      start_nbdkit memory 128M
    fi
    start_server --nbd "$uri" --queues "$nq" -q
    verify_all "$ring" "$nq"
    stop_server
    ;;
  vu-ranges)
    start_nbdkit memory 16M
    start_server --nbd "$uri" -q
    "$ranges" "$vsock" zeroes || fail "vu-ranges failed"
    "$ranges" "$vsock" read 0 16777216 >"$dir/via-vhost-user.bin" || fail "vu-ranges read failed"
    stop_server
    # What nbdkit holds, read without this library.
    nbdcopy "$uri" "$dir/via-nbd.bin" || fail "nbdcopy could not read the export"
    cmp "$dir/via-vhost-user.bin" "$dir/via-nbd.bin" || fail "the driver and nbdkit see different data"
    echo "vu-ranges: 16 MiB read through vhost-user equal what nbdkit holds"
    ;;
  ops)
    start_nbdkit --filter=blocksize-policy memory 64M \
      blocksize-minimum=512 blocksize-preferred=4096 blocksize-maximum=65536
    "$check" ops "$uri" || fail "nbd-check ops failed"
    ;;
  fault-kill | fault-stop)
    truncate -s 64M "$shm/disk.img"
    nbd_args=(file "$shm/disk.img")
    start_nbdkit "${nbd_args[@]}"
    # nbd-check runs it as its child (nbdkit ends with its parent); a
    # killed nbdkit leaves its socket file behind.
    restart="rm -f $nsock; exec nbdkit -f -U $nsock -P $pidfile ${nbd_args[*]} >>$dir/nbdkit.log 2>&1"
    "$check" fault "$uri" --pidfile "$pidfile" --mode "${case#fault-}" --timeout 1 \
      --restart "$restart" || fail "nbd-check fault failed"
    ;;
  badconfig)
    expect_refused "bad NBD URI .*not an NBD URI" 2 --nbd "http://example.com/disk"
    expect_refused "bad NBD URI .*needs \?socket=PATH" 2 --nbd "nbd+unix:///disk"
    expect_refused "TLS" 2 --nbd "nbds://localhost/disk"
    expect_refused "cannot connect: .*(No such file|not found)" 2 --nbd "$uri"
    : >"$nsock"  # a socket file with nobody behind it
    rm -f "$nsock"
    start_nbdkit --filter=exportname memory 16M exportname-strict=true exportname=disk0
    expect_refused "cannot connect: .*" 2 --nbd "nbd+unix:///nosuch?socket=$nsock"
    grep -qi "export" "$dir/bad.err" || fail "the message does not name the export problem"
    # The right export name works.
    start_server --nbd "nbd+unix:///disk0?socket=$nsock" -q
    stop_server
    stop_nbdkit
    expect_refused "cannot connect: .*(refused|No such file)" 2 --nbd "nbd://127.0.0.1:1/disk"
    # A server that accepts but never answers: bounded by --nbd-timeout.
    start_nbdkit memory 16M
    kill -STOP "$(nbdkit_pids)"
    expect_refused "cannot connect: .*no answer within 1000 ms" 3 --nbd "$uri" --nbd-timeout 1
    kill -CONT "$(nbdkit_pids)"
    ;;
  vblkd-resize)
    [ -x "$vblkd" ] && [ -x "$ctl" ] || { echo "vblkd-resize needs --vblkd and --ctl" >&2; exit 2; }
    export VBLKD_RPC=$dir/rpc.sock
    ctl() { echo "+ vblk-ctl $*"; "$ctl" "$@" >"$dir/ctl.out" 2>"$dir/ctl.err" ||
      { cat "$dir/ctl.out" "$dir/ctl.err" >&2; fail "vblk-ctl $* failed"; }; cat "$dir/ctl.out"; }
    ctl_fails() { local pat=$1; shift; echo "+ vblk-ctl $* (must fail)"
      if "$ctl" "$@" >"$dir/ctl.out" 2>"$dir/ctl.err"; then fail "vblk-ctl $* succeeded"; fi
      sed 's/^/  /' "$dir/ctl.err"; grep -q -- "$pat" "$dir/ctl.err" || fail "no '$pat' in the message"; }
    size_of() { "$ctl" --json show "$1" | sed -n 's/^ *"size":\([0-9]*\).*/\1/p' | tail -n 1; }
    # vbench EXPORT SIZE [ARGS]: a verified run over the whole disk.
    vbench() { local x=$1 sz=$2; shift 2
      echo "+ vblk-bench --socket $x.sock --size $sz --verify $*"
      "$bench" --socket "$dir/$x.sock" --size "$sz" --queues 2 --runtime 1 --verify --rw randrw \
        --bs 4096 --iodepth 8 "$@" >"$dir/$x.out" 2>"$dir/$x.err" ||
        { cat "$dir/$x.out" "$dir/$x.err" >&2; fail "vblk-bench on $x ($sz) failed"; }
      grep -q "blocks read back and checked" "$dir/$x.out" || fail "vblk-bench on $x verified nothing"; }
    check_at() { # SIZE: every export reports it, I/O past it fails, the files have it
      local n sz=$1
      for n in 0 1; do
        [ "$(size_of n$n)" -eq "$sz" ] || fail "n$n: export_get says $(size_of n$n), not $sz"
        "$ranges" "$dir/n$n.sock" past-end "$sz" || fail "n$n: the end is not at $sz"
        [ "$(stat -c %s "$shm/n$n.img")" -eq "$sz" ] || fail "n$n: the file has $(stat -c %s "$shm/n$n.img") bytes, not $sz"
      done; }
    # Two nbdkits over two files: multi-conn (a connection per queue), and
    # multi-conn off (both queues on one connection).
    truncate -s 32M "$shm/n0.img" "$shm/n1.img"
    nbdkit -f -U "$dir/n0.nbd" -P "$dir/n0.pid" file "$shm/n0.img" >>"$dir/nbdkit.log" 2>&1 &
    kpids=$!
    nbdkit -f -U "$dir/n1.nbd" -P "$dir/n1.pid" --filter=multi-conn file "$shm/n1.img" \
      multi-conn-mode=disable >>"$dir/nbdkit.log" 2>&1 &
    kpids="$kpids $!"
    for _ in $(seq 200); do [ -s "$dir/n0.pid" ] && [ -s "$dir/n1.pid" ] && break; sleep 0.02; done
    "$vblkd" --rpc "$VBLKD_RPC" --threads 2 -v >"$dir/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "vblkd: ready" "$dir/server.log" && break; sleep 0.05; done
    grep -q "vblkd: ready" "$dir/server.log" || fail "vblkd did not start"
    for n in 0 1; do
      ctl call export_add '{"name":"n'$n'","transport":"vhost-user","socket":"'"$dir/n$n.sock"'",
        "queues":2,"backend":{"type":"nbd","uri":"nbd+unix:///?socket='"$dir/n$n.nbd"'",
        "connect_timeout":1}}'
    done
    vbench n0 32M & b0=$!; vbench n1 32M & b1=$!
    wait $b0 && wait $b1 || fail "verified run at 32M failed"
    check_at $((32 << 20))
    # The server still has 32M: refused, with the size it reports.
    ctl_fails "the NBD server reports 33554432 bytes" resize n0 64M
    [ "$(size_of n0)" -eq $((32 << 20)) ] || fail "a refused resize changed the size"

    # Grow under a running verified workload (over the first 32M): the
    # connections are replaced while requests are in flight.
    truncate -s 64M "$shm/n0.img" "$shm/n1.img"
    "$bench" --socket "$dir/n0.sock" --size 32M --queues 2 --runtime 3 --verify --rw randrw \
      --iodepth 16 >"$dir/bg0.out" 2>&1 & b0=$!
    "$bench" --socket "$dir/n1.sock" --size 32M --queues 2 --runtime 3 --verify --rw randrw \
      --iodepth 16 >"$dir/bg1.out" 2>&1 & b1=$!
    sleep 1
    ctl resize n0 64M
    grep -q '"size":67108864' "$dir/ctl.out" || grep -q "64M" "$dir/ctl.out" || fail "resize n0 did not report 64M"
    ctl resize n1 64M
    wait $b0 || { cat "$dir/bg0.out" >&2; fail "the verified run on n0 failed across the resize"; }
    wait $b1 || { cat "$dir/bg1.out" >&2; fail "the verified run on n1 failed across the resize"; }
    grep -h "read back" "$dir"/bg*.out
    check_at $((64 << 20))
    vbench n0 64M & b0=$!; vbench n1 64M & b1=$!
    wait $b0 && wait $b1 || fail "verified run at 64M failed"

    # Shrink: the server first, then the export, while reads run over the
    # whole disk: those past the new end fail with IOERR, none hangs.
    mark=$(wc -l <"$dir/server.log")
    for n in 0 1; do
      "$bench" --socket "$dir/n$n.sock" --size 64M --queues 2 --rw randread --iodepth 16 \
        --runtime 5 --timeout 20 >"$dir/bg$n.out" 2>&1 &
      eval "b$n=\$!"
    done
    sleep 1
    truncate -s 16M "$shm/n0.img" "$shm/n1.img"
    ctl resize n0 16M
    ctl resize n1 16M
    for n in 0 1; do
      if wait "$(eval echo "\$b$n")"; then fail "n$n: reads past the new end succeeded"; fi
      grep -q "IOERR" "$dir/bg$n.out" || { cat "$dir/bg$n.out" >&2; fail "n$n: no IOERR past the new end"; }
      echo "n$n: the running reader stopped with: $(grep -m1 IOERR "$dir/bg$n.out")"
    done
    # Every request they left in flight completed: all four queues stop drained.
    drained() { [ "$(tail -n "+$((mark + 1))" "$dir/server.log" |
      grep -c "n[01]: queue [01]: stopped at avail \([0-9]*\) used \1$")" -ge 4 ]; }
    for _ in $(seq 100); do drained && break; sleep 0.1; done
    drained || fail "requests in flight across the shrink did not all complete within 10 s"
    check_at $((16 << 20))
    vbench n0 16M & b0=$!; vbench n1 16M & b1=$!
    wait $b0 && wait $b1 || fail "verified run at 16M failed"
    check_at $((16 << 20))

    # No size: adopt what the server reports.
    truncate -s 48M "$shm/n0.img" "$shm/n1.img"
    ctl resize n0
    ctl resize n1
    check_at $((48 << 20))
    vbench n0 48M & b0=$!; vbench n1 48M & b1=$!
    wait $b0 && wait $b1 || fail "verified run at 48M failed"
    ctl resize n0   # nothing changed: no resize
    ctl --json stats n0 >/dev/null
    "$ctl" --json show n0 | grep -q '"resizes":3' || fail "n0 does not count 3 resizes"
    # A server that does not answer: the resize fails within the connect
    # timeout (1 s) and changes nothing; the export works once it answers.
    kill -STOP "$(cat "$dir/n0.pid")"
    t0=$(date +%s%N)
    ctl_fails "cannot reach the NBD server" resize n0 64M
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    kill -CONT "$(cat "$dir/n0.pid")"
    echo "a stopped server: the resize failed after $ms ms"
    [ "$ms" -le 3000 ] || fail "the resize against a stopped server took $ms ms"
    [ "$(size_of n0)" -eq $((48 << 20)) ] || fail "a failed resize changed the size"
    vbench n0 48M
    # The dumped configuration can start a daemon again: no "size" for nbd.
    "$ctl" dump-config >"$dir/config.json" || fail "dump-config failed"
    python3 -c 'import json, sys
for x in json.load(open(sys.argv[1]))["exports"]:
    assert "size" not in x["backend"], x' "$dir/config.json" ||
      fail "dump-config gives an nbd backend a size: $(cat "$dir/config.json")"
    "$ctl" shutdown >/dev/null
    wait "$pid" || fail "vblkd exited with an error"
    pid=""
    ;;
  *)
    echo "unknown case '$case'" >&2
    exit 2
    ;;
esac
echo "PASS ($case)"
