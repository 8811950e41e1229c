#!/usr/bin/env bash
# ceph-up.sh DIR - starts a throwaway single-node Ceph cluster (one monitor,
# one OSD, no manager, no systemd) whose configuration, data, logs, sockets
# and pid files all live under DIR, every listener on 127.0.0.1. Ends with a
# pool "rbd" (replica count 1) holding the image "rbd/img0". Stop it with
# ceph-down.sh DIR.
#
# Environment:
#   OBJECTSTORE  memstore (default: data in the OSD's RAM, lost when it
#                restarts) or bluestore (a sparse 4 GiB file under DIR,
#                survives an OSD restart)
#   AUTH         none (default) or cephx (one keyring DIR/keyring, named in
#                DIR/ceph.conf, holds every key including client.admin)
#   MON_PORT     the monitor's port; the daemons use MON_PORT+1..+99
#                (default: the first free block of 100 from 13300 on)
#   IMAGE_SIZE   size of rbd/img0 (default 256M); 0: no image
# Prints "export CEPH_CONF=DIR/ceph.conf" on success. Exit status 0 or 1.
set -euo pipefail

die() { echo "ceph-up.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: ceph-up.sh DIR"
DIR=$(realpath -m "$1")
STORE=${OBJECTSTORE:-memstore}
AUTH=${AUTH:-none}
case $STORE in memstore | bluestore) ;; *) die "OBJECTSTORE must be memstore or bluestore" ;; esac
case $AUTH in none | cephx) ;; *) die "AUTH must be none or cephx" ;; esac
for t in ceph-mon ceph-osd ceph monmaptool ceph-authtool rbd uuidgen; do
  command -v "$t" >/dev/null || die "$t is not installed (scripts/deps.sh test)"
done

# A block of 100 ports nobody listens on. Two clusters started at the same
# moment could still pick the same block: the monitor then fails to bind
# and this script says so.
port_busy() { ss -Htln "( sport >= :$1 and sport <= :$(($1 + 99)) )" 2>/dev/null | grep -q .; }
PORT=${MON_PORT:-}
if [ -z "$PORT" ]; then
  for p in $(seq 13300 100 19900); do
    port_busy "$p" || { PORT=$p; break; }
  done
  [ -n "$PORT" ] || die "no free block of 100 ports between 13300 and 19999"
fi

# The OSD uses glibc malloc: fewer arenas, much less resident memory.
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
rm -rf "$DIR"
mkdir -p "$DIR"/run "$DIR"/log "$DIR"/mon/ceph-a "$DIR"/osd/ceph-0
FSID=$(uuidgen)
KEYRING=/dev/null
if [ "$AUTH" = cephx ]; then
  KEYRING=$DIR/keyring
  key() { ceph-authtool "$KEYRING" --gen-key -n "$@" >/dev/null; }
  key mon. --create-keyring --cap mon 'allow *'
  key client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *'
  key osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd'
fi

# paxos propose interval 0.1: every map change (OSD boot, pool creation)
# would otherwise cost a second or more.
cat >"$DIR/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = $((PORT + 1))
ms bind port max = $((PORT + 99))
auth cluster required = $AUTH
auth service required = $AUTH
auth client required = $AUTH
auth allow insecure global id reclaim = false
keyring = $KEYRING
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail crit = 0
paxos propose interval = 0.1
paxos min wait = 0.01
[client]
admin socket = $DIR/run/\$name.\$pid.asok
log file = $DIR/log/\$name.\$pid.log
[mon]
mon data = $DIR/mon/\$cluster-\$id
[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = $STORE
osd min pg log entries = 100
osd max pg log entries = 500
memstore device bytes = 4294967296
memstore page set = true
memstore page size = 4096
bluestore block path = $DIR/osd/\$cluster-\$id/block.img
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mkfs = false
bluestore cache autotune = false
bluestore cache size = 134217728
CONF
export CEPH_CONF=$DIR/ceph.conf

monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" \
  --enable-all-features --set-min-mon-release pacific "$DIR/monmap" >/dev/null
ceph-mon -i a --mkfs --monmap "$DIR/monmap" --keyring "$KEYRING" 2>"$DIR/log/mon-mkfs.err" ||
  { cat "$DIR/log/mon-mkfs.err" >&2; die "monitor mkfs failed"; }
ceph-mon -i a 2>"$DIR/log/mon-start.err" ||
  { cat "$DIR/log/mon-start.err" >&2; die "the monitor did not start (port $PORT busy?)"; }
OSD_UUID=$(uuidgen)
OSD_ID=$(timeout 30 ceph --connect-timeout 25 osd new "$OSD_UUID") ||
  die "the monitor on 127.0.0.1:$PORT does not answer (see $DIR/log/mon.a.log)"
ceph-osd -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd-mkfs.err" 2>&1 ||
  { cat "$DIR/log/osd-mkfs.err" >&2; die "OSD mkfs failed"; }
ceph-osd -i "$OSD_ID" 2>>"$DIR/log/osd-start.err" || die "the OSD did not start"
up() { ceph osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'; }
for _ in $(seq 150); do up && break; sleep 0.2; done
up || die "the OSD is not up after 30 s (see $DIR/log/osd.$OSD_ID.log)"
ceph osd pool create rbd 8 8 >/dev/null 2>&1
timeout 60 rbd pool init rbd || die "rbd pool init failed"
if [ "${IMAGE_SIZE:-256M}" != 0 ]; then
  rbd create --size "${IMAGE_SIZE:-256M}" rbd/img0
fi
echo "export CEPH_CONF=$CEPH_CONF"
