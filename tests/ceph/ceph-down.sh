#!/usr/bin/env bash
# ceph-down.sh DIR - stops the cluster ceph-up.sh DIR started (through its
# pid files: the OSD first, then the monitor) and deletes DIR.
# Environment: GRACEFUL=1 waits up to 10 s for each daemon after SIGTERM
# (default: SIGKILL at once; the cluster is thrown away anyway).
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: ceph-down.sh DIR" >&2; exit 1; }
DIR=$1
[ -d "$DIR" ] || exit 0

# stop PIDFILE...: ends the daemons named in the pid files.
stop() {
  local pids="" f p i
  for f in "$@"; do
    [ -s "$f" ] && pids+=" $(cat "$f")"
  done
  [ -n "$pids" ] || return 0
  if [ "${GRACEFUL:-0}" = 1 ]; then
    kill $pids 2>/dev/null
    for i in $(seq 100); do
      for p in $pids; do kill -0 "$p" 2>/dev/null && break; done || return 0
      sleep 0.1
    done
  fi
  kill -9 $pids 2>/dev/null
  for i in $(seq 50); do
    for p in $pids; do kill -0 "$p" 2>/dev/null && break; done || return 0
    sleep 0.1
  done
}
shopt -s nullglob
stop "$DIR"/run/osd.*.pid
stop "$DIR"/run/mon.*.pid
rm -rf "$DIR"
