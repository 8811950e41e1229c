#!/usr/bin/env bash
# End-to-end correctness: vblk-bench (the library's vhost-user front-end)
# writes a pattern through a real vhost-user-blk back-end and checks it on
# read-back. The back-end is this project's vblk-vhost-user (RAM disk, or an
# image on tmpfs) or qemu-storage-daemon (file or null-co export).
#
# Usage: bench-verify.sh --bench PATH --server PATH --case CASE
#   CASE: ours-{memory,image}-{split,packed}-{1q,2q}
#         ours-rbd-{split,packed}-{1q,2q}   an RBD image of the cluster in
#                               $VBLK_CEPH_DIR (tests/ceph/ceph-up.sh)
#         qsd-{file,null}-split-{1q,2q}
#         qsd-packed-refused    packed rings against QSD fail with a clear message
#         ours-readonly-status  writes to a read-only disk fail with the status byte
# Exit status: 0 pass, 1 fail, 77 skipped (qemu-storage-daemon not installed).
set -euo pipefail

bench="" server="" case=""
while [ $# -gt 0 ]; do
  case $1 in
    --bench) bench=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --case) case=$2; shift 2 ;;
    *) echo "usage: $0 --bench PATH --server PATH --case CASE" >&2; exit 2 ;;
  esac
done
if [ -z "$bench" ] || [ -z "$server" ] || [ -z "$case" ]; then
  echo "usage: $0 --bench PATH --server PATH --case CASE" >&2
  exit 2
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/vblk-it.XXXXXX")
# Images live on tmpfs when there is one, so the test measures no disk.
shm=$dir
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  shm=$(mktemp -d /dev/shm/vblk-it.XXXXXX)
fi
sock=$dir/sock
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  [ "$shm" = "$dir" ] || rm -rf "$shm"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL ($case): $*" >&2; [ -f "$dir/server.log" ] && sed 's/^/  server: /' "$dir/server.log" >&2; exit 1; }

# True once something listens on $sock: the file appears at bind(), a moment
# before listen(), and connecting in between is refused.
listening() {
  if command -v ss >/dev/null; then
    ss -xlH 2>/dev/null | awk -v p="$sock" '$5 == p {f = 1} END {exit !f}'
  else
    [ -S "$sock" ]
  fi
}

wait_socket() {
  for _ in $(seq 100); do
    listening && return 0
    kill -0 "$pid" 2>/dev/null || fail "the server exited during start-up"
    sleep 0.1
  done
  fail "the server did not create $sock within 10 s"
}

start_ours() {
  "$server" --socket "$sock" -q "$@" >"$dir/server.log" 2>&1 &
  pid=$!
  wait_socket
}

start_qsd() { # BLOCKDEV QUEUES
  command -v qemu-storage-daemon >/dev/null || { echo "SKIP: qemu-storage-daemon not installed"; exit 77; }
  qemu-storage-daemon --blockdev "$1,node-name=disk0" \
    --export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$sock,writable=on,num-queues=$2" \
    >"$dir/server.log" 2>&1 &
  pid=$!
  wait_socket
}

# Stops the server with SIGTERM; it must exit cleanly.
stop_server() {
  kill -0 "$pid" 2>/dev/null || fail "the server died during the test"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  # QSD exits 0 on SIGTERM as well.
  [ "$rc" -eq 0 ] || fail "the server exited with status $rc after SIGTERM"
}

run() { # expected-status ARGS...
  local want=$1; shift
  local rc=0
  echo "+ vblk-bench --socket SOCK $*"
  "$bench" --socket "$sock" --runtime 1 "$@" >"$dir/out" 2>"$dir/err" || rc=$?
  cat "$dir/out"
  sed 's/^/  stderr: /' "$dir/err"
  if [ "$want" = 0 ] && [ "$rc" -ne 0 ]; then fail "vblk-bench exited with status $rc"; fi
  if [ "$want" != 0 ] && [ "$rc" -eq 0 ]; then fail "vblk-bench succeeded where it must fail"; fi
  return 0
}

# The data checks: random mixed I/O verified as it goes and read back at the
# end; a read-only pass over a pre-filled area; large sequential writes.
verify_all() { # RING QUEUES
  local common=(--ring "$1" --queues "$2" --size 64M --verify)
  run 0 "${common[@]}" --rw randrw --bs 4096 --iodepth 16
  grep -q "blocks read back and checked" "$dir/out" || fail "no blocks were verified"
  run 0 "${common[@]}" --rw randread --bs 16384 --iodepth 8
  run 0 "${common[@]}" --rw write --bs 131072 --iodepth 4
}

case $case in
  ours-memory-*-*q | ours-image-*-*q)
    IFS=- read -r _ backend ring nq <<<"$case"
    nq=${nq%q}
    if [ "$backend" = image ]; then
      truncate -s 128M "$shm/disk.img"
      start_ours --image "$shm/disk.img" --queues "$nq"
    else
      start_ours --memory 128M --queues "$nq"
    fi
    verify_all "$ring" "$nq"
    stop_server
    ;;
  ours-rbd-*-*q)
    IFS=- read -r _ _ ring nq <<<"$case"
    nq=${nq%q}
    [ -f "${VBLK_CEPH_DIR:-}/ceph.conf" ] || fail "no Ceph cluster: set VBLK_CEPH_DIR (tests/ceph/ceph-up.sh DIR)"
    export CEPH_CONF=$VBLK_CEPH_DIR/ceph.conf
    img=it-$case-$$
    rbd create --size 128M "rbd/$img"
    start_ours --rbd "rbd/$img" --queues "$nq"
    verify_all "$ring" "$nq"
    stop_server
    rbd rm --no-progress "rbd/$img"
    ;;
  qsd-file-split-*q)
    nq=${case##*-}; nq=${nq%q}
    truncate -s 128M "$shm/disk.img"
    start_qsd "driver=file,filename=$shm/disk.img" "$nq"
    verify_all split "$nq"
    stop_server
    ;;
  qsd-null-split-*q)
    # null-co returns no data: the run must complete, nothing can be checked.
    nq=${case##*-}; nq=${nq%q}
    start_qsd "driver=null-co,size=134217728" "$nq"
    run 0 --ring split --queues "$nq" --rw randrw --bs 4096 --iodepth 16 --json
    grep -q '"ios":[1-9]' "$dir/out" || fail "no request completed"
    run 0 --ring split --queues "$nq" --rw randread --bs 65536 --iodepth 4 --json
    stop_server
    ;;
  qsd-packed-refused)
    start_qsd "driver=null-co,size=134217728" 1
    run 1 --ring packed
    grep -q "does not offer packed rings" "$dir/err" || fail "no clear message for packed rings"
    stop_server
    ;;
  ours-readonly-status)
    start_ours --memory 16M --read-only
    run 1 --rw randwrite --iodepth 4
    grep -q "failed: status 1 (IOERR)" "$dir/err" || fail "no clear message for the IOERR status"
    stop_server
    ;;
  *)
    echo "unknown case '$case'" >&2
    exit 2
    ;;
esac
echo "PASS ($case)"
