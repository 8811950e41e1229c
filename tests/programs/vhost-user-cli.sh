#!/usr/bin/env bash
# vhost-user-cli.sh PROGRAM - user errors of vblk-vhost-user: each must end
# with one clear line on stderr and a non-zero exit status; --help documents
# every option; SIGTERM stops a running server cleanly and removes its socket.
set -euo pipefail
PROG=${1:?usage: vhost-user-cli.sh PATH-TO-vblk-vhost-user}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vblk-vu-cli.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
pass=0 fail=0

# expect_error WANT_RC PATTERN ARGS...: one stderr line matching PATTERN.
# wait_listening PATH: until a server listens on PATH (the file exists from
# bind() on, a moment before listen())
wait_listening() {
    local i
    for ((i = 0; i < 100; i++)); do
        ss -xlH 2>/dev/null | awk -v p="$1" '$5 == p {f = 1} END {exit !f}' && return 0
        sleep 0.05
    done
}
expect_error() {
    local want=$1 pattern=$2 rc=0
    shift 2
    timeout 10 "$PROG" "$@" >"$WORK/out" 2>"$WORK/err" </dev/null || rc=$?
    local lines
    lines=$(wc -l <"$WORK/err")
    if [[ $rc == "$want" && $lines == 1 ]] && grep -q -- "$pattern" "$WORK/err"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $PROG $*: exit $rc (want $want), $lines line(s) on stderr (want 1 matching '$pattern'):"
        sed 's/^/    /' "$WORK/err"
    fi
}

expect_error 2 "--socket PATH is required"
expect_error 2 "mutually exclusive" --socket "$WORK/s" --image x --memory 1M
expect_error 2 "multiple of 512" --socket "$WORK/s" --memory 1000
expect_error 2 "expected a size" --socket "$WORK/s" --memory lots
expect_error 2 "expected 1\.\.64" --socket "$WORK/s" --queues 0
expect_error 2 "expected 1\.\.32768" --socket "$WORK/s" --queue-size 40000
expect_error 2 "longer than 20 bytes" --socket "$WORK/s" --serial 123456789012345678901
expect_error 2 "io_uring or psync" --socket "$WORK/s" --image x --backend aio
expect_error 2 "unexpected argument" --socket "$WORK/s" extra
expect_error 2 "expected adaptive, event or poll" --socket "$WORK/s" --notify sometimes
expect_error 2 "expected 1\.\.1000000" --socket "$WORK/s" --poll-max-us 0
expect_error 2 "expected N,US" --socket "$WORK/s" --coalesce 8
expect_error 2 "N 1\.\.65536 and US" --socket "$WORK/s" --coalesce 8,0
expect_error 1 "cannot open image '$WORK/missing': No such file" --socket "$WORK/s" --image "$WORK/missing"
truncate -s 1000 "$WORK/odd.img"
expect_error 1 "not a multiple of 512" --socket "$WORK/s" --image "$WORK/odd.img"
: >"$WORK/empty.img"
expect_error 1 "is empty" --socket "$WORK/s" --image "$WORK/empty.img"
expect_error 1 "not a regular file or a block device" --socket "$WORK/s" --image "$WORK"
touch "$WORK/plain"
expect_error 1 "exists and is not a socket" --socket "$WORK/plain" --memory 1M
expect_error 1 "cannot create socket" --socket "$WORK/no/such/dir/s" --memory 1M
expect_error 1 "too long" --socket "$WORK/$(printf 'x%.0s' {1..120})" --memory 1M
if [[ $(id -u) != 0 ]]; then
    mkdir "$WORK/ro" && chmod 0555 "$WORK/ro"
    expect_error 1 "Permission denied" --socket "$WORK/ro/s" --memory 1M
fi

# A live server owns its socket: a second one is refused.
"$PROG" --socket "$WORK/live.sock" --memory 1M -q &
pid=$!
wait_listening "$WORK/live.sock"
expect_error 1 "is busy" --socket "$WORK/live.sock" --memory 1M
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
if [[ $rc == 0 && ! -e $WORK/live.sock ]]; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL: SIGTERM: exit $rc, socket left: $([[ -e $WORK/live.sock ]] && echo yes || echo no)"
fi
# ... and a stale socket file (no server) is replaced.
"$PROG" --socket "$WORK/live.sock" --memory 1M -q &
pid=$!
wait_listening "$WORK/live.sock"
exec 3>&2 2>/dev/null # no "Killed" notice from the shell
kill -KILL "$pid"
wait "$pid" || true
exec 2>&3 3>&-
"$PROG" --socket "$WORK/live.sock" --memory 1M >"$WORK/out" 2>&1 &
pid=$!
for ((i = 0; i < 100; i++)); do grep -q "attach QEMU" "$WORK/out" && break; sleep 0.05; done
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
if [[ $rc == 0 ]] && grep -q "vhost-user-blk-pci,chardev=vblk0,num-queues=1" "$WORK/out" &&
    grep -q "memory-backend-memfd,id=mem,size=1G,share=on" "$WORK/out"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL: restart over a stale socket / attach hint / SIGINT (exit $rc):"
    sed 's/^/    /' "$WORK/out"
fi

# --help names every option.
"$PROG" --help >"$WORK/help"
for opt in --socket --image --memory --queues --queue-size --read-only --serial --poll \
    --notify --poll-max-us --coalesce --backend --threads --verbose --quiet --help; do
    if grep -q -- "$opt" "$WORK/help"; then pass=$((pass + 1)); else
        fail=$((fail + 1))
        echo "FAIL: --help does not document $opt"
    fi
done

echo "vhost-user-cli: $pass passed, $fail failed"
((fail == 0))
